"""Suite-wide fixtures: `results`, the log of measured outcomes (see `tests/results.py`);
`s3`, one real S3-protocol server (moto in server mode) on loopback for the session; and
`dask_client`, one real Dask distributed cluster (two worker processes) for the session,
closed as soon as the last test that uses it has run: idle, its processes still take
about a tenth of a core (heartbeats), which every later test would pay for.

The suite also runs on two pytest-xdist workers (`-n 2 --dist loadgroup`). Each worker is
a session of its own, so a fixture broader than a test is built once per worker that
runs a test needing it: `pytest_collection_modifyitems` puts the tests that share such a
fixture in one `xdist_group` (one worker builds it once), except the fixtures in
`PER_WORKER`, cheap enough for each worker to have its own.

pytest-xdist 3.8 sends a group to its scheduler by appending `@group` to the test's node
id, which pytest 9.2 no longer lets a plugin change (pytest-dev/pytest-xdist#1386): the
groups would be dropped without a word. So the workers also write the groups to a file
the controller names (`pytest_configure_node`), and `GroupScheduling`, the scheduler of
`--dist loadgroup` here, reads them from it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .objectstore import S3Server
from .results import OUTCOMES, RESULTS_DIR, ResultLog

#: Fixtures broader than a test that each xdist worker may build for itself: the results
#: log (merged under a lock, `tests/results.py`), the moto server (a second of start-up;
#: every test takes buckets of its own) and RSA keys.
PER_WORKER = frozenset({"results", "s3", "rsa_key", "public_pem"})


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps its example database and caches in `.hypothesis/` under the working
    directory, which it creates on the first test that needs it. Created here, before any
    test (and any xdist worker) starts, it is there all along, so it never appears in the
    middle of a test that checks that the repository gained no files
    (tests/test_readme_examples.py) while another worker runs a Hypothesis test."""
    from hypothesis.configuration import storage_directory

    storage_directory(intent_to_write=False).create_if_missing()


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests that share a fixture broader than a test, outside `PER_WORKER`, in
    one `xdist_group` (only `--dist loadgroup` reads it): a module-scoped fixture's tests
    by module, a package-scoped one's by package, a session-scoped one's by its name;
    tests that share one fixture with two groups join the groups into one."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys: dict[str, list[str]] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        mine = []
        for name in item.fixturenames:
            defs = info.name2fixturedefs.get(name)
            if not defs or name in PER_WORKER:
                continue
            where = getattr(defs[-1].func, "__module__", None) or ""
            if not where.startswith("tests."):  # pytest's own and plugins' (tmp_path_factory)
                continue
            scope = defs[-1].scope
            if scope == "module":
                mine.append(item.nodeid.split("::")[0])
            elif scope == "package":  # defined in the package's conftest.py
                mine.append(where.rsplit(".", 1)[0].replace(".", "/") + "/")
            elif scope == "session":
                mine.append(name)
        for key in mine[1:]:
            parent[find(key)] = find(mine[0])
        if mine:
            keys[item.nodeid] = mine
    for item in items:
        if item.nodeid in keys:
            item.add_marker(pytest.mark.xdist_group(find(keys[item.nodeid][0])))


#: The controller's file of groups, and the key of its path in each worker's input.
_GROUPS: dict[str, Path] = {}
GROUPS_KEY = "kt_xdist_groups"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """The controller, before it starts a worker: where the workers write the groups."""
    if "file" not in _GROUPS:
        _GROUPS["file"] = Path(tempfile.mkdtemp(prefix="kt-xdist-")) / "groups.json"
    node.workerinput[GROUPS_KEY] = str(_GROUPS["file"])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup" or "file" not in _GROUPS:
        return None
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        """`--dist loadgroup` with the groups the workers wrote (node id: group); called
        only once every worker has collected, so after they wrote them."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                try:
                    self.groups = json.loads(_GROUPS["file"].read_text())
                except FileNotFoundError:  # a worker lost before any finished collecting
                    return super()._split_scope(nodeid)
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "file" in _GROUPS:
        shutil.rmtree(_GROUPS.pop("file").parent, ignore_errors=True)


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


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the test runs: bound and never
    listened on. A port found free and let go (`free_port()`) could be taken meanwhile
    by a server of a test running beside this one (another xdist worker)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


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
    where = getattr(session.config, "workerinput", {}).get(GROUPS_KEY)
    if where:  # an xdist worker: the groups, by the node ids it reports to the controller
        groups = {}
        for item in session.items:
            marks = sorted({str(m.args[0]) for m in item.iter_markers("xdist_group")})
            if marks:
                groups[item.nodeid] = "_".join(marks)
        tmp = Path(f"{where}.{os.getpid()}")
        tmp.write_text(json.dumps(groups))
        tmp.replace(where)  # every worker writes the same groups


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
