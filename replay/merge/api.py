"""`merge_captures`: two hosts' captures of the same markets become one capture of two feeds.

Every record of the first capture (A) becomes feed 0 of the merged capture, every
record of the second (B) feed 1. B's `recv_ns` are moved onto A's clock by B's clock
offset, estimated from the trades both received (`replay.merge.offset`) or given.
`mono_ns` (each run's own monotonic clock), run ids, connection numbers and `idx` stay
as recorded; runs of two hosts have different run ids, and a run id found in both is
refused. The files are written in the capture layout (`replay.merge.writer`), and the
report says what each source covered and which gaps neither did
(`replay.merge.coverage`, `replay.merge.report`).

Order of work: both roots listed (and checked: not the same capture, no run in both,
one feed each), the output place taken, every footer read, the trades read and the
offset chosen, then the files written source by source, a group of files at a time
(memory: one group, at most `TARGET_ROWS` rows). Nothing appears at the target unless
all of it was written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from replay.merge.coverage import SESSION_COLUMNS, connections, shifted
from replay.merge.offset import (
    TRADE_COLUMNS,
    ClockOffset,
    TradeEvidence,
    choose_offset,
    trade_evidence,
    trade_receipts,
)
from replay.merge.report import MergeReport, SourceReport
from replay.merge.writer import (
    TARGET_ROWS,
    OutputRoot,
    SourceFile,
    as_capture_schema,
    by_date,
    encode,
    plan,
    restamp,
)
from replay.reading.layout import CaptureListing, list_capture_files, open_parquet
from schemas.channels import Channel
from schemas.errors import ConfigError, DamagedFile, storage_error
from schemas.record import JOURNAL_DIR, parse_file_name
from schemas.storage import StorageError, StorageOptions, is_remote

__all__ = ["FEEDS", "merge_captures", "offset_between"]

#: The feed each source's records get in the merged capture.
FEEDS: Final = (0, 1)
#: Fewer matched trades than this, and the report warns that the offset rests on few.
_FEW_MATCHES: Final = 10
_JOURNAL_FILES: Final = (".seg", ".open")


@dataclass(slots=True)
class _Source:
    label: str  # ROOT_A / ROOT_B, as the command line names it
    name: str  # A / B
    root: str  # as given
    listing: CaptureListing
    files: list[SourceFile]


@contextmanager
def _reading(source: _Source, path: PurePath) -> Iterator[None]:
    """A read of one file of a source: a failure becomes one line naming the file."""
    try:
        yield
    except StorageError:
        raise
    except PermissionError as exc:
        raise storage_error(exc, f"{source.label}: cannot read {path}") from None
    except (pa.ArrowException, OSError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DamagedFile(f"{source.label}: damaged capture file {path}: {detail}",
                          f"run `kalshi-tape verify {source.root}` for every damaged file "
                          "and what to do") from None  # fmt: skip


def _read(source: _Source, path: PurePath, columns: tuple[str, ...] | None = None) -> pa.Table:
    """A whole file of a source, or some of its columns."""
    with _reading(source, path):
        return open_parquet(path, source.listing.filesystem).read(
            columns=list(columns) if columns else None
        )


def _index(source: _Source) -> int:
    """Fill `source.files` from the listing and the footers; the highest feed a footer
    names (-1: none above 0 seen; files without statistics are checked as they are read)."""
    highest = -1
    for f in source.listing.files:
        name = parse_file_name(f.path.name)
        assert name is not None  # the listing keeps only files named this way
        with _reading(source, f.path):
            meta = open_parquet(f.path, source.listing.filesystem).metadata
        names = meta.schema.names
        if "feed" in names:
            column = names.index("feed")
            for rg in range(meta.num_row_groups):
                stats = meta.row_group(rg).column(column).statistics
                if stats is not None and stats.has_min_max and stats.max is not None:
                    highest = max(highest, int(stats.max))
        source.files.append(SourceFile(f.path, f.channel, f.date, name.run_id, name.lo, name.hi,
                                       name.compacted, meta.num_rows))  # fmt: skip
    return highest


def _one_feed(source: _Source, highest: int) -> None:
    if highest > 0:
        raise ConfigError(source.label, f"{source.root} holds records of feed {highest}: it is "
                          "a capture of redundant feeds already",
                          "merge takes two captures of one feed each")  # fmt: skip


def _receipts(source: _Source) -> dict[str, int]:
    receipts: dict[str, int] = {}
    for f in source.files:
        if f.channel != Channel.TRADE:
            continue
        for trade_id, recv_ns in trade_receipts(_read(source, f.path, TRADE_COLUMNS)).items():
            seen = receipts.get(trade_id)
            if seen is None or recv_ns < seen:
                receipts[trade_id] = recv_ns
    return receipts


def _session(source: _Source) -> pa.Table:
    tables = [
        _read(source, f.path, SESSION_COLUMNS).select(list(SESSION_COLUMNS)).cast(_SESSION_SCHEMA)
        for f in source.files
        if f.channel == Channel.SESSION
    ]
    return pa.concat_tables(tables) if tables else _SESSION_SCHEMA.empty_table()


_SESSION_SCHEMA: Final = pa.schema([
    ("run_id", pa.string()), ("idx", pa.int64()), ("conn", pa.int32()),
    ("recv_ns", pa.int64()), ("type", pa.string()),
])  # fmt: skip


def _journal_warning(source: _Source) -> str | None:
    """A local root whose journal still holds segments: records not in its partitions."""
    if is_remote(source.root):
        return None
    journal = Path(str(source.listing.root)) / JOURNAL_DIR
    try:
        left = [p for p in journal.iterdir() if p.name.endswith(_JOURNAL_FILES)]
    except OSError:
        return None
    if not left:
        return None
    return (f"{source.label} {source.root}: its journal holds {len(left)} segment(s) not yet "
            "published (a recorder still running, or killed and not started since): their "
            "records are not in the merge; the next `kalshi-tape record` on that root "
            "publishes them, then merge again")  # fmt: skip


def offset_between(
    root_a: str | os.PathLike[str],
    root_b: str | os.PathLike[str],
    *,
    storage: StorageOptions | None = None,
) -> TradeEvidence:
    """What the trades both captures received say about B's clock against A's."""
    roots = ((root_a, "ROOT_A", "A"), (root_b, "ROOT_B", "B"))
    sources = [_listed(root, label, name, storage) for root, label, name in roots]
    for source in sources:
        _index(source)
    return trade_evidence(_receipts(sources[0]), _receipts(sources[1]))


def _listed(root: str | os.PathLike[str], label: str, name: str,
            storage: StorageOptions | None) -> _Source:  # fmt: skip
    try:
        listing = list_capture_files(root, storage)
    except ConfigError as exc:
        if exc.field != "ROOT":
            raise
        raise ConfigError(label, exc.problem, exc.fix) from None
    text = os.fspath(root)
    if not listing.files:
        raise ConfigError(label, f"{text} holds no capture files",
                          "give the root `kalshi-tape record --root` wrote to")  # fmt: skip
    return _Source(label, name, text, listing, [])


@contextmanager
def _output(to: str | os.PathLike[str] | OutputRoot,
            storage: StorageOptions | None) -> Iterator[OutputRoot]:  # fmt: skip
    if isinstance(to, OutputRoot):
        yield to  # the caller's to commit
        return
    with OutputRoot(os.fspath(to), storage=storage) as out:
        yield out


def _check_target(to: str | os.PathLike[str] | OutputRoot, sources: list[_Source]) -> None:
    """Refuse a local target inside a source root (its files would be read as the
    source's data)."""
    text = to.uri if isinstance(to, OutputRoot) else os.fspath(to)
    if is_remote(text):
        for s in sources:
            if is_remote(s.listing.uri) and (text.rstrip("/") + "/").startswith(
                s.listing.uri.rstrip("/") + "/"
            ):
                raise ConfigError("--to", f"{text} is inside {s.label} ({s.listing.uri})",
                                  "write the merged capture elsewhere")  # fmt: skip
        return
    path = Path(text.removeprefix("file://")).expanduser().absolute()
    target = path.parent.resolve() / path.name
    for s in sources:
        if s.listing.location is None or s.listing.location.is_local:
            base = Path(str(s.listing.root))
            if target.is_relative_to(base):
                raise ConfigError("--to", f"{target} is inside {s.label} ({base})",
                                  "write the merged capture elsewhere: files under a capture "
                                  "root are read as its data")  # fmt: skip


def merge_captures(
    root_a: str | os.PathLike[str],
    root_b: str | os.PathLike[str],
    to: str | os.PathLike[str] | OutputRoot,
    *,
    offset_ns: int | None = None,
    storage: StorageOptions | None = None,
    target_rows: int = TARGET_ROWS,
) -> MergeReport:
    """Merge capture `root_a` (feed 0) and `root_b` (feed 1) into a new capture `to`.

    Args:
        root_a, root_b: the two hosts' capture roots (local or object storage).
        to: where the merged root is written: a path or URI that does not exist yet, or
            an `OutputRoot` the caller commits (to write something else with it, all or
            nothing).
        offset_ns: B's clock minus A's, when known; by default the median of
            `recv_ns_B - recv_ns_A` over the trades both received.
        storage: endpoint, region and credentials for roots on object storage.
        target_rows: most rows read at once.

    Raises:
        ConfigError: a root that is not a capture, the same capture twice, a run in
            both, a capture of several feeds already, no trade in both (and no
            `offset_ns`), or a target that exists or is inside a source.
        DamagedFile: a source file cannot be read (the message names it).
        StorageUnavailable, PermissionDenied, StorageError: a root or the target cannot
            be read or written.
    """
    t0 = time.monotonic()
    a = _listed(root_a, "ROOT_A", "A", storage)
    b = _listed(root_b, "ROOT_B", "B", storage)
    if a.listing.uri == b.listing.uri:
        raise ConfigError("ROOT_B", f"{b.root} is the same capture as ROOT_A",
                          "give the capture the other host recorded")  # fmt: skip
    runs_a = {f.run_id for f in a.listing.files}
    runs_b = {f.run_id for f in b.listing.files}
    both = sorted(runs_a & runs_b)
    if both:
        more = f" and {len(both) - 1} more" if len(both) > 1 else ""
        raise ConfigError("ROOT_B", f"run {both[0]}{more} is in both {a.root} and {b.root}: "
                          "the captures share records (a copy, or a merge of one of them)",
                          "merge the captures two hosts recorded on their own")  # fmt: skip
    _check_target(to, [a, b])
    with _output(to, storage) as out:
        for source in (a, b):
            _one_feed(source, _index(source))
        evidence = trade_evidence(_receipts(a), _receipts(b))
        offset = choose_offset(evidence, offset_ns)
        if offset is None:
            raise _no_common_trades(a, b, evidence)
        report = MergeReport(out.uri, offset, [])
        for source, feed, shift in ((a, FEEDS[0], 0), (b, FEEDS[1], -offset.offset_ns)):
            report.sources.append(_write(source, feed, shift, out, target_rows))
        report.files = len(out.files)
        report.warnings = _warnings(a, b, offset)
        report.seconds = time.monotonic() - t0
    return report


def _no_common_trades(a: _Source, b: _Source, evidence: TradeEvidence) -> ConfigError:
    if not evidence.trades_a or not evidence.trades_b:
        empty = a if not evidence.trades_a else b
        problem = (f"{empty.root} holds no trade messages, so B's clock offset cannot be "
                   "estimated")  # fmt: skip
    else:
        problem = (f"no trade of {b.root} ({evidence.trades_b:,}) is one of {a.root} "
                   f"({evidence.trades_a:,}), so B's clock offset cannot be estimated: "
                   "different markets, or times that do not overlap")  # fmt: skip
    return ConfigError("ROOT_B", problem, "give the offset with --offset-ns N (B's clock minus "
                       "A's, in ns; --offset-ns 0 if both hosts keep NTP time)")  # fmt: skip


def _write(source: _Source, feed: int, shift_ns: int, out: OutputRoot,
           target_rows: int) -> SourceReport:  # fmt: skip
    """Write every record of `source` as feed `feed`, its recv_ns moved by `shift_ns`."""
    report = SourceReport(source.name, source.root, feed, shift_ns,
                          runs=sorted({f.run_id for f in source.files}),
                          files=len(source.files))  # fmt: skip
    run_ends: dict[str, int] = {}
    for chunk in plan(source.files, target_rows):
        tables = [as_capture_schema(_read(source, f.path)) for f in chunk.files]
        table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
        if table.num_rows != chunk.rows:
            raise DamagedFile(f"{source.label}: {[str(f.path) for f in chunk.files]} hold "
                              f"{table.num_rows} rows, their footers say {chunk.rows}",
                              f"run `kalshi-tape verify {source.root}`")  # fmt: skip
        highest = pc.max(table.column("feed")).as_py()
        if highest is not None and highest > 0:
            _one_feed(source, highest)
        if table.num_rows:
            last = pc.max(table.column("recv_ns")).as_py()
            run_ends[chunk.run_id] = max(run_ends.get(chunk.run_id, last), last)
        table = restamp(table, feed=feed, shift_ns=shift_ns)
        for date, part in by_date(table):
            out.put(chunk.name(date), encode(part))
        report.records += table.num_rows
    report.connections = shifted(connections(_session(source), run_ends), shift_ns)
    return report


def _warnings(a: _Source, b: _Source, offset: ClockOffset) -> list[str]:
    out = [w for w in (_journal_warning(a), _journal_warning(b)) if w is not None]
    e = offset.evidence
    if offset.source == "trades" and e.matches < _FEW_MATCHES:
        out.append(f"the clock offset rests on {e.matches} trade(s) received by both: check it, "
                   "or give it with --offset-ns")  # fmt: skip
    if offset.source == "given" and e.median_ns is not None:
        assert e.p5_ns is not None
        assert e.p95_ns is not None
        if not e.p5_ns <= offset.offset_ns <= e.p95_ns:
            out.append(f"--offset-ns {offset.offset_ns} is outside what the {e.matches:,} "
                       f"trades received by both say (median {e.median_ns}, p5..p95 "
                       f"{e.p5_ns}..{e.p95_ns} ns)")  # fmt: skip
    return out
