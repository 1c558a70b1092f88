"""The command-line contract, as a table: every command, every kind of bad input.

docs/cli.md sections 1 and 2 (the vocabulary, how a command fails) and
docs/operations.md section 6 (the exit statuses) promise that a bad input gives exactly
one line on stderr, naming what the user typed and the fix, and the documented exit
status; that nothing written is left half-done;
that Ctrl+C (130) and SIGTERM (143) stop a command at once; and that a reader
going away (`| head`) ends it quietly. Each row below is one such promise.

A command is a `Command` (how to run it against a ROOT, which flags it has); the rows
are generated from it, so a new command is one more entry in `COMMANDS` (and its own
rows in `EXTRA`, if it has flags of its own).

Read-only places, for a test run as root (which chmod does not stop):
* EACCES: a file under /sys (sysfs refuses root a new file there): exit 6;
* EROFS: a tmpfs mounted read-only for the test (skipped where mount is not allowed):
  exit 4;
* ENOTDIR: an existing file used as a directory (`afile/out.csv`): exit 2.

Rows run in this process (`main([...])`) unless signals or pipes are involved; those
run `python -m kalshi_tape` as a child.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kalshi_tape.cli import main

from ..replay.capture_factory import build_standard_capture

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample"
STRATEGY = f"{REPO / 'examples' / 'mid_bars.py'}:mid_bars"
MARKET = "KXNBAGAME-26MAR19-T2055"  # a market examples/sample holds
REFUSED_SAYS = "AWS Error ACCESS_DENIED"
DEAD_STORE = ("s3://bucket/capture", "--endpoint-url", "http://127.0.0.1:1")


@dataclass(frozen=True)
class Command:
    """How to run one command against `{root}`, and which families of flags it has."""

    name: str
    argv: tuple[str, ...]  # `{root}` where ROOT goes
    output: tuple[str, ...] | None = None  # -o FILE and the flags that go with it, if any
    times: bool = False  # --start / --end
    channels: bool = False  # --channel
    markets: bool = False  # --market
    prefix: tuple[str, ...] = ("--log-lev", "debug")  # a prefix of one of its flags
    store: bool = True  # reads s3://... with --endpoint-url
    root: str = "ROOT"  # how its errors name the root `{root}` stands for


COMMANDS = [
    Command("replay", ("replay", "{root}"), output=("--format", "jsonl"), times=True,
            channels=True, markets=True, prefix=("--chan", "trade")),
    Command("query", ("query", "{root}", "SELECT count(*) FROM frames"),
            output=("--format", "csv"), prefix=("--form", "csv")),
    Command("verify", ("verify", "{root}"), prefix=("--str",)),
    Command("inspect", ("inspect", "{root}"), prefix=("--form", "json")),
    Command("serve", ("serve", "--open", "--duration", "0.01", "{root}"), times=True,
            channels=True, markets=True, prefix=("--spe", "max")),
    Command("backtest", ("backtest", STRATEGY, "{root}", "--workers", "0"),
            output=("--slice", "1d"), times=True, channels=True, prefix=("--market", "NOPE")),
    Command("report", ("report", "{root}"), output=(), times=True,
            prefix=("--thr", "2")),
    Command("export", ("export", "hftbacktest", "{root}", "--market", MARKET,
            "-o", "{tmp}/never.npz"), output=(), times=True, markets=True,
            prefix=("--tick", "0.01")),
    Command("derive", ("derive", "{root}", "--to", "{tmp}/never"), times=True,
            prefix=("--data", "quotes")),
    Command("merge", ("merge", "{root}", "{other}", "--to", "{tmp}/never"), root="ROOT_A",
            prefix=("--offset", "0")),
]  # fmt: skip


@dataclass(frozen=True)
class Row:
    id: str
    argv: tuple[str, ...]
    status: int
    says: str
    writes: str | None = None  # an output path that must not exist afterwards
    needs: tuple[str, ...] = field(default=())  # fixtures: "ro"


def _with_root(command: Command, root: str) -> tuple[str, ...]:
    return tuple(root if a == "{root}" else a for a in command.argv)


def rows_for(c: Command) -> list[Row]:
    """The rows every command that reads a ROOT owes the contract."""
    cap = _with_root(c, "{cap}")
    rows = [
        Row(f"{c.name}-unknown-flag", (*cap, "--nope"), 2, "unrecognized arguments: --nope"),
        Row(f"{c.name}-prefix-of-a-flag", (*cap, *c.prefix), 2,
            f"unrecognized arguments: {c.prefix[0]}"),
        Row(f"{c.name}-missing-root", _with_root(c, "{tmp}/missing"), 2,
            f"{c.root}: capture root '{{tmp}}/missing' does not exist"),
        Row(f"{c.name}-file-root", _with_root(c, "{afile}"), 2,
            f"{c.root}: capture root '{{afile}}' is a file, not a directory"),
        Row(f"{c.name}-empty-root", _with_root(c, "{empty}"), 2,
            f"{c.root}: {{empty}} is not a capture root"),
        Row(f"{c.name}-partition-root", _with_root(c, "{cap}/channel=trade"), 2,
            "is a partition directory of a capture, not its root (give the capture root: {cap})"),
    ]  # fmt: skip
    if c.store:
        dead = (*_with_root(c, DEAD_STORE[0]), *DEAD_STORE[1:])
        says = "cannot reach the storage of s3://bucket/capture"
        refused = (*_with_root(c, DEAD_STORE[0]), "--endpoint-url", "{refusing}")
        rows += [
            Row(f"{c.name}-dead-object-store", dead, 4, says),
            Row(f"{c.name}-refused-object-store", refused, 4, REFUSED_SAYS),
        ]
    if c.output is not None:
        out = (*cap, *c.output)
        rows += [
            Row(f"{c.name}-output-exists", (*out, "-o", "{existing}"), 2,
                "--output: {existing} already exists (add --force to replace it)"),
            Row(f"{c.name}-output-is-a-directory", (*out, "-o", "{empty}"), 2,
                "--output: {empty} is a directory"),
            Row(f"{c.name}-output-under-a-file", (*out, "-o", "{afile}/out"), 2,
                "--output: {afile} is a file, not a directory", writes="{afile}/out"),
            Row(f"{c.name}-output-in-a-missing-directory", (*out, "-o", "{tmp}/no/out"), 2,
                "--output: directory {tmp}/no does not exist"),
            Row(f"{c.name}-output-refused", (*out, "-o", "/sys/kt-out"), 6,
                "--output: cannot write in /sys: Permission denied", writes="/sys/kt-out"),
            Row(f"{c.name}-output-read-only", (*out, "-o", "{ro}/out"), 4,
                "--output: cannot write in {ro}: Read-only file system", needs=("ro",)),
        ]  # fmt: skip
    if c.times:
        rows += [
            Row(f"{c.name}-bad-time", (*cap, "--start", "yesterday"), 2,
                "--start: 'yesterday' is not a time (use ISO-8601"),
            Row(f"{c.name}-inverted-range", (*cap, "--start", "2026-11-21T09:31",
                "--end", "2026-11-21T09:30"), 2,
                "--end: 2026-11-21T09:30 is not after --start 2026-11-21T09:31"),
            Row(f"{c.name}-range-after-the-capture", (*cap, "--start", "2030-01-01"), 2,
                "--start: 2030-01-01 is after the capture's end (the capture runs from "
                "2026-11-21T09:30:36Z to 2026-11-21T09:31:36Z)"),
            Row(f"{c.name}-range-before-the-capture", (*cap, "--end", "2020-01-01"), 2,
                "--end: 2020-01-01 is before the capture's start"),
        ]  # fmt: skip
    if c.channels:
        rows += [
            Row(f"{c.name}-unknown-channel", (*cap, "--channel", "trades"), 2,
                "--channel: unknown channel 'trades' (did you mean trade?"),
            Row(f"{c.name}-recorder-channel", (*cap, "--channel", "_session"), 2,
                "--channel: _session is the recorder's own record"),
            Row(f"{c.name}-channel-not-captured", (*cap, "--channel", "fill"), 2,
                "--channel: the capture holds no fill data (it holds market_lifecycle_v2, "
                "orderbook_delta, ticker, trade)"),
        ]  # fmt: skip
    if c.markets:
        rows.append(Row(f"{c.name}-unknown-market", (*cap, "--market", "NOPE"), 2,
                        "--market: the capture holds no"))  # fmt: skip
    return rows


RECORD = ("record", "--sim", "--no-progress", "--duration", "1s", "--check-config")
#: Each command's own flags: numbers, sizes, speeds, ports, and record (no ROOT).
EXTRA = [
    Row("record-unknown-flag", (*RECORD, "--root", "{tmp}/d", "--nope"), 2,
        "unrecognized arguments: --nope"),
    Row("record-prefix-of-a-flag", (*RECORD, "--root", "{tmp}/d", "--sim-rat", "5"), 2,
        "unrecognized arguments: --sim-rat"),
    Row("record-root-is-a-file", (*RECORD, "--root", "{afile}"), 2,
        "--root: {afile} is not a directory"),
    Row("record-root-read-only", (*RECORD, "--root", "{ro}/d"), 4,
        "--root: cannot write in {ro}: Read-only file system", needs=("ro",)),
    # Without --check-config: its preflight asks access(2), which says yes to root.
    Row("record-root-refused", (*RECORD[:-1], "--root", "/sys/kt-root"), 6,
        "--root: cannot create /sys/kt-root: Operation not permitted"),
    Row("record-bad-size", (*RECORD, "--root", "{tmp}/d", "--segment-size", "12XB"), 2,
        "argument --segment-size:"),
    Row("record-bad-number", (*RECORD, "--root", "{tmp}/d", "--sim-rate", "fast"), 2,
        "argument --sim-rate: invalid float value: 'fast'"),
    Row("record-bad-duration", (*RECORD, "--root", "{tmp}/d", "--commit-interval", "soon"), 2,
        "argument --commit-interval:"),
    Row("record-dead-object-store", (*RECORD, "--root", "s3://bucket/capture", "--endpoint-url",
        "http://127.0.0.1:1"), 4, "cannot reach the storage of s3://bucket/capture"),
    Row("record-refused-object-store", (*RECORD, "--root", "s3://bucket/capture",
        "--endpoint-url", "{refusing}"), 4, REFUSED_SAYS),
    Row("record-taken-port", (*RECORD, "--root", "{tmp}/d", "--metrics-port", "{taken}"), 3,
        "{taken}"),
    Row("query-bad-threads", ("query", "{cap}", "SELECT 1", "--threads", "0"), 2,
        "--threads: must be at least 1"),
    Row("query-bad-size", ("query", "{cap}", "SELECT 1", "--memory-limit", "12XB"), 2,
        "argument --memory-limit:"),
    Row("query-bad-duration", ("query", "{cap}", "SELECT 1", "--timeout", "soon"), 2,
        "argument --timeout:"),
    Row("query-bad-format", ("query", "{cap}", "SELECT 1", "--format", "xml"), 2,
        "argument --format: invalid choice: 'xml' (choose from table, csv, jsonl, parquet)"),
    Row("query-parquet-needs-a-file", ("query", "{cap}", "SELECT 1", "--format", "parquet"), 2,
        "--output: parquet output needs a file"),
    Row("query-bad-sql", ("query", "{cap}", "SELECT * FROM trade"), 2,
        'SQL: Catalog Error: Table with name trade does not exist! Did you mean "trades"?'),
    Row("replay-speed-zero", ("replay", "{cap}", "--speed", "0"), 2,
        "--speed: '0' is not a positive number (give K times real time, like 1 or 10, or max)"),
    Row("replay-speed-inf", ("replay", "{cap}", "--speed", "inf"), 2,
        "--speed: 'inf' is not a positive number"),
    Row("serve-speed-inf", ("serve", "--open", "{cap}", "--speed", "inf"), 2,
        "--speed: 'inf' is not a positive number"),
    Row("serve-bad-port", ("serve", "--open", "--duration", "0.01", "--port", "70000"), 2,
        "--port: 70000 is not a TCP port"),
    Row("serve-bad-rate", ("serve", "--open", "--duration", "0.01", "--sim-rate", "-5"), 2,
        "--sim-rate: -5.0 is out of range"),
    Row("serve-taken-port", ("serve", "--open", "--duration", "0.01", "--port", "{taken}"), 3,
        "--port: 127.0.0.1:{taken} is already in use"),
    Row("serve-truth-refused", ("serve", "--open", "--duration", "0.01", "--truth",
        "/sys/kt.ndjson"), 6, "--truth: cannot write /sys/kt.ndjson: Permission denied"),
    Row("serve-truth-read-only", ("serve", "--open", "--duration", "0.01", "--truth",
        "{ro}/t.ndjson"), 4, "--truth: cannot write {ro}/t.ndjson: Read-only file system",
        needs=("ro",)),
    Row("serve-flag-needs-a-root", ("serve", "--open", "--duration", "0.01", "--speed", "2"), 2,
        "--speed: applies only when serving a capture"),
    Row("backtest-bad-workers", ("backtest", STRATEGY, "{cap}", "--workers", "-1"), 2,
        "argument --workers: must be at least 1"),
    Row("backtest-bad-slice", ("backtest", STRATEGY, "{cap}", "--slice", "soon"), 2,
        "argument --slice:"),
    Row("backtest-bad-strategy", ("backtest", "{tmp}/nope.py:f", "{cap}"), 2, "STRATEGY:"),
    Row("inspect-no-root", ("inspect",), 2, "the following arguments are required: ROOT"),
    *[Row(f"merge-{name}", ("merge", *argv), status, says, needs=needs)
      for name, argv, status, says, needs in [
        ("missing-root-b", ("{cap}", "{tmp}/missing", "--to", "{tmp}/never"), 2,
         "ROOT_B: capture root '{tmp}/missing' does not exist", ()),
        ("same-root-twice", ("{cap}", "{cap}", "--to", "{tmp}/never"), 2,
         "ROOT_B: {cap} is the same capture as ROOT_A (give the capture the other host "
         "recorded)", ()),
        ("run-in-both-roots", ("{cap}", "{capcopy}", "--to", "{tmp}/never"), 2,
         "ROOT_B: run 20261121T093036Z-3031e755 is in both {cap} and {capcopy}", ()),
        ("no-common-trades", ("{cap}", "{other}", "--to", "{tmp}/never"), 2,
         "ROOT_B: no trade of {other} (6) is one of {cap} (1,105), so B's clock offset cannot "
         "be estimated", ()),
        ("no-output", ("{cap}", "{other}"), 2, "the following arguments are required: --to",
         ()),
        ("output-exists", ("{cap}", "{other}", "--to", "{empty}"), 2,
         "--to: {empty} already exists (the merge writes a new capture root", ()),
        ("output-inside-a-root", ("{cap}", "{other}", "--to", "{other}/merged"), 2,
         "--to: {other}/merged is inside ROOT_B", ()),
        ("output-under-a-file", ("{cap}", "{other}", "--to", "{afile}/merged"), 2,
         "--to: {afile} is a file, not a directory", ()),
        ("output-in-a-missing-directory", ("{cap}", "{other}", "--to", "{tmp}/no/merged"), 2,
         "--to: directory {tmp}/no does not exist", ()),
        ("output-refused", ("{cap}", "{other}", "--to", "/sys/kt-merged"), 6,
         "--to: cannot write in /sys: Permission denied", ()),
        ("output-read-only", ("{cap}", "{other}", "--to", "{ro}/merged"), 4,
         "--to: cannot write in {ro}: Read-only file system", ("ro",)),
        ("report-exists", ("{cap}", "{other}", "--to", "{tmp}/never", "--report",
                           "{existing}"), 2,
         "--report: {existing} already exists (add --force to replace it)", ()),
        ("report-is-a-directory", ("{cap}", "{other}", "--to", "{tmp}/never", "--report",
                                   "{empty}"), 2, "--report: {empty} is a directory", ()),
        ("bad-offset", ("{cap}", "{other}", "--to", "{tmp}/never", "--offset-ns", "250ms"), 2,
         "argument --offset-ns: invalid int value: '250ms'", ()),
      ]],
    Row("unknown-command", ("frobnicate",), 2, "invalid choice: 'frobnicate'"),
]  # fmt: skip
ROWS = [row for c in COMMANDS for row in rows_for(c)] + EXTRA


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("contract")
    # Another host's capture (no trade in common with the sample), and a copy of the sample.
    build_standard_capture(tmp / "other")
    shutil.copytree(SAMPLE, tmp / "capcopy")
    (tmp / "afile").write_text("not a capture\n")
    (tmp / "empty").mkdir()
    (tmp / "existing").write_text("keep me\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield {"tmp": str(tmp), "afile": str(tmp / "afile"), "empty": str(tmp / "empty"),
               "existing": str(tmp / "existing"), "cap": str(SAMPLE), "ro": "{ro}",
               "other": str(tmp / "other"), "capcopy": str(tmp / "capcopy"),
               "taken": str(held.getsockname()[1])}  # fmt: skip


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request, as S3 does a key it does not accept."""

    def _deny(self) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _deny

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_store() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A directory on a tmpfs mounted read-only (EROFS even for root), or None where
    this process may not mount."""
    where = tmp_path_factory.mktemp("ro")
    mounted = (
        shutil.which("mount")
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    yield str(where) if mounted else None
    if mounted:
        subprocess.run(["umount", str(where)], check=False)


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own exit
        status = int(exc.code or 0)
    _, err = capsys.readouterr()
    return status, err


def assert_one_line(err: str, says: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("kalshi-tape") and ": error: " in lines[0], lines[0]
    assert says in lines[0], lines[0]
    assert lines[0].endswith(")"), f"no fix in parentheses: {lines[0]}"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_bad_input_is_one_line_naming_it_and_the_documented_status(
    row: Row,
    places: dict[str, str],
    read_only_dir: str | None,
    refusing_store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "ro" in row.needs and read_only_dir is None:
        pytest.skip("no read-only mount available (mount refused)")
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"),
                        ("AWS_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)  # a key to refuse (no instance-metadata lookup)
    fill = {**places, "ro": read_only_dir or "/nonexistent", "refusing": refusing_store}
    before = sorted(os.listdir(fill["tmp"]))
    status, err = run_in_process([a.format(**fill) for a in row.argv], capsys)
    assert status == row.status, err
    assert_one_line(err, row.says.format(**fill))
    if row.writes is not None:
        assert not Path(row.writes.format(**fill)).exists()
    assert sorted(os.listdir(fill["tmp"])) == before  # nothing half-written left behind
    assert Path(fill["existing"]).read_text() == "keep me\n"
    if read_only_dir is not None:
        assert os.listdir(read_only_dir) == []


# ---------------------------------------------------------------- signals and pipes


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kalshi_tape", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def interrupt(
    proc: subprocess.Popen[bytes], sig: int, ready: Callable[[], bool]
) -> tuple[float, str]:
    """Send `sig` once the command is at work; (seconds from the signal to exit, stderr).

    At work: `ready()` holds (the command made its temporary output file, or the
    strategy started), then a moment more for the work itself to be under way. No fixed
    sleep guesses how long the interpreter takes to start on a busy machine."""
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started its work"
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return time.monotonic() - sent, err.decode()


#: Seconds from the signal to the exit that still mean "stopped", not "waited for".
STOPPED_S = 10.0
HEAVY_SQL = "SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000) b"
#: A strategy that tells the test it started, then keeps its worker busy for a minute.
SLOW_STRATEGY = """\
import pathlib
import time


