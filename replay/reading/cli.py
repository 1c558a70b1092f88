"""`kalshi-tape replay ROOT`: print or export a capture as a consumer would receive it.

The capture goes through a `ReplaySession` (the engine, so gaps are dropped and
reconnects reset books exactly as they were live), with one `@on` callback per
channel: callbacks run in arrival order, so the output interleaves channels as the
wire did. `--format jsonl` writes one JSON object per message (the frame itself
under "frame", byte for byte, with its receive time, envelope and whether it came
as a binary message); a frame whose bytes are not UTF-8 (JSON text must be) goes
under "frame_base64" instead, its exact bytes in standard base64, so every line
is valid UTF-8 JSON. `--format raw` writes each frame's exact bytes and a newline,
nothing else. `--format table` writes aligned text. A progress bar on stderr tracks long runs.

`-o FILE` never replaces a file without `--force` and never writes inside the
capture root. A market the capture does not hold is refused with the list of
those it holds (exit 2); a damaged capture file stops the replay with one line
naming it (exit 5). The reader (pyarrow) and asyncio are imported when the command
runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import sys
from contextlib import nullcontext
from typing import IO, TYPE_CHECKING, Any

from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    check_channels,
    checked_output_path,
    checked_time_range,
    damaged_capture,
    open_output,
    parse_speed,
    require_capture_root,
    time_range,
    unknown_markets,
)
from schemas.errors import ConfigError, storage_error
from schemas.storage import StorageError, add_storage_arguments, storage_from_args

if TYPE_CHECKING:  # the reader (pyarrow) loads when the command runs, not at start-up
    from replay.reading.capture import Capture
    from replay.reading.session import ReplaySession
    from stream.events import Frame

__all__ = ["register"]

_DESCRIPTION = """\
Print or export a capture as a consumer would have received it: gaps dropped and
books reset exactly as they were live, channels interleaved as the wire did.

formats:
  table  aligned text: time, channel, type, market, seq and the start of the message
  jsonl  one JSON object per frame: receive time, envelope, and the frame itself under
         "frame" byte for byte (under "frame_base64" when its bytes are not UTF-8)
  raw    each frame's exact bytes and a newline, nothing else

examples:
  kalshi-tape replay examples/sample --channel trade | head
  kalshi-tape replay examples/sample --format jsonl -o trades.jsonl --channel trade
  kalshi-tape replay examples/sample --start 2026-11-21T09:31:00Z --speed 1
  kalshi-tape replay examples/sample --channel orderbook_delta --start 2026-11-21T09:31:00Z \
      --snapshots --format jsonl   # books rebuildable from the output alone
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="print or export a capture as a consumer receives it",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    add_time_range(p, legacy=True)
    p.add_argument(
        "--channel",
        action="append",
        metavar="CHANNEL",
        help="channel to replay (repeatable; default: every channel captured)",
    )
    p.add_argument(
        "--market",
        action="append",
        metavar="TICKER",
        help="market to replay (repeatable; default: all)",
    )
    p.add_argument(
        "--speed",
        default=None,
        metavar="K|max",
        help="pace at K times real time, or max: as fast as possible (the default)",
    )
    p.add_argument(
        "--snapshots",
        action="store_true",
        help="with --start: begin each market's book with a snapshot of it at --start"
        " (built from the restored book, as a subscriber connecting then receives one)",
    )
    p.add_argument("--format", choices=("table", "jsonl", "raw"), default="table",
                   help="table (default), jsonl or raw: see formats below")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    add_storage_arguments(p)
    p.set_defaults(handler=run)


def _iso(recv_ns: int) -> str:
    return dt.datetime.fromtimestamp(recv_ns / 1e9, tz=dt.UTC).isoformat(timespec="microseconds")


def jsonl_line(frame: Frame) -> bytes:
    """One output line: receive time and envelope, and the frame bytes as they arrived
    (under "frame"; under "frame_base64", base64 of the exact bytes, when they are not
    UTF-8, so that the line is valid UTF-8 JSON whatever the frame held)."""
    raw = frame.raw
    head = (
        f'{{"recv_time":"{_iso(frame.recv_ns)}","recv_ns":{frame.recv_ns},"conn":{frame.conn},'
        f'"channel":{_text(frame.channel)},"type":{_text(frame.type)},'
        f'"sid":{_num(frame.sid)},"seq":{_num(frame.seq)},'
        f'"binary":{"true" if frame.binary else "false"},'
    ).encode()
    if _is_utf8(raw):
        return head + b'"frame":' + raw + b"}\n"
    return head + b'"frame_base64":"' + base64.b64encode(raw) + b'"}\n'


