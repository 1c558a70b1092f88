"""The read path and the derive leave pandas alone (docs/performance.md section 4.19).

pyarrow imports pandas, where it is installed, the first time it converts a Python
object; the read path compares and shifts columns through numpy views instead, so a
`ReplaySession` in a user's own process (pandas importable) never pays for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from replay.datasets.sinks import NS_DAY
from tests.replay.datasets.captures import build_rules_capture
from tests.replay.multiday import build_multiday_capture
from tests.replay.report.feeds_capture import build_feeds_capture
from tests.replay.two_feeds import record_two_feeds

pytest.importorskip("pandas")

_SCRIPT = """
import asyncio, sys
from replay import ReplaySession, iter_batches

async def main(**where):
    async with ReplaySession("examples/sample", **where) as session:
        book = await session.orderbook("KXNBAGAME-26MAR19-B1825")
        return sum([1 async for _ in book])

counts = [asyncio.run(main()), asyncio.run(main(start="2026-11-21T09:31:00Z")),
          asyncio.run(main(markets=["KXNBAGAME-26MAR19-B1825"]))]
rows = sum(b.num_rows for b in iter_batches("examples/sample", start="2026-11-21T09:31:00Z"))
print(*counts, rows, "pandas" in sys.modules)
"""


def test_a_replay_never_imports_pandas() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    # the same books and rows as before the read path changed (measured then); a replay
    # of one market sees every update of its book (it saw 20 while a market filter
    # dropped the other markets' seqs and so made false gaps)
    assert done.stdout.split() == ["1241", "752", "1241", "10067", "False"]


_DERIVE = """
import asyncio, sys, tempfile
from replay import ReplaySession
from replay.datasets.api import compute, derive

ALL = "quotes,trades,bars:1s,bars:1m,depth:3@1s,book_changes"
rows = []
for root in sys.argv[1:]:
    report = derive(root, to=tempfile.mkdtemp(), datasets=ALL)  # a day shard each, seeks
    rows.append(sum(report.rows.values()))
    rows.append(compute(root, "quotes").num_rows)

async def seek(root, start):  # into the second day: its books from a checkpoint
    async with ReplaySession(root, start=start) as session:
        return sum([1 async for _ in await session.subscribe("trade")])

rows.append(asyncio.run(seek(sys.argv[1], START)))
print(min(rows) > 0, "pandas" in sys.modules)
"""


def test_a_derive_and_a_seek_never_import_pandas(tmp_path: Path) -> None:
    """Every dataset derived (each day a shard seeking from its checkpoint; a capture of
    every book rule, with trades through the engine's path; two redundant feeds) and a
    replay seeking from a checkpoint: pandas stays out (it came with the first batch of a
    derive: 30 MiB on a 10M-frame day)."""
    days = build_multiday_capture(tmp_path / "days", days=2)
    build_rules_capture(tmp_path / "rules")
    build_feeds_capture(tmp_path / "feeds")
    start = (days.start_ns // NS_DAY + 1) * NS_DAY + 3600 * 10**9
    script = _DERIVE.replace("START", str(start))
    done = subprocess.run([sys.executable, "-c", script, *(str(tmp_path / n) for n in
                           ("days", "rules", "feeds"))], capture_output=True, text=True,
                          check=True, timeout=300)  # fmt: skip
    assert done.stdout.split() == ["True", "False"]


_RESTORE = """
import sys
from replay.reading.capture import Capture
from replay.reading.session import restore_checkpoint
from stream.engine import Engine

capture = Capture(sys.argv[1])
(run,) = capture.runs
resume = restore_checkpoint(capture, Engine(), run, 1, int(sys.argv[2]), 0)
print(sorted(resume), "pandas" in sys.modules)
"""


def test_a_seek_reads_a_checkpoints_feed_without_pandas(tmp_path: Path) -> None:
    """The seek reads the checkpoints' `feed` column (each feed restores its own) without
    bringing pandas in (a `to_numpy` of it imported pandas)."""
    two = record_two_feeds(tmp_path)
    checkpoint = pq.read_table(two.root / "channel=_checkpoint", columns=["recv_ns", "feed"])
    assert checkpoint.column("feed").to_pylist() == [1]  # the column is read, not skipped
    after = checkpoint.column("recv_ns")[0].as_py() + 10**9
    done = subprocess.run([sys.executable, "-c", _RESTORE, str(two.root), str(after)],
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["[1]", "False"]  # feed 1's checkpoint restored, no pandas
