"""A recorder stand-in for crash tests: a real process the tests kill with SIGKILL.

    python journal_driver.py record JOURNAL ROOT [--rate N] [--segment-bytes B] [--publish]
    python journal_driver.py recover JOURNAL ROOT [--pause-at N]
    python journal_driver.py compact ROOT PARTITION [--pause-at N]

`record` appends synthetic frames at a steady rate and prints, flushed, `RUN <run_id>`
once and then `D <idx>` for every durable idx the journal reports (printed only after
the fdatasync, so every printed idx is durable). `recover` and `compact` print
`F <n>` before their n-th fsync, stop for good before the `--pause-at` one (so a
test can kill them at an exact point), and print `DONE` at the end. With
`--publish`, `record` also publishes sealed segments from a background thread and
prints `P <n>` before each publisher fsync.

Also importable: `frame(i)` makes the synthetic frames the tests append themselves, and
`Driver(mode, *args)` starts the same program, `main([mode, *args])`, as a process of its
own: forked from a `multiprocessing` forkserver that has imported the storage code
already (pyarrow among it), so a start costs milliseconds instead of a fresh
interpreter's imports (the kill tests of recovery and compaction start one per fsync).
Each is a real process with its own pid, killed with SIGKILL like any other; only its
stdout is a pipe the test reads.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TextIO

from recorder.storage.journal import JournalWriter
from schemas.record import new_run_id

__all__ = ["Driver", "frame", "main"]

_TICKERS = [f"KXTEST-26JAN01-B{n}" for n in range(12)]


def frame(i: int) -> tuple[str, str, str, int | None, int | None, str | None, bytes]:
    """Synthetic record i: (dir, channel, type, sid, seq, market_ticker, raw).

    Three data channels plus the odd frame that is not JSON at all (invalid UTF-8) and
    the odd empty one, both stored under `_unknown` with their bytes intact.
    """
    ticker = _TICKERS[i % len(_TICKERS)]
    kind = i % 10
    if kind < 6:
        raw = (
            b'{"type":"orderbook_delta","sid":1,"seq":%d,"msg":{"market_ticker":"%s",'
            b'"price_dollars":"0.%02d00","delta_fp":"%d.00","side":"yes"}}'
            % (i, ticker.encode(), i % 99, i % 50 - 25)
        )
        return ("in", "orderbook_delta", "orderbook_delta", 1, i, ticker, raw)
    if kind < 8:
        raw = b'{"type":"ticker","sid":2,"msg":{"market_ticker":"%s","price_dollars":"0.%02d00"}}'
        return ("in", "ticker", "ticker", 2, None, ticker, raw % (ticker.encode(), i % 99))
    if kind == 8:
        raw = b'{"type":"trade","sid":3,"seq":%d,"msg":{"market_ticker":"%s"}}'
        return ("in", "trade", "trade", 3, i, ticker, raw % (i, ticker.encode()))
    if i % 20 == 9:
        return ("in", "_unknown", "_malformed", None, None, None, b"\xff\xfe not json \x80" * 2)
    return ("in", "_unknown", "_malformed", None, None, None, b"")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _marking_fsync(tag: str, pause_at: int = 0) -> Callable[[int], None]:
    """An fsync that announces itself, and stops for good before the `pause_at`-th call
    (so the test's SIGKILL lands exactly there)."""
    count = 0

    def fsync(fd: int) -> None:
        nonlocal count
        count += 1
        _say(f"{tag} {count}")
        if count == pause_at:
            time.sleep(3600)
        os.fsync(fd)

    return fsync


def _record(args: argparse.Namespace) -> None:
    run_id = new_run_id(time.time_ns(), os.urandom(4))
    on_sealed = None
    if args.publish:
        from recorder.storage.publisher import Publisher

        publisher = Publisher(args.journal, args.root, fsync=_marking_fsync("P"))
        publisher.start()
        on_sealed = publisher.submit
    writer = JournalWriter(
        args.journal,
        run_id,
        commit_interval_s=0.01,
        segment_max_bytes=args.segment_bytes,
        on_sealed=on_sealed,
        on_durable=lambda idx, _latency_ns: _say(f"D {idx}"),
    )
    _say(f"RUN {run_id}")
    period_s = 1.0 / args.rate
    start = time.monotonic()
    i = 0
    while True:
        due = int((time.monotonic() - start) / period_s)
        while i < due:
            dir_, channel, type_, sid, seq, ticker, raw = frame(i)
            writer.append(1, time.time_ns(), time.monotonic_ns(), dir_, channel, type_, sid, seq,
                          ticker, raw)  # fmt: skip
            i += 1
        time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("journal", type=Path)
    rec.add_argument("root")
    rec.add_argument("--rate", type=float, default=20_000)
    rec.add_argument("--segment-bytes", type=int, default=64 << 10)
    rec.add_argument("--publish", action="store_true")
    rcv = sub.add_parser("recover")
    rcv.add_argument("journal", type=Path)
    rcv.add_argument("root")
    rcv.add_argument("--pause-at", type=int, default=0)
    cmp_ = sub.add_parser("compact")
    cmp_.add_argument("root")
    cmp_.add_argument("partition")
    cmp_.add_argument("--pause-at", type=int, default=0)
    args = ap.parse_args(argv)
    if args.mode == "record":
        _record(args)
    elif args.mode == "recover":
        from recorder.storage.recovery import recover

        recover(args.journal, args.root, fsync=_marking_fsync("F", args.pause_at))
    else:
        from recorder.storage.compaction import compact

        compact(args.root, args.partition, min_age_s=0, delete_grace_s=0,
                fsync=_marking_fsync("F", args.pause_at))  # fmt: skip
    _say("DONE")
    return 0


#: What the forkserver imports once: this module and the storage code each mode runs.
_PRELOAD = [
    __name__,
    "recorder.storage.journal",
    "recorder.storage.publisher",
    "recorder.storage.recovery",
    "recorder.storage.compaction",
]


def _child(argv: list[str], out: Connection) -> None:
    """The started process: `main(argv)` with its stdout on the test's pipe."""
    os.dup2(out.fileno(), 1)
    out.close()
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - fd 1 is the process's own
    raise SystemExit(main(argv))


class Driver:
    """`main([mode, *args])` in a process of its own (see the module docstring).

    `stdout` reads what it prints (the end of the file once it has died), `kill()` sends
    SIGKILL, `wait()` waits for its end and gives its exit code (negative: the signal).
    """

    def __init__(self, mode: str, *args: str) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)  # before its first start; ignored after
        reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=([mode, *args], writer))
        self._process.start()
        writer.close()  # the child holds the only write end: its death is our EOF
        self.stdout: TextIO = os.fdopen(os.dup(reader.fileno()), "r")
        reader.close()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    def kill(self) -> None:
        """SIGKILL, unless it has already exited."""
        self._process.kill()

    def wait(self, timeout_s: float = 60) -> int:
        self._process.join(timeout_s)
        code = self._process.exitcode
        assert code is not None, f"journal_driver {self.pid} still running"
        return code

    def run(self, timeout_s: float = 60) -> str:
        """Everything it prints until it exits; it must exit 0."""
        out = self.stdout.read()
        self.stdout.close()
        code = self.wait(timeout_s)
        assert code == 0, (code, out)
        return out

    def close(self) -> None:
        """Kill it if it still runs, wait for it, close the pipe."""
        if self._process.exitcode is None:
            self.kill()
        self.wait()
        self.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
