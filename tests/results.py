"""The results log that `tests/reliability/report.py` renders into the README.

Each case adds a machine-readable outcome (a dict) to a table (`fault_matrix`,
`network`, `attempt_rate`, `fault_soak`, `crash`...). At the end of the session the rows
are merged, by their `case` key, into `tests/reliability/.results/<table>.json`
(git-ignored), so running one case refreshes its row and keeps the others (a test that
ran replaces every row it wrote before). Every row also gets the pytest outcome of the
test that produced it (passed, failed, xfailed...), kept in `OUTCOMES` by the hook in
`tests/conftest.py`.

Under pytest-xdist every worker process keeps a log of its own and writes it when its
session ends, most likely at the same moment as the other workers: the read, merge and
write of a table happen under an exclusive lock on `.lock` in the directory, so each
worker merges into what the one before it wrote and no row is lost.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest

RESULTS_DIR = Path(
    os.environ.get("KT_RELIABILITY_RESULTS", Path(__file__).parent / "reliability" / ".results")
)

OUTCOMES: dict[str, str] = {}


class ResultLog:
    """Rows per table, written when the session ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def add(self, table: str, row: dict[str, Any], request: pytest.FixtureRequest) -> None:
        row = {**row, "nodeid": request.node.nodeid, "at": dt.datetime.now(dt.UTC).isoformat()}
        self.tables.setdefault(table, []).append(row)

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            for table, rows in self.tables.items():
                self._merge(table, rows)

    def _merge(self, table: str, rows: list[dict[str, Any]]) -> None:
        path = self.directory / f"{table}.json"
        merged: dict[str, dict[str, Any]] = {}
        rerun = {row["nodeid"] for row in rows}  # their old rows go, renamed cases too
        if path.exists():
            try:
                old = json.loads(path.read_text())["rows"]
                merged = {r["case"]: r for r in old if r.get("nodeid") not in rerun}
            except (ValueError, KeyError, TypeError):
                merged = {}
        for row in rows:
            row["outcome"] = OUTCOMES.get(row["nodeid"], "unknown")
            merged[row["case"]] = row
        body = {"table": table, "rows": list(merged.values())}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
