"""No header value, signature or key material reaches a log, at any level."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from recorder.link.auth import Credentials
from recorder.link.logfilter import REDACTED, RedactingFilter, install_redaction, redact

from .live_helpers import sim_server, watched_session

pytestmark = pytest.mark.timeout(30)
KEY_ID = "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"


def test_header_values_are_redacted_in_every_written_form() -> None:
    signature = "A" * 40 + "+/b" * 20 + "=="
    for text in (
        f"> KALSHI-ACCESS-SIGNATURE: {signature}",
        f"headers={{'KALSHI-ACCESS-SIGNATURE': '{signature}', 'x': 1}}",
        f'"kalshi-access-signature":"{signature}"',
        # the repr of a raw upgrade request, as the WebSocket client logs it at its lowest level
        repr(f"GET / HTTP/1.1\r\nKALSHI-ACCESS-SIGNATURE: {signature}\r\nHost: h\r\n".encode()),
    ):
        cleaned = redact(text)
        assert signature not in cleaned and REDACTED in cleaned
    assert redact("> KALSHI-ACCESS-KEY: abcd-1234") == f"> KALSHI-ACCESS-KEY: {REDACTED}"
    assert redact("Authorization: Bearer xyz") == f"Authorization: {REDACTED}"


def test_private_keys_long_base64_runs_and_registered_secrets_are_redacted() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----"
    assert "MIIEvQ" not in redact(f"loaded {pem} ok")
    assert redact("x" * 70) == REDACTED
    assert redact("key id abc-123 here", secrets=["abc-123"]) == f"key id {REDACTED} here"
    assert redact("GET /trade-api/ws/v2 HTTP/1.1") == "GET /trade-api/ws/v2 HTTP/1.1"


def test_long_file_paths_are_kept_while_signatures_with_slashes_are_not() -> None:
    path = "/root/.local/state/kalshi-tape/journal/s3/captures-bucket/kalshi/prod-2026/_journal"
    assert len(path) > 64
    assert redact(f"publishing failed; journal {path} holds 3 segments") == (
        f"publishing failed; journal {path} holds 3 segments"
    )
    signature = base64.b64encode(bytes(range(256))).decode()  # slashes and pluses inside
    assert "/" in signature
    assert signature not in redact(f"signature {signature}")


def test_the_filter_rewrites_the_record_and_never_drops_it() -> None:
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "> %s: %s", None, None)
    record.args = ("KALSHI-ACCESS-TIMESTAMP", "1795244476657")
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f"> KALSHI-ACCESS-TIMESTAMP: {REDACTED}"


async def test_a_debug_level_signed_connect_logs_no_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    creds = Credentials.from_file(KEY_ID, path, env={})
    install_redaction()
    caplog.set_level(1)  # every level, the WebSocket client's own below DEBUG included
    async with sim_server(auth="required", public_keys={KEY_ID: public.decode()}) as server:
        watched = watched_session(server, credentials=creds)
        async with watched.session.connect() as session:
            trades = await session.subscribe_trade(raw=True)
            await anext(trades)
    text = "\n".join(r.getMessage() for r in caplog.records)
    # The handshake headers really were logged (the test would catch a leak)...
    assert f"KALSHI-ACCESS-SIGNATURE: {REDACTED}" in text
    assert f"KALSHI-ACCESS-KEY: {REDACTED}" in text
    assert f"KALSHI-ACCESS-TIMESTAMP: {REDACTED}" in text
    # ...and nothing secret is left anywhere.
    assert KEY_ID not in text
    assert "PRIVATE KEY" not in text
    assert not re.search(r"[A-Za-z0-9+/]{64,}", text)
