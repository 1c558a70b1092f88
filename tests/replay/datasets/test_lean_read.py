"""The replay read path leaves pandas alone (docs/performance.md section 4.19).

pyarrow imports pandas, where it is installed, the first time it converts a Python
object; the read path compares and shifts columns through numpy views instead, so a
`ReplaySession` in a user's own process (pandas importable) never pays for it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

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