def raw_line(frame: Frame) -> bytes:
    """The frame's exact bytes and a newline (a frame of JSON text holds no raw newline)."""
    return bytes(frame.raw) + b"\n"


def _is_utf8(raw: bytes) -> bool:
    if raw.isascii():  # nearly every frame: one C-speed scan
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _num(value: int | None) -> str:
    return "null" if value is None else str(value)


def table_line(frame: Frame) -> str:
    time = _iso(frame.recv_ns)[11:26]
    seq = "" if frame.seq is None else str(frame.seq)
    market = frame.market_ticker or ""
    body = frame.raw.decode("utf-8", "replace")
    start = body.find('"msg":')
    summary = body[start + 6 : start + 86] if start >= 0 else body[:80]
    return f"{time}  {frame.channel:<22} {frame.type:<22} {market:<28} {seq:>8}  {summary}\n"


class _Sink:
    """The output stream; a write that fails is the disk's problem, not the capture's
    (the replay's read errors are `DamagedFile`, a full disk is `StorageUnavailable`)."""

    def __init__(self, out: IO[bytes], where: str) -> None:
        self._out = out
        self._where = where

    def write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise storage_error(exc, f"--output: cannot write {self._where}") from None

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise storage_error(exc, f"--output: cannot write {self._where}") from None


async def _replay(args: argparse.Namespace, out: _Sink, capture: Capture) -> int:
    from replay.reading.session import ReplaySession

    failures: list[str] = []
    channels = args.channel or capture.data_channels
    if not channels:
        raise ConfigError("ROOT", f"{args.root} holds no captured data", "record into it first")
    check_channels(channels, capture.data_channels)
    if args.market:
        held = set().union(*(capture.markets(channel) for channel in channels))
        problem = unknown_markets(args.market, held, ", ".join(channels))
        if problem is not None:
            raise ConfigError("--market", problem)
    start, end = checked_time_range(*time_range(args), capture.time_range())
    session = ReplaySession(
        capture.location or capture.root,
        start=start,
        end=end,
        channels=channels,
        markets=args.market,
        speed=parse_speed(args.speed, None),
        snapshots=args.snapshots,
        on_error=lambda report: (
            failures.append(report.message) if report.kind == "session" else None
        ),
    )
    # Ctrl+C must not wait for a paced source to reach its next record (up to the
    # engine's close timeout): an interrupted replay has nothing left to deliver.
    session.source.close_timeout_s = 0.1

    write = out.write  # per frame: the format is chosen once, not tested each time
    line = {"jsonl": jsonl_line, "raw": raw_line}.get(args.format)

    def emit(frame: Frame) -> None:
        write(line(frame) if line is not None else table_line(frame).encode())

    for channel in channels:
        session.source.validate_subscription(channel, None)
        session.on(channel, raw=True)(emit)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    total = sum(
        p.rows for run in capture.runs.values() for p in run.pieces
        if p.channel in set(channels) | {"_control", "_session"}
    )  # fmt: skip
    async with session:
        await _with_progress(session, total, show)
    out.flush()
    if failures:  # the capture could not be read to its end: never a silent short replay
        raise damaged_capture(args.root, failures[0])
    return 0


async def _with_progress(session: ReplaySession, total: int, show: bool) -> None:
    if not show:
        await session.run_forever()
        return
    import asyncio

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} records"),
        TimeRemainingColumn(), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("replay", total=total)
        runner = asyncio.create_task(session.run_forever())
        while not runner.done():
            progress.update(task, completed=session.source.records)
            await asyncio.wait({runner}, timeout=0.2)
        progress.update(task, completed=session.source.records)
        runner.result()


def run(args: argparse.Namespace) -> int:
    import asyncio

    import pyarrow as pa

    from replay.reading.capture import Capture

    local = require_capture_root(args.root)
    output = checked_output_path(args.output, local, force=args.force)
    try:
        capture = Capture(args.root, storage=storage_from_args(args))
    except StorageError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(args.root, exc) from None
    parse_speed(args.speed, None)  # a bad --speed before the output file is made
    sink: Any = open_output(output) if output else nullcontext(sys.stdout.buffer)
    with sink as out:
        try:
            return asyncio.run(_replay(args, _Sink(out, str(output or "stdout")), capture))
        except StorageError:  # the object store went away: not a damaged file
            raise
        except BrokenPipeError:  # `kalshi-tape replay ... | head`: the entry point's to handle
            raise
        except (pa.ArrowException, OSError) as exc:  # a truncated or foreign capture file
            raise _read_error(args.root, exc) from None


def _read_error(root: str, exc: BaseException) -> Exception:
    if isinstance(exc, PermissionError):
        return storage_error(exc, f"cannot read the capture {root}")
    return damaged_capture(root, exc)
