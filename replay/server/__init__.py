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
`connection`, `pump` and `app` (the server), `command` (the CLI).
"""

from replay.server.app import SimServer
from replay.server.config import DEFAULT_MIX, DEFAULT_PATH, ServerConfig, Switches
from replay.server.faults import FaultKind, FaultSpec, parse_fault
from replay.server.market import SyntheticMarket
from replay.server.tape import BookView, Tape, TapeEvent
from replay.server.truth import SentFrame, Truth, frame_digest

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_PATH",
    "BookView",
    "FaultKind",
    "FaultSpec",
    "SentFrame",
    "ServerConfig",
    "SimServer",
    "Switches",
    "SyntheticMarket",
    "Tape",
    "TapeEvent",
    "Truth",
    "frame_digest",
    "parse_fault",
]
