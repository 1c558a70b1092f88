"""`kalshi-tape report`: the file it writes, and its errors (one line, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi_tape.cli import main

from .report_capture import ExpectedReport


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["report", *argv])
    return code, capsys.readouterr().err


def test_report_writes_one_html_file(
    expected: ExpectedReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    code, err = _run(capsys, str(expected.root), "-o", str(out))
    assert code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in err and out.as_uri() in err and "3 connections" in err
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary left behind


@pytest.mark.parametrize(
    ("extra", "flag", "words"),
    [
        (("--market", "NOPE-1"), "--market", "no book or trade data for NOPE-1"),
        (("--start", "yesterday"), "--start", "is not a time"),
        (("--start", "2030-01-01T00:00:00Z"), "--start", "after the capture's end"),
        (("--start", "2026-11-21T10:00Z", "--end", "2026-11-21T09:00Z"), "--end", "is not after"),
        (("--threads", "0"), "--threads", "must be at least 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    expected: ExpectedReport, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...], flag: str, words: str,
) -> None:  # fmt: skip
    out = tmp_path / "r.html"
    code, err = _run(capsys, str(expected.root), "-o", str(out), *extra)
    assert code == 2
    assert err.startswith(f"kalshi-tape: error: {flag}: ") and words in err
    assert err.count("\n") == 1 and not out.exists()


def test_an_existing_output_needs_force(
    expected: ExpectedReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    out.write_text("keep me")
    code, err = _run(capsys, str(expected.root), "-o", str(out))
    assert code == 2 and "already exists (add --force to replace it)" in err
    assert out.read_text() == "keep me"
    assert _run(capsys, str(expected.root), "-o", str(out), "--force")[0] == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_the_output_is_never_inside_the_capture(
    expected: ExpectedReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(capsys, str(expected.root), "-o", str(expected.root / "r.html"))
    assert code == 2 and "--output: " in err and "inside the capture root" in err
    code, err = _run(capsys, str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert code == 2 and err.startswith("kalshi-tape: error: ROOT: ")


def test_help_says_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    for word in ("no network", "--market", "--start", "--force", "timeline"):
        assert word in text
