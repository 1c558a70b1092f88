"""`kalshi-tape serve`: run the simulated exchange, or replay a capture, from the command line.

This module owns the subcommand's flags and their translation into a
`ServerConfig` and, with a capture ROOT (`serve ROOT`, or the older `--from ROOT`),
a `CaptureTape` (the replay server: the capture's frames instead of the synthetic
market); bad values raise `ConfigError` naming the flag, a taken port is
`PortInUse` (exit 3) and a damaged capture file `DamagedFile` (exit 5). The first
line on stdout is the URL clients connect to
(machine-readable, flushed at once, so a parent process can read it), e.g.
`ws://127.0.0.1:43817/trade-api/ws/v2`. The server stops cleanly on SIGINT or
SIGTERM (or after `--duration`).

    kalshi-tape serve --open --rate 5000 --markets 50 --seed 7
    kalshi-tape serve --public-key '*=key.pub.pem' --fault close:1011@every=30s
    kalshi-tape serve --open --switch empty_side=empty_list --fault gap@p=0.001 --truth truth.ndjson
    kalshi-tape serve --open data/ --speed 10 --market KXBTCD-26NOV21-T100000
    kalshi-tape serve --open data/ --speed max --reproduce-disconnects
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import signal
import sys
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa

from replay.cli_common import add_time_range, damaged_capture
from replay.errors import NotInCapture
from replay.server.app import SimServer
from replay.server.capture_tape import CaptureTape
from replay.server.config import DEFAULT_MIX, ServerConfig, Switches
from replay.server.faults import parse_fault
from schemas.errors import ConfigError, PortInUse, storage_error
from schemas.storage import StorageError, add_storage_arguments, storage_from_args
from schemas.units import parse_duration_s

__all__ = ["FAULT_HELP", "add_arguments", "build_config", "build_tape", "register", "run"]

FAULT_HELP = """\
fault specs: KIND[:ARG][@TRIGGER[,TRIGGER...]]
  connection kinds: close[:CODE] (default 1011), drop, stall[:DURATION], no_pong[:DURATION]
  frame kinds (next sequenced data frame): gap, dup, reorder, malformed, bad_utf8,
      oversized, binary (sent as a binary message), unsubscribed, error25
  handshake kinds: reject[:STATUS] (default 503), slow_handshake[:DURATION]
  triggers (ORed): every=5s  after=1000 (frames)  p=0.001 (per frame)  at=2s+7.5s
      conn=1+2 (connection numbers, per handshake attempt)  times=N (per connection)
  e.g. close:4001@at=1.5s,conn=1   gap@p=0.001   stall:3s@after=1000   reject:503@conn=1+2
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the `kalshi-tape` command."""
    p = sub.add_parser(
        "serve",
        help="run the simulated Kalshi exchange (WebSocket server with fault injection)",
        description=__doc__,
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    add_storage_arguments(p)
    p.set_defaults(handler=run)


#: ServerConfig's defaults: the flags show them and leave them to it (one place each).
_DEFAULTS: Final[dict[str, Any]] = {
    f.name: f.default for f in dataclasses.fields(ServerConfig)
    if f.default is not dataclasses.MISSING
}  # fmt: skip


def _default(name: str, unit: str = "") -> str:
    return f"(default {_DEFAULTS[name]:g}{unit})" if isinstance(_DEFAULTS[name], float) else (
        f"(default {_DEFAULTS[name]}{unit})"
    )  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `serve` (shared with `python -m replay.server`). A flag not given
    leaves its `ServerConfig` field at that class's default."""
    p.add_argument("--host", help=f"address to bind {_default('host')}")
    p.add_argument("--port", type=int, help="TCP port; 0 picks a free one (the default)")
    p.add_argument("--seed", type=int, help=f"market seed {_default('seed')}")
    p.add_argument("--markets", type=int, help=f"active markets {_default('markets')}")
    p.add_argument("--rate", type=float,
                   help=f"market frames per second in total {_default('rate_fps')}")  # fmt: skip
    p.add_argument(
        "--mix",
        action="append",
        default=[],
        metavar="ACTION=WEIGHT",
        help=f"rate share per action, of {sorted(DEFAULT_MIX)}",
    )
    p.add_argument("--index-hz", type=float,
                   help=f"cfbenchmarks / pyth ticks per second {_default('index_hz')}")  # fmt: skip
    p.add_argument("--settle-every", type=_duration, metavar="TIME",
                   help="a market settles and a new one lists this often on average "
                        f"(0: never) {_default('settle_every_s', ' s')}")  # fmt: skip
    p.add_argument(
        "--depth-min", type=int, help=f"levels per side, at least {_default('depth_min')}"
    )
    p.add_argument(
        "--depth-max", type=int, help=f"levels per side, at most {_default('depth_max')}"
    )
    p.add_argument("--one-sided", type=int, metavar="N",
                   help=f"markets with no NO side {_default('one_sided_markets')}")  # fmt: skip
    p.add_argument("--epoch-ms", type=int, help="fix the exchange clock's start (Unix ms)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--open", action="store_true", help="no auth check (tests)")
    auth.add_argument("--auth", choices=("required", "public", "open"),
                      help=f"auth mode {_default('auth')}")  # fmt: skip
    p.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY_ID=PEM_FILE",
        help="a public key; KEY_ID '*' matches any id",
    )
    p.add_argument("--freshness", type=_duration, metavar="TIME",
                   help=f"signed timestamp window {_default('freshness_s', ' s')}")  # fmt: skip
    p.add_argument(
        "--switch",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"open-question switch, of {[f.name for f in dataclasses.fields(Switches)]}",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault spec, e.g. close:1011@every=5s, gap@p=0.001, stall:3s@after=1000",
    )
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the truth (frames, faults, books) as NDJSON",
    )
    p.add_argument("--truth-books-every", type=_duration, default=None, metavar="TIME")
    p.add_argument("--buffer", type=int, metavar="FRAMES",
                   help=f"send queue per connection {_default('send_buffer_frames')}")  # fmt: skip
    p.add_argument(
        "--duration",
        type=_duration,
        default=None,
        metavar="TIME",
        help="stop after this long (e.g. 30s, 5m; plain numbers are seconds)",
    )
    cap = p.add_argument_group(
        "the replay server",
        "serve a recorded capture instead of the synthetic market (whose flags then do "
        "nothing); clients subscribe as to Kalshi and get the recorded frames of their "
        "channels and markets with fresh sids and seqs",
    )
    cap.add_argument("root", nargs="?", metavar="ROOT", help="the capture root to serve")
    cap.add_argument("--from", dest="capture", help=argparse.SUPPRESS)  # the older spelling
    cap.add_argument(
        "--speed",
        default=None,
        metavar="K|max",
        help="K times real time (default 1), or max: as fast as the clients read",
    )
    cap.add_argument(
        "--channel", action="append", metavar="CHANNEL", help="serve this channel (repeatable)"
    )
    cap.add_argument(
        "--market", action="append", metavar="TICKER", help="serve this market (repeatable)"
    )
    add_time_range(cap)
    cap.add_argument(
        "--reproduce-disconnects",
        action="store_true",
        help="close the clients where the recorder was disconnected, with the recorded codes",
    )


