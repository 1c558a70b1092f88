"""The exchange's answer to an upgrade request: the path, the handshake faults, the auth check.

This module owns admission. Each upgrade request is one attempt, numbered from 1
(the number the `conn=` fault trigger and the truth use). A request for another
path gets HTTP 404; the handshake faults due on the attempt act next (a slow
handshake waits, a reject answers its status); then the three headers are checked
per `ServerConfig.auth` (docs/protocol.md section 2) and a refusal is answered per
`Switches.auth_reject`: HTTP 401, or accept and close at once with 4001. The
verdict is an `Admission`, which the server carries out on its socket. It knows
nothing of sockets, frames or subscriptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from replay.server.auth import KEY_HEADER, HeaderVerifier
from replay.server.config import ServerConfig
from replay.server.faults import FaultKind, FaultSpec, handshake_faults
from replay.server.truth import Truth

__all__ = ["Admission", "Gate"]


@dataclass(frozen=True, slots=True)
class Admission:
    """What the exchange answers one upgrade attempt.

    Attributes:
        conn_no: the attempt's number, from 1.
        tag: the URL's `tag=` query parameter (faults may target it), or None.
        status: refuse the upgrade with this HTTP status; None accepts it.
        authenticated: the headers verified (or auth is open): private channels allowed.
        close_code: accept, then close at once with this code and `close_reason`
            (open question 1: a refused signature under `auth_reject="close4001"`).
    """

    conn_no: int
    status: HTTPStatus | None = None
    authenticated: bool = False
    close_code: int | None = None
    tag: str | None = None
    close_reason: str = ""


class Gate:
    """Numbers the upgrade attempts and decides each one.

    Args:
        config: the path, the auth mode and keys, the switches, the seed.
        truth: where handshake faults and refused signatures are recorded, or None.
    """

    def __init__(self, config: ServerConfig, truth: Truth | None) -> None:
        self._config = config
        self._truth = truth
        self._rng = random.Random(config.seed * 31 + 7)
        self._verifier: HeaderVerifier | None = None
        if config.auth != "open" and config.public_keys:
            self._verifier = HeaderVerifier(
                config.public_keys, config.path, int(config.freshness_s * 1000)
            )
        self._attempts = 0

    async def admit(
        self, path: str, headers: Mapping[str, str], faults: tuple[FaultSpec, ...]
    ) -> Admission:
        """Decide one upgrade request for `path` with `headers` (looked up without case)."""
        self._attempts += 1
        conn_no = self._attempts
        url = urlsplit(path)
        if url.path != self._config.path:
            return Admission(conn_no, HTTPStatus.NOT_FOUND)
        tag = next(iter(parse_qs(url.query).get("tag", ())), None)
        for spec in handshake_faults(faults, conn_no, self._rng, tag):
            if self._truth is not None:
                self._truth.fault(
                    conn_no, spec.kind.value, status=spec.status, duration_s=spec.duration_s
                )
            if spec.kind is FaultKind.SLOW_HANDSHAKE:
                await asyncio.sleep(spec.duration_s or 0.0)
            elif spec.kind is FaultKind.REJECT:
                assert spec.status is not None
                return Admission(conn_no, HTTPStatus(spec.status), tag=tag)
        return dataclasses.replace(self._authenticate(headers, conn_no), tag=tag)

    def _authenticate(self, headers: Mapping[str, str], conn_no: int) -> Admission:
        mode = self._config.auth
        if mode == "open":
            return Admission(conn_no, authenticated=True)
        if mode == "public" and KEY_HEADER not in headers:
            return Admission(conn_no)  # an unsigned public connection: private channels answer 9
        verifier = self._verifier
        result = verifier.verify(headers, time.time_ns() // 1_000_000) if verifier else None
        if result is not None and result.ok:
            return Admission(conn_no, authenticated=True)
        if self._truth is not None:
            reason = result.reason if result else "no keys"
            self._truth.connection(conn_no, "auth_failed", reason=reason)
        if self._config.switches.auth_reject == "close4001":
            return Admission(conn_no, close_code=4001, close_reason="authentication failed")
        return Admission(conn_no, HTTPStatus.UNAUTHORIZED)
