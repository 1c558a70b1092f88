"""The simulated exchange: a Kalshi-protocol WebSocket server with fault injection.

Start it in-process (`SimServer`), from the command line (`kalshi-tape serve`), or
as `python -m replay.server`. It serves a `Tape`: the deterministic synthetic
market, or a recorded capture. Modules: `config` (the frozen settings and the
open-question switches), `faults` (fault specs, syntax and scheduler), `tape` (the
source interface), `market`, `books`, `activity` and `feeds` (the synthetic
exchange), `capture_tape`, `capture_books` and `capture_closes` (a capture as a
tape), `payloads` (wire forms), `params`, `subscriptions` and `protocol`
(commands, sids, seqs, errors; pure), `auth` and `handshake` (the upgrade),
`truth`, `sockets` (our asyncio protocol over websockets' sans-I/O server),
`connection`, `pump` and `app` (the server), `command` (the CLI). The names below load
on first use, so that `kalshi-tape serve --help` (and `command`'s flags) load no
WebSocket or crypto library.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "SimServer": "replay.server.app",
    "DEFAULT_MIX": "replay.server.config",
    "DEFAULT_PATH": "replay.server.config",
    "ServerConfig": "replay.server.config",
    "Switches": "replay.server.config",
    "FaultKind": "replay.server.faults",
    "FaultSpec": "replay.server.faults",
    "parse_fault": "replay.server.faults",
    "SyntheticMarket": "replay.server.market",
    "BookView": "replay.server.tape",
    "Tape": "replay.server.tape",
    "TapeEvent": "replay.server.tape",
    "SentFrame": "replay.server.truth",
    "Truth": "replay.server.truth",
    "frame_digest": "replay.server.truth",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
