"""Verification of the three Kalshi auth headers on the WebSocket upgrade.

This module owns the server side of docs/protocol.md section 2: the signed message is
`timestamp_ms + "GET" + path`, the signature RSA-PSS with SHA-256, MGF1-SHA-256
and a 32-byte salt, base64 with padding; the timestamp must be within a freshness
window of the server's clock, which the caller passes in (no clock is read here).
It knows nothing of how a rejection is answered (HTTP 401 or close 4001: the
server's switch).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from schemas.errors import ConfigError

__all__ = ["KEY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "AuthResult", "HeaderVerifier"]

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@dataclass(frozen=True)
class AuthResult:
    """The verdict on one upgrade request.

    Attributes:
        ok: the headers verify.
        key_id: the key id presented (None when the header is missing).
        reason: why it failed ("" when ok); never contains the signature.
    """

    ok: bool
    key_id: str | None
    reason: str = ""


class HeaderVerifier:
    """Checks `KALSHI-ACCESS-*` headers against configured public keys.

    Args:
        public_keys: key id -> PEM public key (an RSA key); the id "*" verifies any
            key id (handy for a single throwaway key).
        path: the signed path, `/trade-api/ws/v2`.
        freshness_ms: the largest allowed |server time - signed timestamp|.
    """

    def __init__(self, public_keys: Mapping[str, str], path: str, freshness_ms: int) -> None:
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        for key_id, pem in public_keys.items():
            try:
                key = serialization.load_pem_public_key(pem.encode())
            except ValueError as exc:
                raise ConfigError(
                    f"public_keys[{key_id}]", f"not a PEM public key ({exc})"
                ) from None
            if not isinstance(key, rsa.RSAPublicKey):
                raise ConfigError(f"public_keys[{key_id}]", "not an RSA key")
            self._keys[key_id] = key
        self._path = path
        self._freshness_ms = freshness_ms

    def verify(self, headers: Mapping[str, str], now_ms: int) -> AuthResult:
        """Verify the headers of one upgrade request at server time `now_ms`.

        `headers` must look up names case-insensitively (websockets' `Headers` does).
        """
        key_id = headers.get(KEY_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not key_id or not stamp or not signature:
            return AuthResult(False, key_id, "missing KALSHI-ACCESS-* header")
        key = self._keys.get(key_id) or self._keys.get("*")
        if key is None:
            return AuthResult(False, key_id, "unknown key id")
        if not stamp.isdigit():
            return AuthResult(False, key_id, "timestamp is not milliseconds")
        if abs(now_ms - int(stamp)) > self._freshness_ms:
            return AuthResult(False, key_id, "timestamp outside the freshness window")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return AuthResult(False, key_id, "signature is not base64")
        message = f"{stamp}GET{self._path}".encode()
        try:
            key.verify(raw, message, _PSS, hashes.SHA256())
        except InvalidSignature:
            return AuthResult(False, key_id, "bad signature")
        return AuthResult(True, key_id)
