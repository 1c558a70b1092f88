"""Suite-wide fixtures: `results`, the log of measured outcomes (see `tests/results.py`),
and `s3`, one real S3-protocol server (moto in server mode) on loopback for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .objectstore import S3Server
from .results import OUTCOMES, RESULTS_DIR, ResultLog


@pytest.fixture(scope="session")
def results() -> Iterator[ResultLog]:
    log = ResultLog(RESULTS_DIR)
    yield log
    log.write()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server for the session; each test takes buckets of its own."""
    server = S3Server.start(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        result = report.outcome
        if hasattr(report, "wasxfail"):
            result = "xfailed" if report.outcome == "skipped" else "xpassed"
        OUTCOMES[item.nodeid] = result
