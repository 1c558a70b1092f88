"""An unmodified third-party client (`kalshi-sdk`) works against the simulated exchange.

kalshi-sdk needs Python 3.12 or newer; this suite runs on 3.11. The test finds a
newer interpreter (PATH, then pyenv), builds a cached virtual environment under
`tests/.cache/` (made git-ignored by a `.gitignore` written into it), installs
kalshi-sdk there from the package index, and runs a small script in it against
our server started as a subprocess. Without such an interpreter, or when the
package cannot be installed, the test is skipped and says why.

The script checks, with the SDK's own API only: ticker, trade and orderbook
streams; its gap recovery (our server skips a seq on its first connection and the
SDK must resubscribe and get a fresh snapshot); its reconnect after close 1011.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from replay.server import ServerConfig, SyntheticMarket

pytestmark = pytest.mark.compat

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / "tests" / ".cache"
SDK_REQUIREMENT = "kalshi-sdk==22.4.0"
SEED = 21
MARKETS = 6

_SCRIPT = r"""
import asyncio, json, sys
from kalshi import KalshiAuth, KalshiConfig
from kalshi.ws import KalshiWebSocket
from kalshi.ws.models import OrderbookSnapshotMessage, OrderbookDeltaMessage

url, key_path, tickers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
auth = KalshiAuth.from_key_path("sim-key", key_path)
config = KalshiConfig(
    base_url="http://127.0.0.1/trade-api/v2",
    ws_base_url=url,
    retry_base_delay=0.1,
    retry_max_delay=0.5,
)
out = {}

async def book_and_gap():
    # Connection 1: the server skips one seq after 150 frames; the SDK must resubscribe.
    ws = KalshiWebSocket(auth=auth, config=config)
    snapshot_sids, deltas_after_resync = [], 0
    async with ws.connect() as session:
        stream = await session.subscribe_orderbook_delta(tickers=tickers, maxsize=100_000)
        async for msg in stream:
            if isinstance(msg, OrderbookSnapshotMessage):
                snapshot_sids.append(msg.sid)
                assert msg.msg.yes, "snapshot without YES levels"
            elif isinstance(msg, OrderbookDeltaMessage) and len(set(snapshot_sids)) > 1:
                deltas_after_resync += 1
                if deltas_after_resync >= 20:
                    break
    out["snapshot_sids"] = sorted(set(snapshot_sids))
    out["deltas_after_resync"] = deltas_after_resync

async def ticker_trade_book():
    # Connection 2: ticker and trade streams and the maintained-orderbook helper.
    ws = KalshiWebSocket(auth=auth, config=config)
    async with ws.connect() as session:
        tickers_stream = await session.subscribe_ticker(tickers=tickers)
        trades_stream = await session.subscribe_trade(tickers=tickers)
        async def take(stream, n):
            got = []
            async for msg in stream:
                got.append(msg)
                if len(got) >= n:
                    return got
        ticks, trades = await asyncio.gather(take(tickers_stream, 5), take(trades_stream, 5))
        out["ticker_fields"] = [str(t.msg.yes_bid) for t in ticks]
        out["trade_counts"] = [str(t.msg.count) for t in trades]
    ws = KalshiWebSocket(auth=auth, config=config)
    async with ws.connect() as session:
        books = []
        async for book in await session.orderbook(tickers[0]):
            books.append((len(book.yes), len(book.no)))
            if len(books) >= 5:
                break
        out["orderbook_depths"] = books

async def reconnect():
    # Connection 4 is closed with 1011 after 100 frames; the SDK reconnects (5) and resubscribes.
    states = []
    async def on_state(old, new):
        states.append(new.value)
    ws = KalshiWebSocket(auth=auth, config=config, on_state_change=on_state)
    count = 0
    async with ws.connect() as session:
        stream = await session.subscribe_trade()
        async for msg in stream:
            count += 1
            if "reconnecting" in states and states[-1] == "streaming" and count > 120:
                break
    out["states"] = states
    out["trades_received"] = count

async def main():
    await asyncio.wait_for(book_and_gap(), 60)
    await asyncio.wait_for(ticker_trade_book(), 60)
    await asyncio.wait_for(reconnect(), 60)
    print(json.dumps(out))

asyncio.run(main())
"""


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def find_python312() -> str | None:
    """A Python >= 3.12 on PATH or under pyenv, newest first; None if there is none."""
    names = [shutil.which(f"python3.{minor}") for minor in range(20, 11, -1)]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    names += sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    names.append(shutil.which("python3"))
    for name in filter(None, names):
        version = _version(name)
        if version is not None and version >= (3, 12):
            return name
    return None


def sdk_venv(python: str) -> Path:
    """The cached venv with kalshi-sdk installed; skips the test when it cannot be built.
    Built under an exclusive lock: two tests use it (this one and test_capture_compat.py),
    and under pytest-xdist both may ask for it at once in a fresh clone."""
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    with (CACHE / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _sdk_venv(python)


def _sdk_venv(python: str) -> Path:
    venv = CACHE / f"kalshi-sdk-{SDK_REQUIREMENT.split('==')[1]}"
    bin_python = venv / "bin" / "python"
    if (
        bin_python.exists()
        and subprocess.run([bin_python, "-c", "import kalshi.ws"], capture_output=True).returncode
        == 0
    ):
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    install = subprocess.run(
        [bin_python, "-m", "pip", "install", "-q", SDK_REQUIREMENT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        pytest.skip(
            f"cannot install {SDK_REQUIREMENT} into a {python} venv: {install.stderr[-500:]}"
        )
    return venv


def test_kalshi_sdk_streams_recovers_from_a_gap_and_reconnects_after_1011(tmp_path: Path) -> None:
    python = find_python312()
    if python is None:
        reason = "kalshi-sdk needs Python >= 3.12 and none was found on PATH or under pyenv"
        print(f"SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    venv = sdk_venv(python)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "sim-key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "sim-key.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # The market is deterministic: the same seed lists the same tickers in the server process.
    tickers = list(
        SyntheticMarket(ServerConfig(auth="open", seed=SEED, markets=MARKETS), 0).market_tickers()
    )[:3]
    server = subprocess.Popen(
        [
            sys.executable, "-m", "replay.server",
            "--public-key", f"*={public}",
            "--seed", str(SEED), "--markets", str(MARKETS), "--rate", "800",
            "--switch", "empty_side=empty_list",  # kalshi-sdk requires both snapshot keys
            "--fault", "gap@after=150,conn=1",
            "--fault", "close:1011@after=100,conn=4",
            "--truth", str(tmp_path / "truth.ndjson"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")
        run = subprocess.run(
            [venv / "bin" / "python", "-c", _SCRIPT, url, str(private), json.dumps(tickers)],
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["snapshot_sids"]) >= 2, "no resubscribe after the gap"
    assert result["deltas_after_resync"] >= 20
    assert len(result["ticker_fields"]) == 5 and len(result["trade_counts"]) == 5
    assert all(yes > 0 and no > 0 for yes, no in result["orderbook_depths"])
    assert "reconnecting" in result["states"] and result["states"][-1] in ("streaming", "closed")
    assert result["trades_received"] > 120
    truth = [json.loads(line) for line in (tmp_path / "truth.ndjson").read_text().splitlines()]
    faults = {(t["conn"], t["fault"]) for t in truth if t["kind"] == "fault"}
    assert {(1, "gap"), (4, "close")} <= faults
