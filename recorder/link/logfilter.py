"""A logging filter that keeps credentials out of every log line.

This module owns redaction. The websockets library logs each handshake header at
DEBUG (`> KALSHI-ACCESS-SIGNATURE: ...`), so a DEBUG log of a connect would leak
the key id and a valid signature. `RedactingFilter` rewrites any record whose
text holds a `KALSHI-ACCESS-*`, `Authorization` or `Cookie` value, a PEM private
key, a long base64 run (signatures, key bodies) or a registered secret (the key
id), before any handler sees it. `install_redaction()` puts one filter on the
websockets loggers and on the logger the live client hands to websockets
(`WS_LOGGER_NAME`); a logger's filters only see records logged on that very
logger, so each logger that may carry headers gets it. It knows nothing else.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Final

__all__ = ["REDACTED", "WS_LOGGER_NAME", "RedactingFilter", "install_redaction", "redact"]

REDACTED: Final = "[redacted]"
#: The logger the live client passes to websockets for its connections.
WS_LOGGER_NAME: Final = "kalshi_tape.recorder.ws"
_LOGGERS: Final = (
    WS_LOGGER_NAME,
    "websockets",
    "websockets.client",
    "websockets.server",
    "websockets.protocol",
    "kalshi_tape",
)

# A header name starts a word, or follows an escaped line break (`\r\n` inside the
# repr of a raw request, as picows logs it); its value ends at a quote, a line break
# (real or escaped), a comma or a brace.
_HEADER = re.compile(
    r"(?i)(?:\b|(?<=\\n))(kalshi-access-[a-z-]+|proxy-authorization|authorization|cookie"
    r"|set-cookie)(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,}\\]+)"
)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*-----|$)", re.S)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")


def _unless_path(match: re.Match[str]) -> str:
    """A long run is redacted unless it reads as a file path: short segments between
    many slashes. Base64 holds a slash once in 64 characters on average, so a
    signature (344 characters) never passes; a journal path (a slash every few
    words) always does, and the log keeps saying where the data is."""
    run = match.group(0)
    slashes = run.count("/")
    if slashes >= 3 and slashes * 16 >= len(run) and max(map(len, run.split("/"))) < 48:
        return run
    return REDACTED


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with header values, private keys, long base64 runs and `secrets` replaced."""
    text = _PEM.sub(REDACTED, text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _BASE64_RUN.sub(_unless_path, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites records that carry credentials; never drops a record."""

    def __init__(self) -> None:
        super().__init__("kalshi_tape.redaction")
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add_secret(self, value: str) -> None:
        """Also redact this exact string (a key id) wherever it appears."""
        if len(value) >= 4:
            with self._lock:
                self._secrets = self._secrets | {value}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's problem, not a leak
            return True
        cleaned = redact(message, self._secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER: RedactingFilter | None = None
_INSTALL_LOCK = threading.Lock()


def install_redaction(extra_loggers: Iterable[str] = ()) -> RedactingFilter:
    """Install the one redacting filter on the websockets and kalshi_tape loggers (idempotent)."""
    global _FILTER
    with _INSTALL_LOCK:
        if _FILTER is None:
            _FILTER = RedactingFilter()
        for name in (*_LOGGERS, *extra_loggers):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        return _FILTER