def _duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, eq, rest = value.partition("=")
        if not eq or not name:
            raise ConfigError(flag, f"{value!r} is not NAME=VALUE")
        out.append((name.strip(), rest.strip()))
    return out


def _switches(values: list[str]) -> Switches:
    fields = {f.name: f for f in dataclasses.fields(Switches)}
    kwargs: dict[str, Any] = {}
    for name, raw in _pairs(values, "--switch"):
        if name not in fields:
            raise ConfigError(
                "--switch", f"unknown switch {name!r}", f"use one of {sorted(fields)}"
            )
        default = getattr(Switches(), name)
        try:
            if isinstance(default, bytes):
                kwargs[name] = raw.encode()
            elif isinstance(default, bool):
                kwargs[name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int) or name == "max_markets_per_subscription":
                kwargs[name] = None if raw.lower() == "none" else int(raw)
            elif isinstance(default, float):
                kwargs[name] = float(raw)
            else:
                kwargs[name] = raw
        except ValueError:
            raise ConfigError("--switch", f"{name}={raw!r} is not a valid value") from None
    return Switches(**kwargs)


def build_config(args: argparse.Namespace) -> ServerConfig:
    """Translate parsed flags into a `ServerConfig` (raises `ConfigError`)."""
    keys: dict[str, str] = {}
    for key_id, path in _pairs(args.public_key, "--public-key"):
        try:
            keys[key_id] = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("--public-key", f"cannot read {path}: {exc.strerror}") from None
    mix = dict(DEFAULT_MIX)
    for name, raw in _pairs(args.mix, "--mix"):
        try:
            mix[name] = float(raw)
        except ValueError:
            raise ConfigError("--mix", f"{name}={raw!r} is not a number") from None
    auth: Literal["required", "public", "open"] = (
        "open" if args.open else (args.auth or ServerConfig.auth)
    )
    if auth == "required" and not keys:
        raise ConfigError(
            "--public-key",
            "auth 'required' needs a public key",
            "pass --public-key KEY_ID=PEM_FILE or --open",
        )
    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration", f"{args.duration} is not a positive number of seconds")
    if args.truth is not None and not Path(args.truth).parent.is_dir():
        raise ConfigError("--truth", f"cannot write {args.truth}: no such directory")
    given = {
        "host": args.host,
        "port": args.port,
        "seed": args.seed,
        "markets": args.markets,
        "rate_fps": args.rate,
        "index_hz": args.index_hz,
        "settle_every_s": args.settle_every,
        "depth_min": args.depth_min,
        "depth_max": args.depth_max,
        "one_sided_markets": args.one_sided,
        "epoch_ms": args.epoch_ms,
        "freshness_s": args.freshness,
        "truth_path": args.truth,
        "truth_books_every_s": args.truth_books_every,
        "send_buffer_frames": args.buffer,
    }
    return ServerConfig(
        **{name: value for name, value in given.items() if value is not None},
        mix=mix,
        auth=auth,
        public_keys=keys,
        switches=_switches(args.switch),
        faults=tuple(parse_fault(spec) for spec in args.fault),
    )


