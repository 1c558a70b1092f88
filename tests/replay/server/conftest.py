"""Fixtures for the simulated exchange's tests: a server on loopback, a JSON client, a key.

Every test talks to a real `SimServer` on 127.0.0.1 port 0 through a real websockets
client; nothing is mocked. `ExchangeClient` adds the few helpers the tests share
(send a command, read until its reply, apply books).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from replay.server import ServerConfig, SimServer

from ..rebuild import apply_delta, snapshot_levels

PATH = "/trade-api/ws/v2"


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[SimServer]:
    """A SimServer on port 0: open auth, a small quick market unless overridden."""
    values: dict[str, Any] = {
        "auth": "open",
        "markets": 6,
        "rate_fps": 400.0,
        "seed": 11,
        "epoch_ms": 1_790_000_000_000,
        "record_truth": True,
    }
    values.update(overrides)
    async with SimServer(ServerConfig(**values)) as server:
        yield server


class ExchangeClient:
    """A websockets client speaking JSON commands, keeping every frame it reads."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1
        self.frames: list[dict[str, Any]] = []

    async def command(
        self, cmd: str, params: dict[str, Any] | None = None, *, cid: int | None = None
    ) -> int:
        if cid is None:
            cid = self.next_id
            self.next_id += 1
        body: dict[str, Any] = {"id": cid, "cmd": cmd}
        if params is not None:
            body["params"] = params
        await self.ws.send(json.dumps(body))
        return cid

    async def send_raw(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def recv(self, timeout_s: float = 5.0) -> dict[str, Any]:
        raw = await _with_timeout(self.ws.recv(decode=False), timeout_s)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def replies(
        self, cid: int, count: int = 1, timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        """Read until `count` frames carrying id `cid` arrived; return them (others kept)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("id") == cid:
                got.append(frame)
        return got

    async def reply(self, cid: int, timeout_s: float = 5.0) -> dict[str, Any]:
        return (await self.replies(cid, 1, timeout_s))[0]

    async def sync(self) -> dict[str, Any]:
        """Round-trip a list_subscriptions: every frame sent before it has been read."""
        return await self.reply(await self.command("list_subscriptions"))

    async def subscribe(self, channels: list[str], **params: Any) -> list[int]:
        """Subscribe and return the sids of the acks, in channel order."""
        cid = await self.command("subscribe", {"channels": channels, **params})
        acks = await self.replies(cid, len(channels))
        assert all(a["type"] == "subscribed" for a in acks), acks
        return [a["msg"]["sid"] for a in acks]

    def data(self, sid: int | None = None, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames
            if f.get("type") not in ("subscribed", "ok", "error", "unsubscribed")
            and (sid is None or f.get("sid") == sid)
            and (type_ is None or f.get("type") == type_)
        ]


async def _with_timeout(awaitable: Any, timeout_s: float) -> Any:
    import asyncio

    async with asyncio.timeout(timeout_s):
        return await awaitable


@asynccontextmanager
async def client(server: SimServer, **kwargs: Any) -> AsyncIterator[ExchangeClient]:
    kwargs.setdefault("max_size", 16 * 1024 * 1024)
    # A client that stops reading while data flows cannot read the server's close
    # reply until its own queue drains; do not wait websockets' default 10 s for it.
    kwargs.setdefault("close_timeout", 0.5)
    async with websockets.connect(server.url, **kwargs) as ws:
        yield ExchangeClient(ws)


class Book:
    """A client-side book: snapshot then deltas, as docs/protocol.md section 8.1 says."""

    def __init__(self) -> None:
        self.yes: dict[Decimal, Decimal] = {}
        self.no: dict[Decimal, Decimal] = {}
        self.clock = 0

    def snapshot(self, msg: dict[str, Any]) -> None:
        self.yes, self.no = snapshot_levels(msg)
        self.clock = msg["clock"]

    def delta(self, msg: dict[str, Any]) -> None:
        apply_delta(self.yes, self.no, msg)
        self.clock = msg["clock"]

    def same_as(self, truth: dict[str, Any]) -> bool:
        def norm(levels: dict[str, str]) -> dict[Decimal, Decimal]:
            return {Decimal(p): Decimal(q) for p, q in levels.items()}

        return (
            self.yes == norm(truth["yes"])
            and self.no == norm(truth["no"])
            and self.clock == truth["clock"]
        )


def apply_books(frames: list[dict[str, Any]]) -> dict[str, Book]:
    books: dict[str, Book] = {}
    for frame in frames:
        if frame.get("type") == "orderbook_snapshot":
            books.setdefault(frame["msg"]["market_ticker"], Book()).snapshot(frame["msg"])
        elif frame.get("type") == "orderbook_delta":
            books[frame["msg"]["market_ticker"]].delta(frame["msg"])
    return books


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_headers(
    key: rsa.RSAPrivateKey,
    key_id: str = "test-key",
    timestamp_ms: int | None = None,
    path: str = PATH,
) -> dict[str, str]:
    """The three headers, signed as docs/protocol.md section 2 says."""
    stamp = str(timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000)
    signature = key.sign(
        f"{stamp}GET{path}".encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    return {
        "KALSHI-ACCESS-KEY": key_id,
        "KALSHI-ACCESS-TIMESTAMP": stamp,
        "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode(),
    }


Factory = Callable[..., Any]
