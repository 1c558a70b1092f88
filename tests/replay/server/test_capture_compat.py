"""An unmodified third-party client (`kalshi-sdk`) against the replay server.

As in test_server_compat.py: kalshi-sdk needs Python 3.12 or newer, so the test
runs it from a cached virtual environment (skipped, saying why, when there is no
such interpreter or the package cannot be installed) against `kalshi-tape serve
--from ROOT` started as a subprocess. The capture holds two markets' books and
trades and a disconnect the recorder met (the server closed with 1011): the SDK
must be closed there, reconnect and resubscribe with its own logic, and end with
books equal to the server's truth and every recorded trade.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from schemas.events import Attempt, Closed, Opened, RunStart, RunStop

from ..capture_factory import RunBuilder, delta, snapshot, subscribe, subscribed, trade
from .capture_helpers import SERVER_1011
from .test_server_compat import ROOT, find_python312, sdk_venv

pytestmark = pytest.mark.compat

MARKETS = ["KXBTCD-26NOV21-T100000", "KXETHD-26NOV21-T4000"]
TRADES_PER_CONN = 150

_SCRIPT = r"""
import asyncio, json, sys
from kalshi import KalshiAuth, KalshiConfig
from kalshi.ws import KalshiWebSocket
from kalshi.ws.models import OrderbookSnapshotMessage

url, key_path = sys.argv[1], sys.argv[2]
tickers, want_trades = json.loads(sys.argv[3]), int(sys.argv[4])
auth = KalshiAuth.from_key_path("sim-key", key_path)
config = KalshiConfig(base_url="http://127.0.0.1/trade-api/v2", ws_base_url=url,
                      retry_base_delay=0.1, retry_max_delay=0.5)
states, trades, snapshots = [], [], {}

async def on_state(old, new):
    states.append(new.value)

async def main():
    ws = KalshiWebSocket(auth=auth, config=config, on_state_change=on_state)
    async with ws.connect() as session:
        books = await session.subscribe_orderbook_delta(tickers=tickers, maxsize=100_000)
        trade_stream = await session.subscribe_trade(tickers=tickers, maxsize=100_000)

        async def read_books():
            async for msg in books:
                if isinstance(msg, OrderbookSnapshotMessage):
                    snapshots[msg.msg.market_ticker] = msg  # its yes/no stay live (the SDK's book)

        async def read_trades():
            async for msg in trade_stream:
                trades.append(msg.msg.trade_id)
                if len(trades) >= want_trades:
                    return

        reader = asyncio.create_task(read_books())
        await asyncio.wait_for(read_trades(), 60)
        await asyncio.sleep(1.0)  # the last deltas
        reader.cancel()
    out = {"states": states, "trades": trades, "books": {
        t: {"yes": [[str(p), str(q)] for p, q in m.msg.yes.items()],
            "no": [[str(p), str(q)] for p, q in m.msg.no.items()]} for t, m in snapshots.items()}}
    print(json.dumps(out))

asyncio.run(main())
"""


def _capture(root: Path) -> list[str]:
    """Two connections of book and trade data; the first ends with a server close 1011."""
    rng = random.Random(5)
    run = RunBuilder(root)
    run.event(RunStart(run_id=run.run_id, version="test"), 0)
    trade_ids: list[str] = []
    for conn in (1, 2):
        run.event(Attempt(url="wss://x", attempt=1), 0)
        run.event(Opened(url="wss://x", standby=False), conn)
        run.send(subscribe(1, ["orderbook_delta", "trade"], MARKETS), conn)
        run.receive(subscribed(1, "orderbook_delta", 1), conn)
        run.receive(subscribed(1, "trade", 2), conn)
        books = {m: {"yes": {}, "no": {}} for m in MARKETS}
        for seq, market in enumerate(MARKETS, start=1):
            yes = [[f"0.{p:02d}00", f"{rng.randrange(1, 50)}.00"] for p in range(30, 40 + conn)]
            no = [[f"0.{p:02d}00", f"{rng.randrange(1, 50)}.00"] for p in range(50, 58)]
            books[market] = {"yes": dict(yes), "no": dict(no)}
            run.receive(snapshot(1, seq, market, yes, no), conn)
        book_seq = len(MARKETS)
        for n in range(TRADES_PER_CONN):
            market = rng.choice(MARKETS)
            side = rng.choice(["yes", "no"])
            ladder = books[market][side]
            fresh = rng.randrange(60, 70) if side == "no" else rng.randrange(20, 30)
            price = rng.choice(list(ladder)) if rng.random() < 0.5 else f"0.{fresh:02d}00"
            have = Decimal(ladder.get(price, "0"))
            change = -have if have and rng.random() < 0.3 else Decimal(rng.randrange(1, 20))
            ladder[price] = f"{have + change:.2f}"
            book_seq += 1
            run.receive(delta(1, book_seq, market, price, f"{change:.2f}", side), conn)
            frame = trade(2, n + 1, market, "0.4000", "0.6000", "1.00")
            frame["msg"]["trade_id"] = f"c{conn}-{n}"
            trade_ids.append(frame["msg"]["trade_id"])
            run.receive(frame, conn)
        if conn == 1:
            run.event(Closed(**SERVER_1011), conn)
    run.event(RunStop(reason="test"), 0)
    run.write()
    return trade_ids


def _levels(rows: list[list[str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in rows if Decimal(q)}


def test_kalshi_sdk_streams_a_capture_and_reconnects_where_the_recorder_was_closed(
    tmp_path: Path,
) -> None:
    python = find_python312()
    if python is None:
        reason = "kalshi-sdk needs Python >= 3.12 and none was found on PATH or under pyenv"
        print(f"SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    venv = sdk_venv(python)
    capture = tmp_path / "capture"
    trade_ids = _capture(capture)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "sim-key.pem", tmp_path / "sim-key.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    truth = tmp_path / "truth.ndjson"
    server = subprocess.Popen(
        [
            sys.executable, "-m", "kalshi_tape", "serve",
            "--public-key", f"*={public}",
            "--switch", "empty_side=empty_list",  # kalshi-sdk requires both snapshot keys
            "--from", str(capture), "--speed", "max", "--reproduce-disconnects",
            "--truth", str(truth),
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")
        run = subprocess.run(
            [venv / "bin" / "python", "-c", _SCRIPT, url, str(private), json.dumps(MARKETS),
             str(len(trade_ids))],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "reconnecting" in result["states"]
    assert result["trades"] == trade_ids  # none lost across the reconnect, none twice
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    closes = [(t["conn"], t["fault"], t.get("code")) for t in lines if t["kind"] == "fault"]
    assert closes == [(1, "close", 1011)]
    final = {t["market_ticker"]: t for t in lines if t["kind"] == "book"}
    for market in MARKETS:
        sdk = result["books"][market]
        assert _levels(sdk["yes"]) == _levels(final[market]["yes"]), market
        assert _levels(sdk["no"]) == _levels(final[market]["no"]), market
