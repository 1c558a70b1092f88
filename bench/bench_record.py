"""Durable capture: `kalshi-tape record` against a server writing pre-built frames.

    python bench/bench_record.py [--frames N]

Measured in one run, on the same N frames of the realistic mix (bench/mix.py):
  ceiling   a plain websockets client, `recv(decode=False)` in a loop, counting
  socket    the live client's own socket (picows, `recorder.link.sockets`) in the same loop
  recorder  the real `kalshi-tape record` process: journal (group commit fdatasync),
            engine, publisher; time until its status file reports the N-th frame
            durable; its CPU (user + system) over that time and its peak RSS.
  two feeds the same recorder with `feeds = 2` (docs/redundancy.md section 4): the server sends
            the N frames on each connection, the recorder keeps both copies and the
            engine arbitrates; the rate counts the exchange's messages (N over the time
            until 2N records are durable), against one feed's in the same run.
The server is `bench/_blaster.py` (docs/performance.md section 4.14: pre-built frames).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Metric, emit

HERE = Path(__file__).resolve().parent
TICK_S = os.sysconf("SC_CLK_TCK")
#: Extra `[storage]` settings, e.g. KT_BENCH_STORAGE='segment_max_mb = 1000' (experiments).
STORAGE = os.environ.get("KT_BENCH_STORAGE", "")


def start_blaster(n: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "_blaster.py"), str(n)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def socket_client(url: str, n: int) -> float:
    """The live client's own socket (`recorder.link.sockets`), `recv()` in a loop, counting."""
    import logging

    from recorder.link.sockets import connect_picows

    ws = await connect_picows(
        url, headers=[], ssl=None, proxy=None, open_timeout_s=10, ping_interval_s=20,
        ping_timeout_s=10, close_timeout_s=3, max_frame_bytes=1 << 26,
        logger=logging.getLogger("bench"),
    )  # fmt: skip
    for i, channel in enumerate(("orderbook_delta", "ticker", "trade"), start=1):
        command = {"id": i, "cmd": "subscribe", "params": {"channels": [channel]}}
        await ws.send(json.dumps(command).encode())
    for _ in range(4):
        await ws.recv()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        await ws.recv()
    rate = (n - 1) / (time.perf_counter() - t0)
    ws.abort()
    return rate


async def plain_client(url: str, n: int) -> float:
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        for i, channel in enumerate(("orderbook_delta", "ticker", "trade"), start=1):
            command = {"id": i, "cmd": "subscribe", "params": {"channels": [channel]}}
            await ws.send(json.dumps(command))
        for _ in range(3):
            await ws.recv(decode=False)
        await ws.recv(decode=False)
        t0 = time.perf_counter()
        for _ in range(n - 1):
            await ws.recv(decode=False)
        return (n - 1) / (time.perf_counter() - t0)


def with_blaster(n: int, run: Any) -> Any:
    """run(url) against a fresh blaster serving n frames (one client each)."""
    blaster, url = start_blaster(n)
    try:
        return run(url)
    finally:
        blaster.terminate()
        blaster.wait()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def record(url: str, n: int, tmp: Path, feeds: int = 1) -> tuple[float, float, float]:
    """(exchange messages/s until n * feeds records are durable, CPU share, peak RSS)."""
    shutil.rmtree(tmp / "data", ignore_errors=True)
    config = tmp / "record.toml"
    config.write_text(
        f'[connection]\nurl = "{url}"\nfeeds = {feeds}\n'
        '[channels]\norderbook_delta = "all"\nticker = "all"\ntrade = "all"\n'
        f'[storage]\nroot = "{tmp / "data"}"\n{STORAGE}\n'
        '[jobs]\ncompaction = ""\n[health]\nstatus_interval_s = 0.05\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "kalshi_tape", "record", "--config",
                             str(config), "--no-progress"], stderr=subprocess.DEVNULL)  # fmt: skip
    status = tmp / "data" / "_status.json"
    start = cpu0 = None
    peak = 0.0
    try:
        while True:
            time.sleep(0.02)
            if proc.poll() is not None:
                raise SystemExit(f"the recorder exited with status {proc.returncode}")
            try:
                s = json.loads(status.read_text())
            except (OSError, ValueError):
                continue
            peak = max(peak, rss_mib(proc.pid))
            if start is None and s["appended_idx"] > 10:
                start, cpu0, idx0 = time.perf_counter(), cpu_s(proc.pid), s["appended_idx"]
            if start is not None and s["durable_idx"] >= n * feeds:
                elapsed = time.perf_counter() - start
                cpu = cpu_s(proc.pid) - (cpu0 or 0.0)
                return (n * feeds - idx0) / feeds / elapsed, cpu / elapsed, peak
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    n = 1_000_000
    if "--frames" in sys.argv:
        n = int(sys.argv[sys.argv.index("--frames") + 1])
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    try:
        ceiling = with_blaster(n, lambda url: asyncio.run(plain_client(url, n)))
        own = with_blaster(n, lambda url: asyncio.run(socket_client(url, n)))
        rate, cpu_share, peak = with_blaster(n, lambda url: record(url, n, tmp))
        rate2, cpu_share2, peak2 = with_blaster(n, lambda url: record(url, n, tmp, feeds=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(
        [
            Metric("ceiling: websockets recv(decode=False) loop", ceiling, "frames/s"),
            Metric(
                "the live client's socket (picows): recv() loop",
                own,
                "frames/s",
                baseline="ceiling: websockets recv(decode=False) loop",
            ),
            Metric(
                "kalshi-tape record, durable",
                rate,
                "frames/s",
                baseline="ceiling: websockets recv(decode=False) loop",
                target=">= 100k, ratio >= 0.7",
            ),
            Metric(
                "recorder CPU while recording",
                cpu_share * 100,
                "% of a core",
                higher_is_better=False,
            ),
            Metric("recorder peak RSS", peak, "MiB", higher_is_better=False, target="<= 200"),
            Metric(
                "kalshi-tape record --feeds 2, durable (exchange messages)",
                rate2,
                "frames/s",
                baseline="kalshi-tape record, durable",
            ),
            Metric(
                "recorder CPU while recording, two feeds",
                cpu_share2 * 100,
                "% of a core",
                higher_is_better=False,
            ),
            Metric("recorder peak RSS, two feeds", peak2, "MiB", higher_is_better=False),
        ],
        notes=f"{n:,} frames of the realistic mix (bench/mix.py) from bench/_blaster.py.",
    )


if __name__ == "__main__":
    main()