_CAPTURE_FLAGS = {
    "speed": "--speed",
    "channel": "--channel",
    "market": "--market",
    "start": "--start",
    "end": "--end",
    "reproduce_disconnects": "--reproduce-disconnects",
}
#: CaptureTape's field names -> the flags that set them.
_TAPE_FIELDS = {"root": "ROOT", "ROOT": "ROOT", "markets": "--market", "start": "--start",
                "end": "--end", "speed": "--speed"}  # fmt: skip


def _speed(text: str | None) -> float | None:
    if text is None:
        return 1.0
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError("--speed", f"{text!r} is not a positive number", "or max")
    return value


def build_tape(args: argparse.Namespace) -> CaptureTape | None:
    """The capture tape of ROOT (None without it); raises `ConfigError` or `DamagedFile`."""
    root_flag = "--from" if args.capture else "ROOT"
    args.capture = args.capture or getattr(args, "root", None)
    if args.capture is None:
        for name, flag in _CAPTURE_FLAGS.items():
            if getattr(args, name):
                raise ConfigError(flag, "applies only when serving a capture",
                                  "give a capture ROOT: serve ROOT")  # fmt: skip
        return None
    speed = _speed(args.speed)
    try:
        return CaptureTape(
            args.capture,
            channels=args.channel,
            markets=args.market,
            start=args.start,
            end=args.end,
            speed=speed,
            reproduce_disconnects=args.reproduce_disconnects,
            storage=storage_from_args(args),
        )
    except NotInCapture as exc:
        raise ConfigError("--channel", str(exc)) from None
    except ConfigError as exc:
        field = _TAPE_FIELDS.get(exc.field, exc.field)
        raise ConfigError(root_flag if field == "ROOT" else field, exc.problem, exc.fix) from None
    except StorageError:  # the object store does not answer: not a damaged file
        raise
    except (pa.ArrowException, OSError) as exc:  # a truncated or foreign capture file
        if isinstance(exc, PermissionError):
            raise storage_error(exc, f"cannot read the capture {args.capture}") from None
        raise damaged_capture(args.capture, exc) from None


def _describe(config: ServerConfig, tape: CaptureTape | None) -> str:
    if tape is None:
        source = f"{config.markets} markets, {config.rate_fps:g} frames/s"
    else:
        pace = "max" if tape.speed is None else f"{tape.speed:g}x"
        closes = "reproduced" if tape.reproduces_disconnects else "not reproduced"
        source = (
            f"capture of {len(tape.market_tickers())} markets on {', '.join(tape.channels)}, "
            f"speed {pace}, recorded disconnects {closes}"
        )
    return (
        f"kalshi-tape serve: {source}, auth {config.auth}, {len(config.faults)} fault(s); "
        "stop with Ctrl+C"
    )


async def _serve(config: ServerConfig, tape: CaptureTape | None, duration_s: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(SimServer(config, tape))
        except OSError as exc:  # unresolvable host, port in use, no permission
            where = f"{config.host}:{config.port}"
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"--port: {where} is already in use by another process",
                                "choose another port, or 0 for any free one") from None  # fmt: skip
            if exc.errno == errno.EACCES:
                fix = "use a port above 1023, or 0 for any free one"
                raise PortInUse(f"--port: may not listen on {where}: {exc.strerror}", fix) from None
            raise ConfigError("--host/--port", f"cannot listen on {where}: {exc}") from None
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        print(_describe(config, tape), file=sys.stderr)
        try:
            await asyncio.wait_for(stop.wait(), duration_s)
        except TimeoutError:
            pass


def run(args: argparse.Namespace) -> int:
    """The `serve` handler: build the config (and the tape), serve until a signal, exit 0."""
    config = build_config(args)
    tape = build_tape(args)
    asyncio.run(_serve(config, tape, args.duration))
    return 0
