"""What the capture-reading subcommands share: output files, time flags, damage, the root.

This module owns the rules every reading command applies the same way (the
vocabulary is docs/cli.md section 1; the exit statuses docs/operations.md section 6):

* an output file is never inside the capture root (it would be read back as
  capture data), never a directory, never replaces an existing file without
  `--force`, and is written under a temporary name and renamed when complete, so
  a command that fails or is interrupted leaves no half-written file
  (`checked_output_path`, `open_output`); a place that cannot be written is
  `StorageUnavailable` (exit 4) or `PermissionDenied` (exit 6) before any work;
* the time range is `--start` / `--end` (ISO-8601, UTC if naive) everywhere;
  `replay` still takes its older `--from` / `--to`, unlisted; an inverted range, or
  one outside the capture, is refused naming the flag (`checked_time_range`);
* `--speed K|max` reads the same in `replay` and `serve` (`parse_speed`);
* a channel asked for must be one a consumer subscribes to, and in the capture
  (`check_channels`);
* Ctrl+C or SIGTERM stops work that runs outside the interpreter (a DuckDB query)
  at once, through its own interrupt (`interrupt_on_signal`);
* a capture file that cannot be read stops the command with one line naming the
  file and pointing to `kalshi-tape verify` (`schemas.errors.DamagedFile`, exit 5),
  never a traceback;
* markets asked for must be in the capture (the message lists what it holds);
* every command refuses a ROOT that is not a capture root (missing, a file, an
  empty directory) with the same words, and says where the root is when it is
  given a partition directory (`require_capture_root`).

Building a parser (`ROOT_HELP`, `add_time_range`) loads no I/O library: the
capture's layout (pyarrow) and DuckDB load when a command runs, so that
`kalshi-tape --help` and a usage error stay fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

from replay.reading.atomic import atomic_file
from schemas.channels import WIRE_CHANNELS
from schemas.errors import ConfigError, DamagedFile, storage_error
from schemas.storage import is_remote

__all__ = [
    "ROOT_HELP",
    "SignalWatch",
    "add_time_range",
    "check_channels",
    "checked_output_path",
    "checked_time_range",
    "damaged_capture",
    "interrupt_on_signal",
    "open_output",
    "parse_speed",
    "require_capture_root",
    "time_range",
    "unknown_markets",
]

#: The help of every command's ROOT argument: one wording (docs/cli.md section 1).
ROOT_HELP: Final = "capture root: a directory or s3://bucket/prefix"
_PARTITION_DIR: Final = re.compile(r"^(channel|date)=")
_LISTED: Final = 12  # names listed in a message before "and N more"
_TIME_FIX: Final = "use ISO-8601, like 2026-11-21T08:00:00Z"


def add_time_range(parser: argparse.ArgumentParser, *, legacy: bool = False) -> None:
    """`--start TIME` and `--end TIME` (with `legacy`, also the unlisted `--from` / `--to`)."""
    parser.add_argument("--start", metavar="TIME",
                        help="from this time (ISO-8601, UTC if naive; default: the capture's "
                             "start)")  # fmt: skip
    parser.add_argument("--end", metavar="TIME",
                        help="until this time, exclusive (default: the capture's end)")  # fmt: skip
    if legacy:
        parser.add_argument("--from", dest="legacy_start", help=argparse.SUPPRESS)
        parser.add_argument("--to", dest="legacy_end", help=argparse.SUPPRESS)


def time_range(args: argparse.Namespace) -> tuple[tuple[str | None, str], tuple[str | None, str]]:
    """((start, the flag it came by), (end, its flag)), whichever spelling was used."""
    start, end = args.start, args.end
    start_flag, end_flag = "--start", "--end"
    if start is None and getattr(args, "legacy_start", None) is not None:
        start, start_flag = args.legacy_start, "--from"
    if end is None and getattr(args, "legacy_end", None) is not None:
        end, end_flag = args.legacy_end, "--to"
    return (start, start_flag), (end, end_flag)


def checked_output_path(
    output: str | None, root: Path | None, *, force: bool, flag: str = "--output"
) -> Path | None:
    """The absolute path to write results to, once it is known to be a safe place.

    `root` is the resolved local capture root, or None for a root on object storage
    (a local file cannot be inside it). The directory is tried with a temporary file
    of its own, so that a place that cannot be written fails before any work.

    Raises:
        ConfigError: inside the capture root, in a missing directory, a directory
            itself, or an existing file without `force`.
        StorageUnavailable, PermissionDenied: the directory cannot be written.
    """
    if output is None:
        return None
    out = Path(output).expanduser().absolute()
    if output.endswith(("/", os.sep)) or out.is_dir():
        raise ConfigError(flag, f"{output} is a directory", "give a file name in it")
    parent = out.parent.resolve()
    target = parent / out.name
    if root is not None and target.is_relative_to(root):
        raise ConfigError(
            flag,
            f"{out} is inside the capture root",
            "write results elsewhere; files under the root would be read as capture data",
        )
    if parent.exists() and not parent.is_dir():
        raise ConfigError(flag, f"{parent} is a file, not a directory", "give a path in one")
    if not parent.is_dir():
        raise ConfigError(flag, f"directory {parent} does not exist", "create it first")
    if target.exists() and not force:
        raise ConfigError(flag, f"{target} already exists", "add --force to replace it")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise storage_error(exc, f"{flag}: cannot write in {parent}") from None
    os.close(fd)
    os.unlink(probe)
    return target


@contextmanager
def open_output(path: Path, flag: str = "--output") -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` only when the block completes.

    It is written under a temporary name in the same directory and renamed at the
    end: a failure or an interrupt (Ctrl+C, SIGTERM) leaves no file, and never a
    half-written one.

    Raises:
        StorageUnavailable, PermissionDenied: the file cannot be written (a read-only
            or full filesystem, a refused permission), naming `flag` and the path.
    """
    try:
        with atomic_file(path) as handle:
            yield handle
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise storage_error(exc, f"{flag}: cannot write {path}") from None


