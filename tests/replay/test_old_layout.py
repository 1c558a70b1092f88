"""Captures written with the older layout are still read by every tool of the project.

The older layout: `channel` stored as a dictionary column, no `opcode` or `feed` column, the
recorder's `journal/` and `status.json` under the root. The same standard capture is written in both
layouts (and a root mixing them, as one upgraded in the middle of a day); listing,
replay, bulk reads, SQL, verify, inspect and compaction give the same answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.storage.compaction import compact
from replay import backtest
from replay.reading.bulk import iter_frames
from replay.reading.layout import list_capture_files
from replay.reading.session import ReplaySession
from replay.sql.connection import connect
from replay.sql.summary import summarize_capture
from replay.sql.verify import verify_capture
from schemas.arrow import CAPTURE_SCHEMA
from schemas.channels import ALL_CHANNELS
from schemas.events import UnknownEvent, event_from_bytes

from .capture_factory import build_standard_capture

_LATER = ["opcode", "feed"]  # columns added since the older layout
OLD_SCHEMA = pa.schema(
    [
        pa.field("channel", pa.dictionary(pa.int32(), pa.string()), nullable=False)
        if f.name == "channel"
        else f
        for f in CAPTURE_SCHEMA
        if f.name not in _LATER
    ]
)


def to_old_layout(root: Path, files: list[Path] | None = None) -> None:
    for path in files if files is not None else sorted(root.rglob("*.parquet")):
        table = pq.read_table(path).drop_columns(_LATER).cast(OLD_SCHEMA)
        pq.write_table(table, path, compression="zstd")
    (root / "journal").mkdir(exist_ok=True)
    (root / "journal" / "LOCK").write_text("pid 4242\n")
    (root / "status.json").write_text('{"run_id": "old"}')


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    new = build_standard_capture(tmp_path / "new").root
    old = tmp_path / "old"
    shutil.copytree(new, old)
    to_old_layout(old)
    mixed = tmp_path / "mixed"
    shutil.copytree(new, mixed)
    to_old_layout(mixed, sorted(mixed.rglob("*.parquet"))[::2])
    assert pq.read_schema(next(old.rglob("*.parquet"))).field("channel").type != pa.string()
    return {"new": new, "old": old, "mixed": mixed}


async def replayed(root: Path) -> list[tuple[Any, ...]]:
    async with ReplaySession(root) as session:
        trades = await session.subscribe("trade", raw=True)
        book = await session.orderbook("KXBTCD-26NOV21-T100000")
        got = [(f.recv_ns, f.raw) async for f in trades]
        books = [(b.valid, tuple(b.yes_bids)) async for b in book]
    return [*got, *books]


async def test_every_reader_gives_the_same_answers_on_old_new_and_mixed_roots(
    roots: dict[str, Path],
) -> None:
    sql = "SELECT channel, count(*), sum(octet_length(raw)) FROM frames GROUP BY 1 ORDER BY 1"
    answers: dict[str, Any] = {}
    for name, root in roots.items():
        listing = list_capture_files(root)
        assert listing.stray == ()  # journal/ and status.json are the recorder's, not stray
        report = verify_capture(root)
        answers[name] = {
            "sql": connect(root).execute(sql).fetchall(),
            "trades": connect(root).execute("SELECT count, exchange_time FROM trades").fetchall(),
            "frames": [(f.idx, f.channel, f.raw) for f in iter_frames(root)],
            "replay": await replayed(root),
            "verify": (report.corrupt, report.problems(), sorted(report.warnings())),
            "inspect": [  # bytes on disk differ: the files are encoded anew
                {k: v for k, v in c.items() if k != "bytes_on_disk"}
                for c in summarize_capture(root).channels
            ],
        }
    assert answers["old"] == answers["new"]
    assert answers["mixed"] == answers["new"]
    assert answers["new"]["frames"] and answers["new"]["replay"]


def test_files_without_the_opcode_column_read_it_as_null(roots: dict[str, Path]) -> None:
    sql = "SELECT dir, opcode, count(*) FROM frames GROUP BY ALL ORDER BY ALL"
    new = dict(((d, o), n) for d, o, n in connect(roots["new"]).execute(sql).fetchall())
    old = dict(((d, o), n) for d, o, n in connect(roots["old"]).execute(sql).fetchall())
    assert set(new) == {("event", None), ("in", 1), ("out", 1)}  # text, as recorded
    assert set(old) == {("event", None), ("in", None), ("out", None)}  # not recorded then
    assert sum(new.values()) == sum(old.values())
    mixed = {f.opcode for f in iter_frames(roots["mixed"]) if f.dir != "event"}
    assert mixed == {1, None}


def test_files_without_the_feed_column_read_it_as_null(
    roots: dict[str, Path], tmp_path: Path
) -> None:
    # The standard capture's rows say feed 0 here, as a recorder of one feed writes them.
    fed = tmp_path / "fed"
    shutil.copytree(roots["new"], fed)
    for path in sorted(fed.rglob("*.parquet")):
        table = pq.read_table(path)
        feed = pa.array([0] * table.num_rows, pa.int8())
        table = table.set_column(table.schema.get_field_index("feed"), "feed", feed)
        pq.write_table(table, path, compression="zstd")
    to_old_layout(fed, sorted(fed.rglob("*.parquet"))[::2])  # half the files lack `feed`
    files = sorted(fed.rglob("*.parquet"))
    assert {"feed" in pq.read_schema(p).names for p in files} == {True, False}
    ((records,),) = connect(roots["new"]).execute("SELECT count(*) FROM frames").fetchall()
    sql = "SELECT feed, count(*) FROM frames GROUP BY ALL ORDER BY ALL"
    (old_rows,) = connect(roots["old"]).execute(sql).fetchall()
    assert old_rows == (None, records)
    got = dict(connect(fed).execute(sql).fetchall())
    assert set(got) == {0, None} and sum(got.values()) == records
    assert {f.feed for f in iter_frames(fed, channels=ALL_CHANNELS)} == {0, None}
    assert {f.feed for f in iter_frames(roots["old"], channels=ALL_CHANNELS)} == {None}
    session = "SELECT DISTINCT feed FROM {} ORDER BY ALL"
    for view in ("events", "connections"):
        assert connect(roots["old"]).execute(session.format(view)).fetchall() == [(None,)]
    # Null and 0 are the same feed: a capture of one feed is summarised as one.
    assert summarize_capture(fed).feeds == verify_capture(fed).feeds == [0]


def test_compaction_merges_old_and_new_files_into_todays_schema(roots: dict[str, Path]) -> None:
    mixed = roots["mixed"]
    before = sorted(f.idx for f in iter_frames(mixed, channels=["trade"]))
    for partition in sorted({p.parent.relative_to(mixed) for p in mixed.rglob("*.parquet")}):
        compact(mixed, str(partition), min_age_s=0, delete_grace_s=0)
    files = sorted(mixed.rglob("*.parquet"))
    assert all(pq.read_schema(p) == CAPTURE_SCHEMA for p in files)
    assert sorted(f.idx for f in iter_frames(mixed, channels=["trade"])) == before
    assert not verify_capture(mixed).corrupt


def test_a_backtest_runs_over_an_old_layout_root(roots: dict[str, Path]) -> None:
    async def trades(session: Any, shard: Any) -> int:
        return len([f async for f in await session.subscribe("trade", raw=True)])

    old = backtest.run(trades, roots["old"], workers=0)
    new = backtest.run(trades, roots["new"], workers=0)
    assert old.ok and old.value == new.value and sum(old.value) > 0


def to_older_events(root: Path) -> None:
    """Rewrite the `_session` events as an earlier recorder wrote them: without the fields
    added since (a close's `will_reconnect` and `initiator`, an open's `standby`), and
    with the reconnect wait under a name this version does not know."""
    for path in sorted(root.glob("channel=_session/*/*.parquet")):
        table = pq.read_table(path)
        raws, types = [], []
        for raw, type_ in zip(
            table.column("raw").to_pylist(), table.column("type").to_pylist(), strict=True
        ):
            detail = json.loads(raw)
            for key in ("will_reconnect", "initiator", "standby"):
                detail.pop(key, None)
            if type_ == "reconnect_wait":
                detail["type"] = type_ = "reconnect_pause"
            raws.append(json.dumps(detail).encode())
            types.append(type_)
        table = table.set_column(table.schema.get_field_index("raw"), "raw", pa.array(raws))
        table = table.set_column(table.schema.get_field_index("type"), "type", pa.array(types))
        pq.write_table(table.cast(CAPTURE_SCHEMA), path, compression="zstd")


async def test_events_an_earlier_recorder_wrote_replay_and_query_the_same(
    roots: dict[str, Path], tmp_path: Path
) -> None:
    older = tmp_path / "older-events"
    shutil.copytree(roots["new"], older)
    to_older_events(older)
    sql = (  # two runs each have a conn 1: order by both
        "SELECT run_id, conn, close_code, disconnect_reason, url, standby FROM connections "
        "ORDER BY run_id, conn"
    )
    events = [event_from_bytes(f.raw) for f in iter_frames(older, channels=["_session"])]
    assert [e for e in events if isinstance(e, UnknownEvent)]  # the renamed wait
    assert await replayed(older) == await replayed(roots["new"])
    assert connect(older).execute(sql).fetchall() == connect(roots["new"]).execute(sql).fetchall()
    assert verify_capture(older).problems() == verify_capture(roots["new"]).problems()
