"""`kalshi-tape query`: output formats, written by our code, and clear errors with exit 2."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kalshi_tape.cli import main

from .capture_factory import M1, M2, StandardCapture, build_standard_capture

TRADES = (
    "SELECT market_ticker, yes_price_dollars, count, exchange_time FROM trades ORDER BY run_id, idx"
)


@pytest.fixture
def cap(tmp_path: Path) -> StandardCapture:
    return build_standard_capture(tmp_path / "capture")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_table_output_shows_aligned_exact_values(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "query", str(cap.root), TRADES)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["market_ticker", "yes_price_dollars", "count", "exchange_time"]
    assert lines[2].split()[:3] == [M1, "0.4700", "12.00"]
    assert lines[3].split()[:3] == [M2, "0.3100", "4.00"]
    assert lines[-1] == "(6 rows)"


def test_table_output_stops_at_max_rows_and_says_so(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "query", str(cap.root), "SELECT idx FROM frames", "--max-rows", "3"
    )
    assert status == 0
    assert len(out.splitlines()) == 2 + 3 + 1
    assert out.splitlines()[-1].startswith("(first 3 rows;")


def test_csv_output_goes_to_stdout(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "query", str(cap.root), TRADES, "--format", "csv")
    assert status == 0
    got = list(csv.DictReader(io.StringIO(out)))
    assert [(r["market_ticker"], r["yes_price_dollars"], r["count"]) for r in got[:2]] == [
        (M1, "0.4700", "12.00"),
        (M2, "0.3100", "4.00"),
    ]


def test_json_lines_keep_decimals_exact_as_strings(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "query", str(cap.root), TRADES + " LIMIT 1", "--format", "json")
    assert status == 0
    assert json.loads(out) == {
        "market_ticker": M1,
        "yes_price_dollars": "0.4700",
        "count": "12.00",
        "exchange_time": "2026-11-21T08:00:01.500000Z",
    }


def test_nested_columns_go_to_json(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT yes_levels FROM book_snapshots ORDER BY idx LIMIT 1"
    status, out, _ = run(capsys, "query", str(cap.root), sql, "--format", "json")
    assert status == 0
    assert json.loads(out)["yes_levels"][0] == {"price_dollars": "0.4500", "quantity": "100.00"}
    status, _, err = run(capsys, "query", str(cap.root), sql, "--format", "csv")
    assert status == 2
    assert "csv cannot hold column 'yes_levels'" in err


def test_parquet_output_is_written_by_our_code_to_the_given_file(
    cap: StandardCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "trades.parquet"
    target.parent.mkdir()
    status, _, _ = run(
        capsys, "query", str(cap.root), TRADES, "--format", "parquet", "-o", str(target)
    )
    assert status == 0
    table = pq.read_table(target)
    assert table.num_rows == 6
    assert str(table.schema.field("yes_price_dollars").type) == "decimal128(18, 4)"
    assert [p.name for p in target.parent.iterdir()] == ["trades.parquet"]  # no temporary left


def test_an_output_file_gets_the_mode_any_new_file_gets_under_the_umask(
    cap: StandardCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written under a temporary name (created 0600) and renamed: the finished file must
    still be readable as any file the user creates is (0644 under umask 022)."""
    target = tmp_path / "trades.csv"
    old = os.umask(0o022)
    try:
        status, _, err = run(capsys, "query", str(cap.root), TRADES, "--format", "csv",
                             "-o", str(target))  # fmt: skip
    finally:
        os.umask(old)
    assert status == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_existing_output_needs_force(
    cap: StandardCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "trades.csv"
    target.write_text("keep me")
    status, _, err = run(
        capsys, "query", str(cap.root), TRADES, "--format", "csv", "-o", str(target)
    )
    assert (status, target.read_text()) == (2, "keep me")
    assert "already exists" in err
    status, _, _ = run(
        capsys, "query", str(cap.root), TRADES, "--format", "csv", "-o", str(target), "--force"
    )
    assert status == 0
    assert target.read_text().startswith('"market_ticker"')


def test_output_inside_the_capture_root_is_refused(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    target = cap.root / "result.parquet"
    status, _, err = run(
        capsys, "query", str(cap.root), TRADES, "--format", "parquet", "-o", str(target)
    )
    assert status == 2
    assert "inside the capture root" in err
    assert not target.exists()


def test_a_query_failing_mid_stream_leaves_no_partial_file(
    cap: StandardCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "bad.csv"
    sql = "SELECT CAST(market_ticker AS INTEGER) AS n FROM trades"
    status, _, err = run(capsys, "query", str(cap.root), sql, "--format", "csv", "-o", str(target))
    assert status == 2
    assert err.startswith("kalshi-tape: error: SQL: Conversion Error")
    assert list(tmp_path.glob("*bad.csv*")) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["query", "{root}", "SELECT * FROM read_csv('/etc/hostname')"],
            "may read only files under",
        ),
        (["query", "{root}", "COPY trades TO '{root}/x.csv'"], "COPY statements are not allowed"),
        (["query", "{root}", "INSTALL httpfs"], "INSTALL statements are not allowed"),
        (["query", "{root}", "SELECT * FROM no_such_view"], "SQL: Catalog Error"),
        (["query", "{root}", "SELEC 1"], "SQL: Parser Error"),
        (["query", "{root}/missing", "SELECT 1"], "ROOT: capture root"),
        (["query", "{root}", "SELECT 1", "--format", "parquet"], "parquet output needs a file"),
        (["query", "{root}", "SELECT 1", "--max-rows", "0"], "--max-rows: must be at least 1"),
    ],
)
def test_errors_are_one_clear_line_with_exit_2(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *(a.format(root=cap.root) for a in argv))
    assert status == 2
    assert out == ""
    assert message in err
    assert err.startswith("kalshi-tape: error: ")
    assert "Traceback" not in err


def test_missing_arguments_print_usage_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["query"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kalshi-tape query: error: the following arguments are required: ROOT")
    assert err.count("\n") == 1  # one line, the usage left to --help


def test_the_installed_command_prints_no_traceback_for_a_forbidden_read(
    cap: StandardCapture,
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kalshi_tape",
            "query",
            str(cap.root),
            "SELECT * FROM read_text('/etc/passwd')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kalshi-tape: error: SQL: Permission Error")
    assert "Traceback" not in proc.stderr
