"""Suite-wide fixtures: `results`, the log of measured outcomes (see `tests/results.py`);
`s3`, one real S3-protocol server (moto in server mode) on loopback for the session; and
`dask_client`, one real Dask distributed cluster (two worker processes) for the session,
closed as soon as the last test that uses it has run: idle, its processes still take
about a tenth of a core (heartbeats), which every later test would pay for."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

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


#: The cluster's closer while it runs, and the node id of the last test that uses it.
_DASK: dict[str, Any] = {}


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A local Dask cluster of two worker processes (the machine's cores) for the session."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
    client = Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()

    _DASK["close"] = close
    yield client
    _close_dask()


def _close_dask() -> None:
    close = _DASK.pop("close", None)
    if close is not None:
        close()


def pytest_collection_finish(session: pytest.Session) -> None:
    users = [item.nodeid for item in session.items
             if "dask_client" in getattr(item, "fixturenames", ())]  # fmt: skip
    if users:
        _DASK["last"] = users[-1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    if item.nodeid == _DASK.get("last"):  # no test after this one needs the cluster
        _close_dask()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        result = report.outcome
        if hasattr(report, "wasxfail"):
            result = "xfailed" if report.outcome == "skipped" else "xpassed"
        OUTCOMES[item.nodeid] = result
