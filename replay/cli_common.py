"""What the capture-reading subcommands share: output files, time flags, damage, the root.

This module owns the rules every reading command applies the same way:

* an output file is never inside the capture root (it would be read back as
  capture data) and never replaces an existing file without `--force`;
* the time range is `--start` / `--end` (ISO-8601, UTC if naive) everywhere;
  `replay` still takes its older `--from` / `--to`, unlisted;
* a capture file that cannot be read stops the command with one line naming the
  file and pointing to `kalshi-tape verify` (`schemas.errors.DamagedFile`, exit 5),
  never a traceback;
* markets asked for must be in the capture (the message lists what it holds);
* `verify` refuses a directory that is not a capture root, and says where the
  root is when it is given a partition directory.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from replay.reading.layout import list_capture_files, resolve_root
from schemas.errors import ConfigError, DamagedFile
from schemas.storage import is_remote

__all__ = [
    "add_time_range",
    "checked_output_path",
    "damaged_capture",
    "require_capture_root",
    "time_range",
    "unknown_markets",
]

_PARTITION_DIR: Final = re.compile(r"^(channel|date)=")
_LISTED: Final = 12  # names listed in a message before "and N more"


def add_time_range(parser: argparse.ArgumentParser, *, legacy: bool = False) -> None:
    """`--start TIME` and `--end TIME` (with `legacy`, also the unlisted `--from` / `--to`)."""
    parser.add_argument("--start", metavar="TIME", help="from this time (ISO-8601, UTC if naive)")
    parser.add_argument("--end", metavar="TIME", help="until this time (exclusive)")
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
    (a local file cannot be inside it).

    Raises:
        ConfigError: inside the capture root, in a missing directory, or an existing
            file without `force`.
    """
    if output is None:
        return None
    out = Path(output).expanduser().absolute()
    parent = out.parent.resolve()
    target = parent / out.name
    if root is not None and target.is_relative_to(root):
        raise ConfigError(
            flag,
            f"{out} is inside the capture root",
            "write results elsewhere; files under the root would be read as capture data",
        )
    if not parent.is_dir():
        raise ConfigError(flag, f"directory {parent} does not exist")
    if target.exists() and not force:
        raise ConfigError(flag, f"{target} already exists", "add --force to replace it")
    return target


def damaged_capture(root: str | Path, exc: BaseException | str) -> DamagedFile:
    """The error for a read that failed on a damaged file: which file, and what to run.

    The files whose footer does not read are named; a file damaged further in (its
    footer intact) is left for `verify`, which decodes every page, to find. On object
    storage no footer is fetched here: `verify` reads them all."""
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
    holds = f"{len(held_set)} markets: " + ", ".join(shown) + rest if shown else "no market"
    return f"the capture holds no data for {', '.join(missing)} on {where}; it holds {holds}"


def require_capture_root(root: str | Path) -> Path | None:
    """The resolved root, if it holds capture partitions (None: a root on object
    storage, which the reader checks when it lists it).

    Raises:
        ConfigError: a partition directory (naming the root to give instead), or a
            directory with no capture partitions in it.
    """
    if is_remote(root):
        return None
    base = resolve_root(root)
    if _PARTITION_DIR.match(base.name):
        top = base
        while _PARTITION_DIR.match(top.name):
            top = top.parent
        raise ConfigError("ROOT", f"{root} is a partition directory of a capture, not its root",
                          f"give the capture root: {top}")  # fmt: skip
    listing = list_capture_files(base)
    if not listing.files and not any(_PARTITION_DIR.match(p.name) for p in base.iterdir()):
        raise ConfigError("ROOT", f"{root} is not a capture root: it holds no "
                          "channel=<channel>/date=<date>/ partitions",
                          "give the directory `kalshi-tape record --root` wrote to")  # fmt: skip
    return base