def _when(text: str, flag: str) -> int:
    from replay.reading.session import to_ns

    try:
        value = to_ns(text, flag)
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a time", _TIME_FIX) from None
    assert value is not None
    return value


def _iso_ns(ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(ns // 1000 / 1e6, tz=dt.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def checked_time_range(
    start: tuple[str | None, str],
    end: tuple[str | None, str],
    span: tuple[int, int] | None,
) -> tuple[int | None, int | None]:
    """(start_ns, end_ns) of `--start` / `--end`, refused when they select nothing.

    `start` and `end` are (the text given or None, the flag it came by); `span` is the
    capture's (first, last) recv_ns, or None when not known.

    Raises:
        ConfigError: a value that is not a time, an end not after the start, or a
            range that misses the capture (the message gives the capture's range).
    """
    (start_text, start_flag), (end_text, end_flag) = start, end
    lo = None if start_text is None else _when(start_text, start_flag)
    hi = None if end_text is None else _when(end_text, end_flag)
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(end_flag, f"{end_text} is not after {start_flag} {start_text}",
                          f"give an {end_flag} later than {start_flag}")  # fmt: skip
    if span is None:
        return lo, hi
    first, last = span
    held = f"the capture runs from {_iso_ns(first)} to {_iso_ns(last)}"
    if lo is not None and lo > last:
        raise ConfigError(start_flag, f"{start_text} is after the capture's end ({held})",
                          f"give an earlier {start_flag}")  # fmt: skip
    if hi is not None and hi <= first:
        raise ConfigError(end_flag, f"{end_text} is before the capture's start ({held})",
                          f"give a later {end_flag}")  # fmt: skip
    return lo, hi


def parse_speed(text: str | None, default: float | None, flag: str = "--speed") -> float | None:
    """`--speed K|max`: K times real time (a positive, finite number), or None for max
    (as fast as the reader takes it); `default` when not given.

    Raises:
        ConfigError: anything else.
    """
    if text is None:
        return default
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ConfigError(flag, f"{text!r} is not a positive number",
                          "give K times real time, like 1 or 10, or max")  # fmt: skip
    return value


def check_channels(channels: Iterable[str], held: Iterable[str], flag: str = "--channel") -> None:
    """Refuse a channel a consumer cannot subscribe to, or that the capture lacks.

    Raises:
        ConfigError: an unknown name (with the nearest one), a recorder's own channel
            (`_session`, `_control`: read them with `query`), or a channel with no data
            in the capture (listing those it holds).
    """
    held_list = sorted(set(held))
    for channel in channels:
        if channel.startswith("_"):
            raise ConfigError(flag, f"{channel} is the recorder's own record, not a channel "
                              "a consumer subscribes to",
                              'read it with `kalshi-tape query ROOT "SELECT * FROM connections"`, '
                              "or the control and gaps views")  # fmt: skip
        if channel not in WIRE_CHANNELS:
            near = difflib.get_close_matches(channel, WIRE_CHANNELS, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            holds = ", ".join(held_list) or "none"
            raise ConfigError(flag, f"unknown channel {channel!r}",
                              f"{hint}the capture holds {holds}")  # fmt: skip
        if channel not in held_list:
            raise ConfigError(flag, f"the capture holds no {channel} data",
                              f"it holds {', '.join(held_list) or 'none'}")  # fmt: skip


class SignalWatch:
    """Which signal (SIGINT, SIGTERM) arrived while `interrupt_on_signal` watched."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._arrived = threading.Event()

    def _saw(self, signum: int) -> None:
        self.signum = signum
        self._arrived.set()

    def reraise_if_interrupted(self, wait_s: float = 0.5) -> None:
        """If a signal stopped the work, deliver it again so that its handler raises
        (KeyboardInterrupt for Ctrl+C; the entry point turns SIGTERM into the same,
        remembering which it was); else return.

        Call it where the interrupted work raised its own error ("Query interrupted"):
        the signal's byte was written before that error, and the watcher thread may
        need a moment to be scheduled and read it.
        """
        if not self._arrived.wait(wait_s) or self.signum is None:
            return
        signal.raise_signal(self.signum)  # its Python handler raises here
        raise KeyboardInterrupt  # a handler that did not raise (SIG_IGN...)


@contextmanager
def interrupt_on_signal(cancel: Callable[[], None]) -> Iterator[SignalWatch]:
    """While the block runs, SIGINT or SIGTERM call `cancel` at once, from a thread.

    A Python signal handler runs only when the main thread gets back to the
    interpreter; a DuckDB query runs in C for as long as it takes. The signal's wakeup
    byte reaches a watcher thread immediately, which calls `cancel` (the query's
    `interrupt()`); the handler itself still raises in the main thread afterwards.
    Outside the main thread this does nothing.
    """
    watch = SignalWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    reader, writer = socket.socketpair()
    reader.setblocking(True)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    done = threading.Event()

    def watcher() -> None:
        while not done.is_set():
            try:
                data = reader.recv(16)
            except OSError:
                return
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM):
                    cancel()
                    watch._saw(signum)
            if not data:
                return

    thread = threading.Thread(target=watcher, name="kalshi-tape-interrupt", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        done.set()
        signal.set_wakeup_fd(previous)
        writer.close()  # the watcher's recv returns b""
        thread.join(1.0)
        reader.close()


def damaged_capture(root: str | Path, exc: BaseException | str) -> DamagedFile:
    """The error for a read that failed on a damaged file: which file, and what to run.

    The files whose footer does not read are named; a file damaged further in (its
    footer intact) is left for `verify`, which decodes every page, to find. On object
    storage no footer is fetched here: `verify` reads them all."""
    from replay.reading.layout import list_capture_files, resolve_root
    from replay.sql.verify import footer_problem  # DuckDB: only when a read failed

    text = str(exc)
    detail = text.splitlines()[0] if text else type(exc).__name__
    fix = f"run `kalshi-tape verify {root}` for every damaged file and what to do"
    if is_remote(root):
        return DamagedFile(f"a capture file under {root} cannot be read: {detail}", fix)
    base = resolve_root(root)
    bad = [f.path for f in list_capture_files(base).files if footer_problem(f.path)]
    if not bad:
        return DamagedFile(f"a capture file under {base} cannot be read: {detail}", fix)
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return DamagedFile(f"damaged capture file {bad[0]}{more}: {detail}", fix)


def unknown_markets(wanted: Iterable[str], held: Iterable[str], where: str) -> str | None:
    """None if every wanted market is held; else a message listing what the capture holds."""
    held_set = set(held)
    missing = sorted(set(wanted) - held_set)
    if not missing:
        return None
    shown = sorted(held_set)[:_LISTED]
    rest = f" and {len(held_set) - len(shown)} more" if len(held_set) > len(shown) else ""
    if not shown:
        return f"the capture holds no data for {', '.join(missing)} on {where} (it holds none)"
    holds = f"{len(held_set)} markets: " + ", ".join(shown) + rest
    return f"the capture holds no data for {', '.join(missing)} on {where} (it holds {holds})"


def require_capture_root(root: str | Path) -> Path | None:
    """The resolved root, if it holds capture partitions (None: a root on object
    storage, which the reader checks when it lists it).

    Raises:
        ConfigError: a missing path or a file, a partition directory (naming the root
            to give instead), or a directory with no capture partitions in it.
    """
    from replay.reading.layout import list_capture_files, resolve_root  # pyarrow

    if is_remote(root):
        return None
    given = Path(root).expanduser()
    if given.exists() and not given.is_dir():
        raise ConfigError("ROOT", f"capture root {str(root)!r} is a file, not a directory",
                          "give the directory `kalshi-tape record --root` wrote to")  # fmt: skip
    base = resolve_root(root)
    if _PARTITION_DIR.match(base.name):
        top = base
        while _PARTITION_DIR.match(top.name):
            top = top.parent
        raise ConfigError("ROOT", f"{root} is a partition directory of a capture, not its root",
                          f"give the capture root: {top}")  # fmt: skip
    try:
        listing = list_capture_files(base)
        partitions = any(_PARTITION_DIR.match(p.name) for p in base.iterdir())
    except PermissionError as exc:
        raise storage_error(exc, f"ROOT: cannot read the capture {root}") from None
    if not listing.files and not partitions:
        raise ConfigError("ROOT", f"{root} is not a capture root: it holds no "
                          "channel=<channel>/date=<date>/ partitions",
                          "give the directory `kalshi-tape record --root` wrote to")  # fmt: skip
    return base