def slow(session, shard):
    pathlib.Path({started!r}).touch()
    time.sleep(60)
"""
#: (id, argv, signal, exit status, what the line says). `{tmp}/out` must not be left.
SIGNAL_ROWS = [
    ("query-sigint", ("query", str(SAMPLE), HEAVY_SQL, "--timeout", "0", "--format", "csv",
     "-o", "{tmp}/out"), signal.SIGINT, 130, "interrupted (Ctrl+C)"),
    ("query-sigterm", ("query", str(SAMPLE), HEAVY_SQL, "--timeout", "0", "--format", "jsonl",
     "-o", "{tmp}/out"), signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ("replay-paced-sigint", ("replay", str(SAMPLE), "--speed", "1", "-o", "{tmp}/out"),
     signal.SIGINT, 130, "interrupted (Ctrl+C)"),
    ("replay-paced-sigterm", ("replay", str(SAMPLE), "--speed", "1", "--format", "jsonl",
     "-o", "{tmp}/out"), signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ("backtest-busy-workers-sigint", ("backtest", "{tmp}/slow.py:slow", str(SAMPLE),
     "--workers", "1", "-o", "{tmp}/out"), signal.SIGINT, 130, "interrupted (Ctrl+C)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "sig", "status", "says"),
    [row[1:] for row in SIGNAL_ROWS],
    ids=[row[0] for row in SIGNAL_ROWS],
)
def test_ctrl_c_or_sigterm_stops_a_command_at_once_leaving_nothing_half_written(
    tmp_path: Path, argv: tuple[str, ...], sig: int, status: int, says: str
) -> None:
    started = tmp_path / "started"
    (tmp_path / "slow.py").write_text(SLOW_STRATEGY.format(started=str(started)))
    proc = spawn(*(a.format(tmp=tmp_path) for a in argv))
    if argv[0] == "backtest":  # the output is opened once the result is in: too late
        took, err = interrupt(proc, sig, started.exists)
        started.unlink()
    else:
        took, err = interrupt(proc, sig, lambda: any(tmp_path.glob(".out.*.tmp")))
    assert proc.returncode == status, err
    assert_one_line(err, says)
    # The contract (docs/operations.md section 6): the work is interrupted, not waited
    # for. Each command's work here lasts a minute or more (a query of 1e11 rows, a paced
    # replay, a strategy asleep for 60 s); stopped, it exits in about 0.1 s on an idle
    # machine (DuckDB's interrupt(), the paced replay's task, the worker processes
    # killed), the exit itself the rest. The bound leaves a busy machine room to exit
    # while still telling "stopped" from "waited for".
    assert took < STOPPED_S, took
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py"]


@pytest.mark.parametrize(
    ("argv", "sig"),
    [(("record", "--sim", "--no-progress", "--root", "{tmp}/d"), signal.SIGINT),
     (("serve", "--open"), signal.SIGTERM)],
    ids=["record-sigint", "serve-sigterm"],
)  # fmt: skip
def test_record_and_serve_take_a_signal_as_their_normal_stop(
    tmp_path: Path, argv: tuple[str, ...], sig: int
) -> None:
    proc = spawn(*(a.format(tmp=tmp_path) for a in argv))
    if argv[0] == "serve":  # at work once it prints the URL it listens on
        assert proc.stdout is not None
        took, err = interrupt(proc, sig, lambda: proc.stdout.readline().startswith(b"ws://"))
    else:  # at work once its journal exists
        took, err = interrupt(proc, sig, (tmp_path / "d" / "_journal").exists)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # serve stops at once; record first seals its journal and publishes what it holds
    # (README "Recording"), disk work with no time bound of its own: 10 s only says it
    # does not hang (as it did, for the live session's 5 s close timeout, on a Ctrl+C
    # during its start-up).
    assert took < (1.0 if argv[0] == "serve" else 10.0), took


@pytest.mark.parametrize(
    "argv",
    [("inspect", str(SAMPLE), "--format", "json"),
     ("replay", str(SAMPLE), "--format", "jsonl"),
     ("query", str(SAMPLE), "SELECT * FROM frames", "--format", "jsonl"),
     ("verify", str(SAMPLE), "--json")],
    ids=["inspect", "replay", "query", "verify"],
)  # fmt: skip
def test_a_reader_that_goes_away_ends_the_command_quietly(argv: tuple[str, ...]) -> None:
    """`kalshi-tape inspect ROOT --format json | head -1`: status 0, nothing on stderr."""
    proc = spawn(*argv)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does once it has its line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err.decode().strip() == ""


def test_every_command_and_flag_has_a_description_for_users() -> None:
    """`--help` is written for users: every command described, every flag explained, no
    developer docstring (`raise ConfigError`, "this module")."""
    import argparse

    from kalshi_tape.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert command.description, name
        text = command.format_help()
        for developer_word in ("ConfigError", "This module", "module owns", "raise "):
            assert developer_word not in text, (name, developer_word)
        for action in command._actions:
            if action.help is not argparse.SUPPRESS:  # flags and positionals alike
                assert action.help, (name, action.option_strings or action.dest)
        assert command.allow_abbrev is False, name


def test_every_command_of_the_parser_is_in_the_contract_table() -> None:
    import argparse

    from kalshi_tape.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    covered = {c.name for c in COMMANDS} | {"record"}  # record: its rows are in EXTRA
    assert set(sub.choices) <= covered, sorted(set(sub.choices) - covered)


#: (argv with an older spelling, the flag --help no longer lists). docs/cli.md section 1.
OLD_SPELLINGS = [
    (("replay", str(SAMPLE), "--from", "2026-11-21T09:31:30Z", "--to", "2026-11-21T09:31:31Z",
      "--channel", "trade"), "--from"),
    (("query", str(SAMPLE), "SELECT count(*) AS n FROM trades", "--format", "json"), None),
    (("inspect", str(SAMPLE), "--json"), "--json"),
    (("verify", str(SAMPLE), "--json"), "--json"),
    (("backtest", STRATEGY, str(SAMPLE), "--workers", "0", "--shard", "30s"), "--shard"),
    (("serve", "--open", "--duration", "0.01", "--markets", "3", "--rate", "10", "--seed", "1"),
     "--markets"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "hidden"), OLD_SPELLINGS, ids=[a[0] for a, _ in OLD_SPELLINGS])
def test_an_older_spelling_still_works_and_is_not_listed(
    argv: tuple[str, ...], hidden: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.strip(), err
    if argv[0] == "query":
        assert out == '{"n":1105}\n'  # `json` was JSON lines, as `jsonl` is now
    if hidden is not None:
        with pytest.raises(SystemExit):
            main([argv[0], "--help"])
        assert f"{hidden} " not in capsys.readouterr().out


def test_a_backtest_on_local_workers_is_quiet_by_default() -> None:
    """Dask's scheduler, nannies and workers log at INFO; unless `--log-level debug`,
    stderr holds the backtest's own summary only (docs/cli.md section 1), even when Dask's
    default HTTP port (8787) is taken, as it is by any other cluster on the machine."""
    with socket.socket() as dask_port:
        try:
            dask_port.bind(("0.0.0.0", 8787))
            dask_port.listen()
        except OSError:
            pass  # taken already: the same condition
        proc = spawn("backtest", STRATEGY, str(SAMPLE), "--workers", "1", "--slice", "30s")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("[")
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("backtest: "), lines
