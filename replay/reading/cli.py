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
naming it (exit 5).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import sys
from contextlib import nullcontext
from typing import IO, Any

import pyarrow as pa

from replay.cli_common import (
    add_time_range,
    checked_output_path,
    damaged_capture,
    time_range,
    unknown_markets,
)
from replay.reading.capture import Capture
from replay.reading.layout import resolve_root
from replay.reading.session import ReplaySession, to_ns
from schemas.errors import ConfigError, storage_error
from schemas.storage import StorageError, add_storage_arguments, is_remote, storage_from_args
from stream.events import Frame

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="print or export a capture as a consumer receives it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="capture root: a directory or s3://bucket/prefix")
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
        type=_speed,
        default=None,
        metavar="K",
        help="pace at K times real time (default: as fast as possible)",
    )
    p.add_argument("--format", choices=("jsonl", "raw", "table"), default="table",
                   help="jsonl: a JSON object per frame; raw: each frame's exact bytes and "
                        "a newline; table: aligned text (default)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="PATH", help="write to PATH instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    add_storage_arguments(p)
    p.set_defaults(handler=run)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _time(text: str | None, flag: str) -> int | None:
    try:
        return to_ns(text, flag)
    except ValueError:
        raise ConfigError(
            flag, f"{text!r} is not a time", "use ISO-8601, like 2026-11-21T08:00:00Z"
        ) from None


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


async def _replay(args: argparse.Namespace, out: IO[bytes]) -> int:
    capture = Capture(args.root, storage=storage_from_args(args))
    failures: list[str] = []
    channels = args.channel or capture.data_channels
    if not channels:
        raise ConfigError("ROOT", f"{args.root} holds no captured data", "record into it first")
    if args.market:
        held = set().union(*(capture.markets(channel) for channel in channels))
        problem = unknown_markets(args.market, held, ", ".join(channels))
        if problem is not None:
            raise ConfigError("--market", problem)
    (start, start_flag), (end, end_flag) = time_range(args)
    session = ReplaySession(
        capture.location or capture.root,
        start=_time(start, start_flag),
        end=_time(end, end_flag),
        channels=channels,
        markets=args.market,
        speed=args.speed,
        on_error=lambda report: (
            failures.append(report.message) if report.kind == "session" else None
        ),
    )
    count = 0

    def emit(frame: Frame) -> None:
        nonlocal count
        count += 1
        if args.format == "jsonl":
            out.write(jsonl_line(frame))
        elif args.format == "raw":
            out.write(raw_line(frame))
        else:
            out.write(table_line(frame).encode())

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
    local = None if is_remote(args.root) else resolve_root(args.root)
    output = checked_output_path(args.output, local, force=args.force)
    try:
        sink: Any = open(output, "wb") if output else nullcontext(sys.stdout.buffer)  # noqa: SIM115
    except OSError as exc:
        raise ConfigError("--output", f"cannot write {args.output}: {exc.strerror}") from None
    with sink as out:
        try:
            return asyncio.run(_replay(args, out))
        except BrokenPipeError:  # `kalshi-tape replay ... | head`
            return 0
        except StorageError:  # the object store went away: not a damaged file
            raise
        except (pa.ArrowException, OSError) as exc:  # a truncated or foreign capture file
            if isinstance(exc, PermissionError):
                raise storage_error(exc, f"cannot read the capture {args.root}") from None
            raise damaged_capture(args.root, exc) from None
