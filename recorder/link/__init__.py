"""The live client: one Kalshi WebSocket session kept alive, and what it is made of.

`LiveSession` is the Session API (the same as replay's) over live connections. It is
composed of: `connection` (the connection manager: opens links, runs the receive
loop, decides reconnects once through `lifecycle`'s state table), `opener` (one
WebSocket: the signed handshake and how it ended), `sockets` (the socket
implementations), `control` (planned disconnects, rotations, reconnect windows),
`watch` (keep-alive, staleness and age watchdogs), `plumbing` (the sink, the engine's
outputs, error reports), `policies` (pure: close classification, backoff, attempt
limiting), `limits`, `auth` (and `key_env`, the environment variables it reads),
`stats`, `alerts` and `logfilter`. It writes what it sees to a `Sink` and knows
nothing of files.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "LiveSession": "recorder.link.live",
    "PRODUCTION_URL": "recorder.link.live",
    "DEMO_URL": "recorder.link.live",
    "resolve_url": "recorder.link.live",
    "Credentials": "recorder.link.auth",
    "Limits": "recorder.link.limits",
    "LIMIT_SPECS": "recorder.link.limits",
    "resolve_limits": "recorder.link.limits",
    "DisconnectReason": "recorder.link.policies",
    "ReconnectStrategy": "recorder.link.policies",
    "LiveStats": "recorder.link.stats",
    "Sink": "recorder.link.sink",
    "SinkRecord": "recorder.link.sink",
    "MemorySink": "recorder.link.sink",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
