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

The flags need only the light `config` and `faults` modules; the server (websockets,
cryptography), the capture reader (pyarrow) and asyncio are imported when the command
runs.

The user's text is `_DESCRIPTION` (and `FAULT_HELP`); this docstring is for readers
of the code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    check_channels,
    checked_time_range,
    damaged_capture,
    parse_speed,
    require_capture_root,
)
from replay.errors import NotInCapture
from replay.server.config import DEFAULT_MIX, ServerConfig, Switches
from replay.server.faults import parse_fault
from schemas.errors import ConfigError, PortInUse, storage_error
from schemas.storage import StorageError, add_storage_arguments, storage_from_args
from schemas.units import parse_duration_s

if TYPE_CHECKING:  # the server and the capture reader load when the command runs
    from replay.server.capture_tape import CaptureTape

__all__ = ["FAULT_HELP", "add_arguments", "build_config", "build_tape", "register", "run"]

_DESCRIPTION = """\
Run a WebSocket server that speaks the Kalshi API: a simulated exchange (synthetic
markets, with faults on demand), or, given a capture ROOT, the replay server (the
recorded frames, to clients that subscribe as they would to Kalshi). The first line
on stdout is the URL to connect to; Ctrl+C or SIGTERM stops the server (exit 0).

examples:
  kalshi-tape serve --open --sim-rate 5000 --sim-markets 50 --sim-seed 7
  kalshi-tape serve --public-key '*=key.pub.pem' --fault close:1011@every=30s
  kalshi-tape serve --open --fault gap@p=0.001 --truth truth.ndjson
  kalshi-tape serve --open examples/sample --speed 10 --market KXBTCD-26NOV21-T100000
  kalshi-tape serve --open examples/sample --speed max --reproduce-disconnects
"""

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
        description=_DESCRIPTION,
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
    p.add_argument("--sim-seed", dest="seed", type=int,
                   help=f"market seed {_default('seed')}")  # fmt: skip
    p.add_argument("--sim-markets", dest="markets", type=int, metavar="N",
                   help=f"active markets {_default('markets')}")  # fmt: skip
    p.add_argument("--sim-rate", dest="rate", type=float, metavar="FPS",
                   help=f"market frames per second in total {_default('rate_fps')}")  # fmt: skip
    # The older spellings (`--markets N` beside `--market TICKER` read as one idea).
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--markets", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
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
        help="fault spec, e.g. close:1011@every=5s, gap@p=0.001, stall:3s@after=1000, "
        "drop@every=2s,tag=b (only connections to a URL with ?tag=b)",
    )
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the truth (frames, faults, books) as NDJSON",
    )
    p.add_argument("--truth-books-every", type=_duration, default=None, metavar="TIME",
                   help="with --truth, also write every market's true book this often "
                        f"(e.g. 1s) {_default('truth_books_every_s', ' s')}")  # fmt: skip
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
    cap.add_argument("root", nargs="?", metavar="ROOT", help=ROOT_HELP + " (to serve)")
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
    if args.truth is not None:
        _check_truth(Path(args.truth))
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
    try:
        return ServerConfig(
            **{name: value for name, value in given.items() if value is not None},
            mix=mix,
            auth=auth,
            public_keys=keys,
            switches=_switches(args.switch),
            faults=tuple(parse_fault(spec) for spec in args.fault),
        )
    except ConfigError as exc:  # ServerConfig's field names -> the flags the user wrote
        flag = _CONFIG_FLAGS.get(exc.field, exc.field)
        raise ConfigError(flag, exc.problem, exc.fix) from None


#: ServerConfig's fields -> the flags that set them.
_CONFIG_FLAGS: Final = {
    "host": "--host", "port": "--port", "seed": "--sim-seed", "markets": "--sim-markets",
    "rate_fps": "--sim-rate", "mix": "--mix", "index_hz": "--index-hz",
    "settle_every_s": "--settle-every", "depth_min/depth_max": "--depth-min/--depth-max",
    "one_sided_markets": "--one-sided", "epoch_ms": "--epoch-ms", "auth": "--auth",
    "public_keys": "--public-key", "freshness_s": "--freshness", "truth_path": "--truth",
    "truth_books_every_s": "--truth-books-every", "send_buffer_frames": "--buffer",
}  # fmt: skip


def _check_truth(path: Path) -> None:
    """--truth must be a file that can be written, checked before the server listens."""
    if path.is_dir():
        raise ConfigError("--truth", f"{path} is a directory", "give a file name in it")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError("--truth", f"{parent} is a file, not a directory")
    if not parent.is_dir():
        raise ConfigError("--truth", f"cannot write {path}: no such directory", "create it first")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise storage_error(exc, f"--truth: cannot write {path}") from None
    if not existed:
        path.unlink(missing_ok=True)


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
    import pyarrow as pa

    from replay.reading.capture import Capture
    from replay.server.capture_tape import CaptureTape

    speed = parse_speed(args.speed, 1.0)
    try:
        require_capture_root(args.capture)
        capture = Capture(args.capture, storage=storage_from_args(args))
        if args.channel:
            check_channels(args.channel, capture.data_channels)
        start, end = checked_time_range((args.start, "--start"), (args.end, "--end"),
                                        capture.time_range())  # fmt: skip
        return CaptureTape(
            capture,
            channels=args.channel,
            markets=args.market,
            start=start,
            end=end,
            speed=speed,
            reproduce_disconnects=args.reproduce_disconnects,
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
    import asyncio

    from replay.server.app import SimServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:  # the truth file opens here: its error is not the port's
            sim = SimServer(config, tape)
        except OSError as exc:
            raise storage_error(exc, f"--truth: cannot write {config.truth_path}") from None
        try:
            server = await stack.enter_async_context(sim)
        except OSError as exc:  # unresolvable host, port in use, no permission
            where = f"{config.host}:{config.port}"
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"--port: {where} is already in use by another process",
                                "choose another port, or 0 for any free one") from None  # fmt: skip
            if exc.errno == errno.EACCES:
                fix = "use a port above 1023, or 0 for any free one"
                raise PortInUse(f"--port: may not listen on {where}: {exc.strerror}", fix) from None
            problem = f"cannot listen on {where}: {exc.strerror or exc}"
            fix = "give an address of this machine, or 127.0.0.1"
            raise ConfigError("--host/--port", problem, fix) from None
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        print(_describe(config, tape), file=sys.stderr)
        try:
            await asyncio.wait_for(stop.wait(), duration_s)
        except TimeoutError:
            pass


def run(args: argparse.Namespace) -> int:
    """The `serve` handler: build the config (and the tape), serve until a signal, exit 0."""
    import asyncio

    config = build_config(args)
    tape = build_tape(args)
    asyncio.run(_serve(config, tape, args.duration))
    return 0
