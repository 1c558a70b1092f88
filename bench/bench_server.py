"""Throughput of the simulated exchange to one client, against a trivial sender's ceiling.

The server (`python -m replay.server`, the same as `kalshi-tape serve`) runs in a
subprocess; one plain websockets client subscribes to orderbook_delta, ticker and
trade on every market and counts frames with `recv(decode=False)` for a fixed
window. Two server runs: at a 60k frames/s target (issue 4 asks for at least 50k
sustained), and at a 200k target, more than one process can make, which shows its
ceiling. The baseline is a trivial websockets server in another subprocess that
sends one pre-built frame with `send()` in a loop to the same client loop.

Saturated, the server's CPU time per frame received (user + system, from
/proc/PID/stat over the same window; Linux only) is reported too: on a shared
machine it moves far less than the frame rates do, so it is the figure to compare
two versions of the server by.

    python bench/bench_server.py            # readable
    python bench/bench_server.py --json     # for bench/run.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets
from common import Metric, emit

from replay.server import ServerConfig, SyntheticMarket

WINDOW_S = 4.0
WARMUP_S = 1.0
MARKETS = 50
SEED = 0

_TRIVIAL = r"""
import asyncio
from websockets.asyncio.server import serve
FRAME = (b'{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"KXBTCD-26FEB17-T3730",'
         b'"market_id":"ab0c1681-c8f8-43d0-9329-0a4cb5d32b16","clock":12345,"price_dollars":"0.5800",'
         b'"delta_fp":"-112.00","side":"yes","ts_ms":1790000000000}}')
async def handler(ws):
    await ws.recv()
    try:
        while True:
            await ws.send(FRAME, text=True)
    except Exception:
        pass
async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/trade-api/ws/v2", flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def count_frames(url: str, command: bytes, pid: int) -> tuple[float, int, float | None]:
    """Frames per second one plain client receives after a warm-up, the mean frame size,
    and the server's CPU microseconds per frame over the same window."""
    async with websockets.connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(command)
        t_end = time.perf_counter() + WARMUP_S
        while time.perf_counter() < t_end:
            await ws.recv(decode=False)
        n = size = 0
        cpu0 = cpu_s(pid)
        t0 = time.perf_counter()
        t_end = t0 + WINDOW_S
        while True:
            frame = await ws.recv(decode=False)
            n += 1
            size += len(frame)
            if n & 255 == 0 and time.perf_counter() >= t_end:
                break
        elapsed_s = time.perf_counter() - t0
        cpu1 = cpu_s(pid)
        cpu_us = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1e6 / n
        return n / elapsed_s, size // n, cpu_us


def measure(cmd: list[str], command: bytes) -> tuple[float, int, float | None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("ws://"):
            raise SystemExit(f"server did not print its URL: {url!r}")
        return asyncio.run(count_frames(url, command, proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    # The market is deterministic: the same seed lists the same tickers in the server.
    tickers = list(
        SyntheticMarket(ServerConfig(auth="open", seed=SEED, markets=MARKETS), 0).market_tickers()
    )
    params = {"channels": ["orderbook_delta", "ticker", "trade"], "market_tickers": tickers}
    command = json.dumps({"id": 1, "cmd": "subscribe", "params": params}).encode()

    def server(rate: int) -> list[str]:
        return [sys.executable, "-m", "replay.server", "--open", "--seed", str(SEED),
                "--markets", str(MARKETS), "--rate", str(rate), "--buffer", "1000000"]  # fmt: skip

    at_target, frame_bytes, _ = measure(server(60_000), command)
    saturated, _, cpu_us = measure(server(200_000), command)
    ceiling, _, ceiling_cpu_us = measure([sys.executable, "-c", _TRIVIAL], b"{}")
    baseline = "trivial sender ceiling"
    metrics = [
        Metric(
            "server at a 60k frames/s target",
            at_target,
            "frames/s",
            baseline=baseline,
            target=">= 50k",
        ),
        Metric("server saturated (200k target)", saturated, "frames/s", baseline=baseline),
        Metric(baseline, ceiling, "frames/s"),
        Metric("mean frame size", frame_bytes, "B/frame", higher_is_better=False),
    ]
    if cpu_us is not None and ceiling_cpu_us is not None:
        cpu_baseline = "trivial sender CPU per frame"
        metrics += [
            Metric(
                "server CPU per frame (saturated)",
                cpu_us,
                "us/frame",
                higher_is_better=False,
                baseline=cpu_baseline,
            ),
            Metric(cpu_baseline, ceiling_cpu_us, "us/frame", higher_is_better=False),
        ]
    emit(
        metrics,
        notes="Server: synthetic market, 50 markets, the client on orderbook_delta+ticker+trade "
        "of all of them (about 95% of the market's frames; the rest are private and lifecycle "
        "channels). Ceiling: a websockets server sending one pre-built delta with send() in a "
        "loop. One recv(decode=False) client loop for all three. The server writes up to 256 "
        "frames per transport write, which is how it can come near the per-send ceiling.",
    )


if __name__ == "__main__":
    main()
