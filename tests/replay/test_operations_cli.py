"""The reading commands as an operator meets them: damaged files, wrong roots, output files,
markets, flag spellings, SQL hints and limits. Each error is one line with its exit status."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kalshi_tape.cli import main
from replay.sql.connection import QueryTimeout, connect, run_query
from schemas.units import parse_size_bytes, physical_memory_bytes

from .capture_factory import M1, build_standard_capture, truncate_file

pytestmark = pytest.mark.timeout(60)
ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standard_capture(tmp_path_factory.mktemp("clean") / "root").root


@pytest.fixture
def damaged(clean: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the capture with one file cut short, that file)."""
    root = tmp_path / "root"
    shutil.copytree(clean, root)
    victim = sorted(root.glob("channel=orderbook_delta/date=*/*.parquet"))[0]
    truncate_file(victim, 100)
    return root, victim


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_replay_of_a_capture_with_a_truncated_file_names_it_and_exits_5(
    damaged: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, victim = damaged
    status, _, err = cli(["replay", str(root), "--format", "jsonl"], capsys)
    assert status == 5
    assert err.startswith(f"kalshi-tape: error: damaged capture file {victim}: ")
    assert f"run `kalshi-tape verify {root}`" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_serve_from_a_capture_with_a_truncated_file_names_it_and_exits_5(
    damaged: tuple[Path, Path],
) -> None:
    root, victim = damaged
    proc = subprocess.run([sys.executable, "-m", "kalshi_tape", "serve", "--open", str(root),
                           "--duration", "5s"], capture_output=True, text=True, timeout=30,
                          check=False)  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == ""  # no URL: nothing to connect to
    assert proc.stderr.startswith(f"kalshi-tape: error: damaged capture file {victim}: ")
    assert "kalshi-tape verify" in proc.stderr and "Traceback" not in proc.stderr


def test_replay_of_a_market_the_capture_lacks_lists_what_it_holds_and_exits_2(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(["replay", str(clean), "--market", "NOPE"], capsys)
    assert status == 2 and out == ""
    assert "--market: the capture holds no data for NOPE on " in err
    assert M1 in err


def test_replay_output_refuses_an_existing_file_without_force_and_any_path_in_the_root(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "out.jsonl"
    existing.write_text("keep me\n")
    status, _, err = cli(["replay", str(clean), "-o", str(existing)], capsys)
    assert status == 2 and f"--output: {existing} already exists (add --force" in err
    assert existing.read_text() == "keep me\n"
    inside = clean / "replay.jsonl"
    status, _, err = cli(["replay", str(clean), "-o", str(inside)], capsys)
    assert status == 2 and "is inside the capture root" in err and not inside.exists()
    status, _, _ = cli(["replay", str(clean), "-o", str(existing), "--force",
                        "--format", "jsonl"], capsys)  # fmt: skip
    assert status == 0 and existing.read_text().startswith('{"recv_time"')


def test_replay_takes_start_and_end_like_serve_and_still_takes_from_and_to(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for flags in (["--start", "2000-01-01", "--end", "2100-01-01"],
                  ["--from", "2000-01-01", "--to", "2100-01-01"]):  # fmt: skip
        status, out, _ = cli(["replay", str(clean), "--format", "jsonl", *flags], capsys)
        assert status == 0
        outputs.append(out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") > 10
    status, out, err = cli(["replay", str(clean), "--end", "2000-01-01"], capsys)
    assert status == 2 and out == ""  # a range that selects nothing is refused, not silent
    assert "--end: 2000-01-01 is before the capture's start" in err
    assert "--from" not in _help(["replay", "--help"], capsys)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    status, out, _ = cli(argv, capsys)
    assert status == 0
    return out


def test_an_unknown_flag_is_one_line_naming_the_subcommand_and_its_help(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, name in ((["query", str(clean), "SELECT 1", "--nope"], "query"),
                       (["serve", "--nope"], "serve"),
                       (["record", "--sim", "--nope"], "record")):  # fmt: skip
        status, _, err = cli(argv, capsys)
        assert status == 2
        assert err.startswith(f"kalshi-tape {name}: error: unrecognized arguments: --nope")
        assert err.endswith(f" (see kalshi-tape {name} --help)\n") and err.count("\n") == 1


def test_serve_takes_durations_with_units_and_the_root_as_an_argument(clean: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kalshi_tape", "serve", "--open", str(clean),
                           "--speed", "max", "--duration", "500ms"], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ws://127.0.0.1:") and "capture of 2 markets" in proc.stderr
    assert time.monotonic() - started < 10


def test_serve_on_a_port_in_use_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        status, _, err = cli(["serve", "--open", "--port", str(port), "--duration", "1"], capsys)
    assert status == 3
    assert err == (f"kalshi-tape: error: --port: 127.0.0.1:{port} is already in use by another "
                   "process (choose another port, or 0 for any free one)\n")  # fmt: skip


# ---------------------------------------------------------------- verify's root


def test_verify_refuses_a_directory_that_is_not_a_capture_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x\n")
    status, out, err = cli(["verify", str(tmp_path / "notes")], capsys)
    assert status == 2 and "OK" not in out
    assert "is not a capture root: it holds no channel=<channel>/date=<date>/ partitions" in err


@pytest.mark.parametrize("depth", [1, 2])
def test_verify_given_a_partition_directory_names_the_capture_root(
    clean: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    partition = sorted(clean.glob("channel=trade/date=*"))[0]
    given = partition if depth == 2 else partition.parent
    status, _, err = cli(["verify", str(given)], capsys)
    assert status == 2
    assert err == (f"kalshi-tape: error: ROOT: {given} is a partition directory of a capture, "
                   f"not its root (give the capture root: {clean})\n")  # fmt: skip


# ---------------------------------------------------------------- SQL


def test_query_keeps_duckdbs_hint_on_one_line(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(["query", str(clean), "SELECT count(*) FROM trade"], capsys)
    assert status == 2
    assert err == ('kalshi-tape: error: SQL: Catalog Error: Table with name trade does not '
                   'exist! Did you mean "trades"? (fix the statement; `kalshi-tape query '
                   '--help` lists the views)\n')  # fmt: skip


def test_an_endless_query_is_stopped_at_its_timeout_with_a_clear_line_and_exit_7(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    status, out, err = cli(["query", str(clean), ENDLESS, "--timeout", "1s"], capsys)
    assert status == 7 and out == ""
    assert time.monotonic() - started < 10
    assert err.startswith("kalshi-tape: error: SQL: the query ran longer than its time limit "
                          "of 1 s and was stopped (raise --timeout")  # fmt: skip


def test_the_python_api_stops_an_endless_query_and_the_connection_goes_on(clean: Path) -> None:
    con = connect(clean)
    try:
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match=r"time limit of 0\.5 s"):
            run_query(con, ENDLESS, timeout_s=0.5).read_all()
        assert time.monotonic() - started < 5
        assert run_query(con, "SELECT count(*) AS n FROM trades").read_all()["n"][0].as_py() > 0
    finally:
        con.close()


def test_a_query_over_its_memory_limit_stops_with_a_clear_line_and_exit_7(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "SELECT range, md5(range::VARCHAR) AS h FROM range(20000000) ORDER BY h"
    status, _, err = cli(["query", str(clean), big, "--memory-limit", "64MB",
                          "--format", "csv"], capsys)  # fmt: skip
    assert status == 7
    assert err.startswith("kalshi-tape: error: SQL: the query needs more memory than its limit")
    assert "raise --memory-limit" in err


def test_connections_get_a_quarter_of_the_memory_where_duckdb_would_take_most(
    clean: Path,
) -> None:
    con = connect(clean)
    try:
        row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    finally:
        con.close()
    assert row is not None
    physical = physical_memory_bytes()
    assert physical is not None
    assert 0.2 * physical <= parse_size_bytes(str(row[0])) <= 0.3 * physical
