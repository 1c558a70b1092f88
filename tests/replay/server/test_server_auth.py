"""The upgrade's auth check (docs/protocol.md section 2): accept signed, refuse the rest."""

from __future__ import annotations

import time

import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus

from replay.server import Switches
from replay.server.auth import HeaderVerifier
from schemas.errors import ConfigError
from tests.replay.server.conftest import PATH, client, running, sign_headers


async def test_a_correctly_signed_upgrade_is_accepted(
    rsa_key: rsa.RSAPrivateKey, public_pem: str
) -> None:
    async with (
        running(auth="required", public_keys={"test-key": public_pem}) as server,
        websockets.connect(server.url, additional_headers=sign_headers(rsa_key)) as ws,
    ):
        await ws.send('{"id": 1, "cmd": "list_subscriptions"}')
        assert '"type":"ok"' in await ws.recv()


@pytest.mark.parametrize(
    "case",
    ["missing headers", "wrong key id", "stale timestamp", "other path signed", "bad signature"],
)
async def test_a_bad_upgrade_is_refused_with_http_401(
    rsa_key: rsa.RSAPrivateKey, public_pem: str, case: str
) -> None:
    headers: dict[str, str] = {}
    if case == "wrong key id":
        headers = sign_headers(rsa_key, key_id="someone-else")
    elif case == "stale timestamp":
        headers = sign_headers(rsa_key, timestamp_ms=time.time_ns() // 1_000_000 - 120_000)
    elif case == "other path signed":
        headers = sign_headers(rsa_key, path="/trade-api/v2/portfolio/balance")
    elif case == "bad signature":
        headers = sign_headers(rsa_key)
        headers["KALSHI-ACCESS-SIGNATURE"] = headers["KALSHI-ACCESS-SIGNATURE"][::-1]
    async with running(auth="required", public_keys={"test-key": public_pem}) as server:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401


async def test_the_close_4001_switch_accepts_then_closes(
    rsa_key: rsa.RSAPrivateKey, public_pem: str
) -> None:
    switches = Switches(auth_reject="close4001")
    async with (
        running(auth="required", public_keys={"*": public_pem}, switches=switches) as server,
        websockets.connect(server.url) as ws,
    ):
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4001


async def test_the_wildcard_key_id_verifies_any_key_id(
    rsa_key: rsa.RSAPrivateKey, public_pem: str
) -> None:
    async with (
        running(auth="required", public_keys={"*": public_pem}) as server,
        websockets.connect(
            server.url, additional_headers=sign_headers(rsa_key, key_id="anything")
        ) as ws,
    ):
        await ws.send('{"id": 1, "cmd": "list_subscriptions"}')
        assert '"ok"' in await ws.recv()


async def test_public_mode_serves_unsigned_public_channels_and_refuses_private_ones_with_9(
    public_pem: str,
) -> None:
    async with (
        running(auth="public", public_keys={"test-key": public_pem}) as server,
        client(server) as c,
    ):
        await c.subscribe(["ticker", "trade"])
        cid = await c.command(
            "subscribe", {"channels": ["fill", "orderbook_delta"], "market_ticker": "X"}
        )
        errors = await c.replies(cid, 2)
        assert [e["msg"]["code"] for e in errors] == [9, 9]


async def test_another_path_gets_http_404() -> None:
    async with running() as server:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url.replace(PATH, "/trade-api/ws/v1")):
                pass
        assert info.value.response.status_code == 404


def test_the_verifier_checks_freshness_against_the_given_clock(
    rsa_key: rsa.RSAPrivateKey, public_pem: str
) -> None:
    verifier = HeaderVerifier({"k": public_pem}, PATH, freshness_ms=5_000)
    headers = sign_headers(rsa_key, key_id="k", timestamp_ms=1_000_000)
    assert verifier.verify(headers, now_ms=1_004_000).ok
    late = verifier.verify(headers, now_ms=1_006_000)
    assert not late.ok and "freshness" in late.reason


def test_a_key_that_is_not_pem_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"public_keys\[k\]"):
        HeaderVerifier({"k": "not a key"}, PATH, freshness_ms=1000)
