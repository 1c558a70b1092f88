"""Real processes for the reliability tests: the simulated exchange and `kalshi-tape record`.

This module owns starting the simulated exchange as its own process (its URL is the
first line it prints), writing a recorder config, starting the recorder as a process
(optionally under another environment, e.g. libfaketime's), reading the recorder's
status file and its process figures from /proc. It knows nothing of what a test
asserts; every process it starts is stopped by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PAGE_BYTES",
    "TICKS_PER_S",
    "ProcSample",
    "Recording",
    "exchange",
    "free_port",
    "metrics",
    "proc_sample",
    "read_status",
    "recording",
    "wait_for",
    "write_config",
]

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], timeout_s: float, every_s: float = 0.02) -> Any:
    """Poll `check()` until it returns something truthy; return it (None on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every_s)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int) -> dict[str, float] | None:
    """The recorder's Prometheus endpoint, each metric summed over its labels (None: down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            body = r.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            key = name.split("{", 1)[0].removeprefix("kalshi_tape_")
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _stop(proc: subprocess.Popen[Any], timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def exchange(
    *,
    rate: float = 2000,
    markets: int = 12,
    seed: int = 5,
    extra: tuple[str, ...] = ("--open",),
    truth: Path | None = None,
    entry: tuple[str, ...] = ("-m", "replay.server"),
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """The simulated exchange as a process (`python -m replay.server`, or `entry`);
    yields its URL."""
    argv = [sys.executable, *entry, "--port", "0", "--rate", f"{rate:g}",
            "--markets", str(markets), "--seed", str(seed),
            "--switch", "orderbook_without_tickers=all", *extra]  # fmt: skip
    if truth is not None:
        argv += ["--truth", str(truth)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ if env is None else env))  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("ws://"):
            proc.kill()
            raise AssertionError(f"the exchange did not start: {proc.stderr.read()[-2000:]}")
        yield url
    finally:
        _stop(proc)


def write_config(path: Path, url: str, root: Path, **sections: Mapping[str, Any]) -> Path:
    """A recorder TOML config: the URL, three market channels, the root, and `sections`
    (`storage={"commit_interval_ms": 20}`) merged over the defaults below."""
    base: dict[str, dict[str, Any]] = {
        "connection": {"url": url},
        "channels": {"orderbook_delta": "all", "ticker": "all", "trade": "all"},
        "storage": {"root": str(root), "commit_interval_ms": 50, "checkpoint_interval_s": 0},
        "jobs": {"compaction": ""},
        "health": {"status_interval_s": 0.05},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_status(path: Path) -> dict[str, Any] | None:
    """The recorder's status file, or None while it is absent or being replaced."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Recording:
    """A running `kalshi-tape record` process."""

    proc: subprocess.Popen[str]
    status_path: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict[str, Any] | None:
        s = read_status(self.status_path)
        return s if s is not None and s.get("pid") == self.proc.pid else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (a clean stop: everything is published) and the exit status."""
        _stop(self.proc, timeout_s)
        return self.proc.returncode


@contextlib.contextmanager
def recording(
    config: Path,
    status_path: Path,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    entry: tuple[str, ...] = ("-m", "kalshi_tape"),
    args: tuple[str, ...] = (),
) -> Iterator[Recording]:
    """`kalshi-tape record --config CONFIG` (`python -m kalshi_tape`, or `entry`) as a
    process, stdout and stderr to `log_path`; stopped (SIGTERM, then SIGKILL) on exit if
    the test did not stop it."""
    argv = [sys.executable, *entry, "record", "--config", str(config), "--no-progress",
            *args]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ if env is None else env))  # fmt: skip
    rec = Recording(proc, status_path, log_path)
    try:
        yield rec
    finally:
        _stop(proc)


@dataclass(frozen=True)
class ProcSample:
    """One look at a process and its descendants: monotonic time, memory and CPU time used,
    of the process alone (VmRSS) and of the whole tree (the recorder's publisher runs in
    a child process). The tree's memory is the sum of PSS (/proc/<pid>/smaps_rollup):
    spawned children map the same libraries, and a sum of RSS would count them twice."""

    mono_s: float
    rss_bytes: int
    cpu_s: float
    tree_pss_bytes: int
    tree_cpu_s: float
    tree_size: int


def _rss_cpu(pid: int) -> tuple[int, float, int]:
    """(VmRSS from /proc/<pid>/status, utime + stime from /proc/<pid>/stat, parent pid)."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
            break
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])  # proc(5) 4, 14, 15
    return rss, (utime + stime) / TICKS_PER_S, ppid


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def proc_sample(pid: int) -> ProcSample:
    """Sample `pid` and its descendants (a child that exits meanwhile is skipped)."""
    now = time.monotonic()
    rss, cpu, _ = _rss_cpu(pid)
    tree_pss, tree_cpu, size = _pss(pid), cpu, 1
    for child in _descendants(pid):
        try:
            _, child_cpu, _ = _rss_cpu(child)
            child_pss = _pss(child)
        except (OSError, ValueError, IndexError):
            continue
        tree_pss, tree_cpu, size = tree_pss + child_pss, tree_cpu + child_cpu, size + 1
    return ProcSample(now, rss, cpu, tree_pss, tree_cpu, size)
