"""Fixtures of the reliability suite: the results log that `report.py` renders.

Each case adds a machine-readable outcome (a dict) to a table (`fault_matrix`,
`network`, `attempt_rate`, `fault_soak`...). At the end of the session the rows are merged,
by their `case` key, into `tests/reliability/.results/<table>.json` (git-ignored), so
running one case refreshes its row and keeps the others (a test that ran replaces
every row it wrote before). Every row also gets the pytest outcome
of the test that produced it (passed, failed, xfailed...).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RESULTS_DIR = Path(os.environ.get("KT_RELIABILITY_RESULTS", Path(__file__).parent / ".results"))

_outcomes: dict[str, str] = {}


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
                row["outcome"] = _outcomes.get(row["nodeid"], "unknown")
                merged[row["case"]] = row
            body = {"table": table, "rows": list(merged.values())}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n")
            tmp.replace(path)


@pytest.fixture(scope="session")
def results() -> Iterator[ResultLog]:
    log = ResultLog(RESULTS_DIR)
    yield log
    log.write()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        result = report.outcome
        if hasattr(report, "wasxfail"):
            result = "xfailed" if report.outcome == "skipped" else "xpassed"
        _outcomes[item.nodeid] = result
