"""The results log that `tests/reliability/report.py` renders into the README.

Each case adds a machine-readable outcome (a dict) to a table (`fault_matrix`,
`network`, `attempt_rate`, `fault_soak`, `crash`...). At the end of the session the rows
are merged, by their `case` key, into `tests/reliability/.results/<table>.json`
(git-ignored), so running one case refreshes its row and keeps the others (a test that
ran replaces every row it wrote before). Every row also gets the pytest outcome of the
test that produced it (passed, failed, xfailed...), kept in `OUTCOMES` by the hook in
`tests/conftest.py`.
"""

from __future__ import annotations

import datetime as dt
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
        for table, rows in self.tables.items():
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
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n")
            tmp.replace(path)
