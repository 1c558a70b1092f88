"""Storage that fails while `kalshi-tape record` runs is said, not only survived.

A real recorder records the simulated exchange into an `s3://` root on a real S3-protocol
server (moto, `tests/objectstore.py`), reached through a loopback TCP proxy
(`tests/reliability/proxy.py`) that the test cuts: new connections refused, open ones
reset. Segments roll every second, the warning bound is one second and so is the status
line's interval. While storage is cut the log must carry a WARNING naming the error, the
segments and bytes waiting in the journal and the journal's free disk, repeated at the
status line's interval; the status line, `_status.json` and the metrics must carry the
backlog; once storage is back an INFO says so, the backlog drains, the run stops with
exit 0 and every idx it recorded is on S3.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recorder.storage.publisher import sealed_segments
from replay.reading.bulk import iter_batches
from schemas.channels import ALL_CHANNELS

from ..objectstore import S3Server
from ..reliability._procs import REPO, free_port, read_status
from ..reliability.proxy import FaultProxy

pytestmark = pytest.mark.timeout(300)

WARNING = re.compile(
    r" WARNING +\S+: publishing to (s3://\S+) has failed for (\d+) s: (.+); (\d+) segment\(s\) "
    r"\(([0-9.,]+ (?:B|KiB|MiB|GiB))\) wait in the journal (\S+) \(([0-9.,]+ (?:B|KiB|MiB|GiB)) "
    r"free there\); nothing is lost, retrying$"
)
RECOVERED = re.compile(r" INFO +\S+: publishing to (s3://\S+) works again after failing for "
                       r"(\d+) s; (\d+) segment\(s\)")  # fmt: skip
STATUS_LINE = re.compile(r"files published, (\d+) segment\(s\) \(([^)]+)\) waiting to publish "
                         r"\(publishing failing for (\d+) s\)")  # fmt: skip


def write_config(path: Path, root: str, journal: Path, status: Path, metrics_port: int) -> Path:
    lines = ["[connection]", 'environment = "sim"', "[sim]", "markets = 5", "rate = 400",
             "[jobs]", 'compaction = ""', "[health]", f"status_file = {json.dumps(str(status))}",
             "status_interval_s = 0.1", "log_interval_s = 1", "publish_warn_after_s = 1",
             f"metrics_port = {metrics_port}", "[storage]", f"root = {json.dumps(root)}",
             f"journal_dir = {json.dumps(str(journal))}", "segment_max_age_s = 1.0",
             "commit_interval_ms = 20", "checkpoint_interval_s = 1"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def scrape(port: int) -> dict[str, float]:
    """The label-less samples of the recorder's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        body = reply.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples
            if not s.labels}  # fmt: skip


async def test_a_storage_outage_is_a_repeated_warning_then_an_info_and_nothing_is_lost(
    tmp_path: Path, s3: S3Server, dead_port: int
) -> None:
    root = s3.new_root("warn")
    journal, status_path, log = tmp_path / "journal", tmp_path / "status.json", tmp_path / "log"
    port = free_port()
    config = write_config(tmp_path / "record.toml", root, journal, status_path, port)
    dead = ("127.0.0.1", dead_port)

    def status() -> dict[str, Any]:
        return read_status(status_path) or {}

    def lines(pattern: re.Pattern[str]) -> list[re.Match[str]]:
        return [m for line in log.read_text().splitlines() if (m := pattern.search(line))]

    async def until(check: Callable[[], Any], what: str, timeout_s: float = 90) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (got := check()):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"timed out until {what}: {status()}"
            await asyncio.sleep(0.1)
        return got

    async with FaultProxy("127.0.0.1", s3.port) as proxy:
        with log.open("w") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the loop runs the proxy
                [sys.executable, "-m", "kalshi_tape", "record", "--config", str(config),
                 "--no-progress", "--endpoint-url", f"http://127.0.0.1:{proxy.port}"],
                cwd=REPO, env=s3.env(), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await until(lambda: status().get("files_published", 0) > 0, "files are published")
            assert status()["publish_failing_s"] == 0 and status()["publish_error"] is None
            assert lines(WARNING) == []
            cut = time.monotonic()
            proxy.upstream = dead  # every new connection is refused from here ...
            proxy.reset()  # ... and the open ones are cut
            # Held until the warning has been repeated (the status line's interval is 1 s).
            warnings = await until(lambda: len(lines(WARNING)) >= 2 and lines(WARNING),
                                   "the warning is logged twice")  # fmt: skip
            during = status()
            metrics = await asyncio.to_thread(scrape, port)
            status_line = await until(lambda: lines(STATUS_LINE), "the status line says so")
            proxy.upstream = ("127.0.0.1", s3.port)  # the storage is back
            back = time.monotonic()
            recovered = await until(lambda: lines(RECOVERED), "the recovery is logged")
            await until(lambda: status().get("publish_backlog_segments", 99) <= 1,
                        "the backlog drains")  # fmt: skip
            after = status()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text

    # The WARNING: past the bound, naming the root, the error, what waits and the free disk.
    first, second = warnings[0], warnings[1]
    # (the log's redaction takes any run of 64 path characters for a secret: a pytest
    # temporary directory is one)
    assert first[1] == root and first[6] in (str(journal), "[redacted]")
    assert int(first[2]) >= 1 and int(second[2]) > int(first[2])
    assert first[3].strip() and first[3] != "None"  # the storage client's error
    assert int(first[4]) >= 1 and not first[5].startswith("0 B")
    # Repeated at the status line's interval (1 s), not every status tick (0.1 s): the
    # failure lasts the cut plus at most a retry (1 s) and the publish that succeeds.
    assert len(lines(WARNING)) <= (back - cut) + 3, text
    # The status file and the metrics carried the backlog while it lasted.
    assert during["publish_failing_s"] > 1 and during["publish_error"]
    assert during["publish_failing_since"].endswith("Z")
    assert during["publish_backlog_segments"] >= 1 and during["publish_backlog_bytes"] > 0
    assert during["publish_backlog_segments"] == during["publish_queued_segments"]
    assert during["disk_free_bytes"] > 0
    assert metrics["kalshi_tape_publish_failing_seconds"] > 1
    assert metrics["kalshi_tape_publish_backlog_segments"] >= 1
    assert metrics["kalshi_tape_publish_backlog_bytes"] > 0
    assert metrics["kalshi_tape_publish_errors_total"] >= 1
    assert int(status_line[0][1]) >= 1 and int(status_line[0][3]) >= 1
    # The INFO once publishing works again, once; then nothing is failing.
    assert len(recovered) == 1 and recovered[0][1] == root and int(recovered[0][2]) >= 1
    assert after["publish_failing_s"] == 0 and after["publish_error"] is None
    assert after["publish_failing_since"] is None
    assert "Traceback" not in text

    # Nothing was lost: every idx of the run is on S3, once, up to run_stop.
    assert sealed_segments(journal) == []
    batches = iter_batches(root, channels=ALL_CHANNELS, columns=["idx", "type"],
                           storage=s3.options)  # fmt: skip
    rows = [row for b in batches for row in zip(*b.to_pydict().values(), strict=True)]
    assert sorted(idx for idx, _ in rows) == list(range(len(rows)))
    assert sorted(rows)[-1][1] == "run_stop"
