"""`kalshi-tape merge ROOT_A ROOT_B --to ROOT`: two hosts' captures become one of two feeds.

This module parses the flags, checks every place before any work (the roots, the
target, the report file: docs/cli.md sections 2 and 4), and prints the report; the work
is `replay.merge.api.merge_captures`, imported when the command runs. The merged root and
the `--report` file are written together: both appear, or neither (an error, Ctrl+C or
SIGTERM leave nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from replay.cli_common import ROOT_HELP, checked_output_path, open_output, require_capture_root
from schemas.errors import ConfigError, storage_error
from schemas.storage import add_storage_arguments, is_remote, storage_from_args

if TYPE_CHECKING:  # the merge (pyarrow) loads when the command runs, not at start-up
    from replay.merge.report import MergeReport

__all__ = ["register"]

_DESCRIPTION = """\
Merge the captures two hosts recorded of the same markets into one capture of two
feeds: every record of ROOT_A becomes feed 0, every record of ROOT_B feed 1. The hosts'
clocks differ: B's clock offset is the median, over the trades both received (by
trade_id), of B's receive time minus A's, and B's receive times are moved onto A's
clock by it (--offset-ns sets it instead). Run ids, connection numbers, idx and the
monotonic clocks stay as recorded.

The report (stdout, or --report FILE) gives the offset and its evidence (trades
matched, the spread of the differences), each capture's connections and the time they
covered, the time the merged capture covers and the gaps neither covered.

examples:
  kalshi-tape merge /data/host-a /data/host-b --to /data/merged
  kalshi-tape merge host-a host-b --to merged --report merge.json --format json
  kalshi-tape merge s3://bucket/a s3://bucket/b --to s3://bucket/merged --offset-ns 0
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("merge", help="merge two hosts' captures into one of two feeds",
                       description=_DESCRIPTION, allow_abbrev=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("root_a", metavar="ROOT_A", help=f"the first host's {ROOT_HELP} (feed 0)")
    p.add_argument("root_b", metavar="ROOT_B", help="the second host's capture root (feed 1)")
    p.add_argument("--to", required=True, metavar="ROOT",
                   help="the merged capture root to write: a directory or s3://bucket/prefix "
                        "that does not exist yet")  # fmt: skip
    p.add_argument("--offset-ns", type=int, default=None, metavar="N",
                   help="B's clock minus A's in ns (default: estimated from the trades both "
                        "received)")  # fmt: skip
    p.add_argument("--report", metavar="FILE", help="write the report to FILE, not stdout")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="the report as text (default) or one JSON document")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing --report file")
    add_storage_arguments(p)
    p.set_defaults(handler=_merge)


def _root(root: str, label: str) -> Path | None:
    """`require_capture_root`, its messages naming ROOT_A or ROOT_B."""
    try:
        return require_capture_root(root)
    except ConfigError as exc:
        if exc.field != "ROOT":
            raise
        raise ConfigError(label, exc.problem, exc.fix) from None


def _checked_target(to: str, roots: dict[str, Path | None]) -> None:
    """A local --to: not there yet, in a directory that exists and may be written, and
    not inside a source root. (On object storage: checked when it is reached.)"""
    if is_remote(to):
        return
    path = Path(to.removeprefix("file://")).expanduser().absolute()
    if path.exists() or path.is_symlink():
        raise ConfigError("--to", f"{to} already exists",
                          "the merge writes a new capture root: give a path that does not "
                          "exist yet")  # fmt: skip
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError("--to", f"{parent} is a file, not a directory", "give a path in one")
    if not parent.is_dir():
        raise ConfigError("--to", f"directory {parent} does not exist", "create it first")
    target = parent.resolve() / path.name
    for label, base in roots.items():
        if base is not None and target.is_relative_to(base):
            raise ConfigError("--to", f"{target} is inside {label} ({base})",
                              "write the merged capture elsewhere: files under a capture root "
                              "are read as its data")  # fmt: skip
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise storage_error(exc, f"--to: cannot write in {target.parent}") from None
    os.close(fd)
    os.unlink(probe)


def _merge(args: argparse.Namespace) -> int:
    from replay.merge.api import merge_captures
    from replay.merge.writer import OutputRoot

    local_a = _root(args.root_a, "ROOT_A")
    local_b = _root(args.root_b, "ROOT_B")
    same = (local_a == local_b) if local_a is not None and local_b is not None else (
        args.root_a.rstrip("/") == args.root_b.rstrip("/")
    )  # fmt: skip
    if same:
        raise ConfigError("ROOT_B", f"{args.root_b} is the same capture as ROOT_A",
                          "give the capture the other host recorded")  # fmt: skip
    _checked_target(args.to, {"ROOT_A": local_a, "ROOT_B": local_b})
    report_path = checked_output_path(args.report, local_a, force=args.force, flag="--report")
    if report_path is not None and local_b is not None and report_path.is_relative_to(local_b):
        raise ConfigError("--report", f"{report_path} is inside the capture root ROOT_B",
                          "write results elsewhere; files under the root would be read as "
                          "capture data")  # fmt: skip
    storage = storage_from_args(args)
    with OutputRoot(args.to, storage=storage) as out:
        report = merge_captures(args.root_a, args.root_b, out, offset_ns=args.offset_ns,
                                storage=storage)  # fmt: skip
        text = _render(report, args.format)
        if report_path is not None:  # written before the root appears: both, or neither
            with open_output(report_path, "--report") as handle:
                handle.write(text.encode())
    print(_summary(report), file=sys.stderr)
    if report_path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _render(report: MergeReport, fmt: str) -> str:
    from replay.merge.report import render_text

    if fmt == "json":
        return json.dumps(report.to_json(), indent=2) + "\n"
    return render_text(report)


def _summary(report: MergeReport) -> str:
    a, b = report.sources
    holes = report.gaps
    gap_s = sum(end - start for start, end in holes) / 1e9
    return (
        f"merge: {a.records:,} records of ROOT_A as feed 0 and {b.records:,} of ROOT_B as "
        f"feed 1 (recv_ns {b.shift_ns / 1e6:+.3f} ms) in {report.to}; {len(holes)} gap(s) "
        f"covered by neither ({gap_s:.3f} s) ({report.seconds:.1f} s)"
    )
