"""Suite-wide fixtures: `results`, the log of measured outcomes (see `tests/results.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .results import OUTCOMES, RESULTS_DIR, ResultLog


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
        OUTCOMES[item.nodeid] = result
