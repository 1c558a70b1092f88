"""A recorder killed with -9 and restarted leaves no alarm in the log: a recovered crash is quiet.

`kalshi-tape record --sim` runs as a real process (with its publisher child and the
simulated exchange), is killed with SIGKILL once it has journaled frames, and is started
again on the same root. Its standard error is read to the end, which is only reached once
every process that shares it (the recorder, its children, multiprocessing's resource
tracker) has exited: whatever any of them says about the killed run is in the text. Neither
that text nor the restarted run's log may carry a `resource_tracker` warning (leaked
semaphores) or a traceback; the restart recovers the torn journal and exits 0, and the
capture verifies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay.sql.verify import verify_capture
from tests.reliability._procs import REPO

pytestmark = pytest.mark.timeout(180)
RECORD = [sys.executable, "-m", "kalshi_tape", "record", "--sim", "--no-progress",
          "--segment-age", "0.5s"]  # fmt: skip
ALARMS = ("resource_tracker", "leaked semaphore", "Traceback")


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}


def durable_pid(status: Path) -> tuple[int, int] | None:
    """(pid, durable_idx) of the latest status file, if it reads."""
    try:
        s = json.loads(status.read_text())
    except (OSError, ValueError):
        return None
    return int(s["pid"]), int(s["durable_idx"])


def test_a_recorder_restarted_after_kill_9_logs_no_leaked_semaphores(tmp_path: Path) -> None:
    root = tmp_path / "data"
    status = root / "_status.json"
    killed_logs: list[str] = []
    for _ in range(2):  # two kills: the second one's restart recovers a recovered journal
        proc = subprocess.Popen([*RECORD, "--root", str(root)], cwd=REPO, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # until this run has frames on disk (and its publisher has published)
            s = durable_pid(status)
            if s is not None and s[0] == proc.pid and s[1] > 0:
                break
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the recorder did not record"
            time.sleep(0.05)
        time.sleep(1.0)  # a few segments sealed and published: the child is busy
        os.kill(proc.pid, signal.SIGKILL)
        # EOF only once every process holding the recorder's stderr has gone.
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        killed_logs.append(err)

    restarted = subprocess.run([*RECORD, "--root", str(root), "--duration", "2s"], cwd=REPO,
                               env=env(), capture_output=True, text=True, timeout=90,
                               check=False)  # fmt: skip
    assert restarted.returncode == 0, restarted.stderr
    assert "recovered" in restarted.stderr  # the torn journal of the last kill
    for text in [*killed_logs, restarted.stderr]:
        alarms = [line for line in text.splitlines() if any(a in line for a in ALARMS)]
        assert alarms == [], text
    verdict = verify_capture(root)
    assert not verdict.corrupt and not verdict.unreadable, verdict.problems()
