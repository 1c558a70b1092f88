"""Start the simulated exchange as a child process and find its URL (`record --sim`).

docs/architecture.md section 2: `record --sim` starts the simulated exchange as its own process
and connects to it over loopback, exactly as it would to Kalshi. The child is
`python -m replay.server` (the recorder never imports replay: they meet only on the
wire); it prints its URL as the first line on stdout. On Linux the child is told to
die with its parent, so a recorder killed with -9 leaves no exchange behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from recorder.errors import RecorderError
from recorder.orphans import die_with_parent
from recorder.service.config import SimConfig

__all__ = ["SimExchange", "start_sim"]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    die_with_parent(signal.SIGTERM)


@dataclass
class SimExchange:
    """A running simulated exchange."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after the timeout)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sim(
    config: SimConfig, *, switches: list[str] | None = None, timeout_s: float = 30.0
) -> SimExchange:
    """Start `python -m replay.server` on a free loopback port and wait for its URL.

    Raises:
        RecorderError: it did not start (its stderr is in the message).
    """
    argv = [
        sys.executable, "-m", "replay.server", "--open", "--port", "0",
        "--seed", str(config.seed), "--markets", str(config.markets),
        "--rate", f"{config.rate:g}",
    ]  # fmt: skip
    for fault in config.faults:
        argv += ["--fault", fault]
    for switch in switches or ():
        argv += ["--switch", switch]
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    url = line[0].decode().strip() if line else ""
    if not url.startswith("ws://"):
        process.kill()
        _, err = process.communicate(timeout=5)
        raise RecorderError(
            f"the simulated exchange did not start: {err.decode(errors='replace')[-2000:]}"
        )
    threading.Thread(target=_drain, args=(process,), daemon=True).start()
    return SimExchange(url, process)


def _drain(process: subprocess.Popen[bytes]) -> None:
    """Keep reading the child's pipes so it never blocks on a full one."""
    for stream in (process.stdout, process.stderr):
        if stream is None:
            continue
        threading.Thread(target=lambda s=stream: [None for _ in iter(s.readline, b"")],
                         daemon=True).start()  # fmt: skip
