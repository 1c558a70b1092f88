"""The simulated exchange's configuration: one frozen value, validated once.

This module owns every knob of the server (address, market size and rates, auth,
keep-alive, the switches that settle the open questions of
docs/protocol.md section 11, faults, truth output, the send buffer bound) and their
validation. It knows nothing of sockets or of how a market is generated; the other
modules read these values.

Each open question of docs/protocol.md section 11 is a field of `Switches`
with a documented default, so that a real capture settles a question by changing
a default only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from replay.server.faults import FaultSpec
from schemas.errors import ConfigError

__all__ = ["DEFAULT_MIX", "DEFAULT_PATH", "ServerConfig", "Switches"]

#: The one WebSocket path Kalshi serves (docs/protocol.md section 1).
DEFAULT_PATH = "/trade-api/ws/v2"

#: Share of the total frame rate per market action. Most of the traffic is book
#: deltas, as on the real feed (the synthetic mix of docs/performance.md section 1: 70% deltas, 20%
#: ticker, 8% trade). A trade action emits a trade, a delta and a ticker.
DEFAULT_MIX: Mapping[str, float] = MappingProxyType(
    {
        "delta": 0.80,
        "ticker": 0.10,
        "trade": 0.06,
        "private": 0.015,
        "communications": 0.01,
        "order_group": 0.005,
        "lifecycle": 0.003,
        "fee": 0.002,
        "multivariate": 0.004,
    }
)


@dataclass(frozen=True)
class Switches:
    """Behaviours the spec leaves open (docs/protocol.md section 11), and compatibility.

    Attributes:
        auth_reject: Q1, how a bad or missing signature is refused: `"http401"` answers
            the upgrade with HTTP 401 (default, as kalshi-sdk's own test server does);
            `"close4001"` accepts the upgrade and closes at once with code 4001.
        control_seq: Q2, whether `ok`, `unsubscribed` and `error` replies consume a seq
            number of their subscription. `"peek"` (default): they carry the last seq
            sent on the sid and do not advance it; `"consume"`: they take the next one.
        first_seq: Q3, the seq of the first frame of a subscription (default 1).
        snapshot_seq: Q3, the seqs of the snapshots of a multi-market subscribe:
            `"consecutive"` (default, one seq per snapshot) or `"shared"` (one seq for
            the whole batch).
        orderbook_without_tickers: Q4, `orderbook_delta` with no market: `"error"`
            answers error 14 (default, the spec); `"all"` serves every market.
        filter_on_unfiltered: Q4, market filters on a channel that takes none
            (`market_lifecycle_v2`, `communications`...): `"ignore"` (default) or
            `"error"` (error 11).
        unknown_params: Q4, a `params` key the spec does not list: `"ignore"`
            (default) or `"error"` (error 11).
        ping_interval_s: Q5, server ping cadence (default 10 s; 0 disables).
        ping_payload: Q5, server ping payload (default `b"heartbeat"`).
        max_client_frame_bytes: Q5, the largest command frame accepted (default
            1 MiB; a larger one closes with 1009). Server frames are never split: a
            snapshot is one frame whatever its size.
        empty_side: an empty side of a snapshot: `"omit"` leaves the key out (default,
            the spec); `"empty_list"` sends `[]` (kalshi-sdk requires both keys).
        wire: `"current"` (dollar strings, fp counts; default) or `"legacy"` (integer
            cents and counts, the pre-2026 form) for the book, ticker and trade frames.
        unknown_markets: a ticker the exchange does not list: `"ignore"` (default:
            subscribed, nothing flows) or `"error"` (error 11 naming the tickers).
        max_markets_per_subscription: error 26 beyond this many markets (None: no limit).
        overflow: what a full send buffer does: `"close"` (default: close 1008 and
            drop the connection) or `"error25"` (end the subscriptions with error 25,
            keep the connection, discard their queued frames).
    """

    auth_reject: Literal["http401", "close4001"] = "http401"
    control_seq: Literal["peek", "consume"] = "peek"
    first_seq: int = 1
    snapshot_seq: Literal["consecutive", "shared"] = "consecutive"
    orderbook_without_tickers: Literal["error", "all"] = "error"
    filter_on_unfiltered: Literal["ignore", "error"] = "ignore"
    unknown_params: Literal["ignore", "error"] = "ignore"
    ping_interval_s: float = 10.0
    ping_payload: bytes = b"heartbeat"
    max_client_frame_bytes: int = 1 << 20
    empty_side: Literal["omit", "empty_list"] = "omit"
    wire: Literal["current", "legacy"] = "current"
    unknown_markets: Literal["ignore", "error"] = "ignore"
    max_markets_per_subscription: int | None = None
    overflow: Literal["close", "error25"] = "close"

    def __post_init__(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "auth_reject": ("http401", "close4001"),
            "control_seq": ("peek", "consume"),
            "snapshot_seq": ("consecutive", "shared"),
            "orderbook_without_tickers": ("error", "all"),
            "filter_on_unfiltered": ("ignore", "error"),
            "unknown_params": ("ignore", "error"),
            "empty_side": ("omit", "empty_list"),
            "wire": ("current", "legacy"),
            "unknown_markets": ("ignore", "error"),
            "overflow": ("close", "error25"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"switches.{name}", f"{value!r} is not allowed", f"use {allowed}")
        if self.first_seq < 0:
            raise ConfigError("switches.first_seq", "must be >= 0")
        if self.ping_interval_s < 0:
            raise ConfigError("switches.ping_interval_s", "must be >= 0", "0 disables pings")
        if self.max_client_frame_bytes < 1024:
            raise ConfigError("switches.max_client_frame_bytes", "must be >= 1024")
        if self.max_markets_per_subscription is not None and self.max_markets_per_subscription < 1:
            raise ConfigError("switches.max_markets_per_subscription", "must be >= 1 or None")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the simulated exchange needs; build it once, share it read-only.

    Attributes:
        host: loopback address to bind (default 127.0.0.1).
        port: TCP port; 0 lets the OS choose (read the URL from `SimServer.url`).
        path: the WebSocket path; other paths get HTTP 404.
        seed: seeds the synthetic market; same seed and commands, same events.
        markets: number of active markets (event and series style tickers).
        rate_fps: total market frames per second (before fan-out), split by `mix`.
            0 stops market activity (index feeds still tick).
        mix: share of the rate per action (keys of `DEFAULT_MIX`).
        index_hz: ticks per second of each cfbenchmarks and pyth value (about 1 Hz);
            the 5 Hz channel ticks at 5 x this.
        settle_every_s: on average one market is determined and settled (and a new
            one listed in its slot) this often, in exchange time; 0 disables.
        depth_min, depth_max: levels per side the books keep (both ladders).
        one_sided_markets: this many markets (the last ones) never get NO-side
            liquidity, so their snapshots are one-sided (see `Switches.empty_side`).
        epoch_ms: the exchange clock's start (Unix ms) for payload timestamps; None
            takes the wall clock at start. Fixing it makes frames byte-identical
            across runs of the same seed.
        auth: `"required"` (default: the three headers must verify,
            docs/protocol.md section 2), `"public"` (unsigned connections allowed, private channels
            answer error 9), or `"open"` (no check, every channel allowed; tests).
        public_keys: key id -> PEM public key; the id `"*"` verifies any key id.
        freshness_s: how far the signed timestamp may be from the server clock.
        user_id: the simulated user whose private channels (fill, user_orders,
            market_positions, order_group_updates, communications) are served.
        switches: the open-question and compatibility switches.
        faults: fault specs applied to every connection by schedule.
        truth_path: write the truth (frames sent per connection, faults, true books)
            as NDJSON here; None writes no file.
        record_truth: keep the truth in memory for in-process tests.
        truth_books_every_s: also write every true book to the truth file this often.
        send_buffer_frames: bound of each connection's send queue; a client whose
            queue fills is disconnected (or its subscriptions ended, see overflow).
        close_timeout_s: how long a server close waits for the client's close frame.
    """

    host: str = "127.0.0.1"
    port: int = 0
    path: str = DEFAULT_PATH
    seed: int = 0
    markets: int = 20
    rate_fps: float = 1000.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    index_hz: float = 1.0
    settle_every_s: float = 60.0
    depth_min: int = 10
    depth_max: int = 40
    one_sided_markets: int = 0
    epoch_ms: int | None = None
    auth: Literal["required", "public", "open"] = "required"
    public_keys: Mapping[str, str] = field(default_factory=dict)
    freshness_s: float = 30.0
    user_id: str = "a1b2c3d4-0000-4000-8000-00000000a11c"
    switches: Switches = field(default_factory=Switches)
    faults: tuple[FaultSpec, ...] = ()
    truth_path: Path | None = None
    record_truth: bool = False
    truth_books_every_s: float | None = None
    send_buffer_frames: int = 20_000
    close_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"{self.port} is not a TCP port", "use 0 to 65535")
        if not self.path.startswith("/"):
            raise ConfigError("path", "must start with '/'")
        if not 1 <= self.markets <= 10_000:
            raise ConfigError("markets", f"{self.markets} is out of range", "use 1 to 10000")
        if self.rate_fps < 0 or self.rate_fps > 1_000_000:
            raise ConfigError("rate_fps", f"{self.rate_fps} is out of range", "use 0 to 1e6")
        unknown = set(self.mix) - set(DEFAULT_MIX)
        if unknown:
            raise ConfigError(
                "mix", f"unknown actions {sorted(unknown)}", f"use {sorted(DEFAULT_MIX)}"
            )
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ConfigError("mix", "weights must be >= 0 with a positive sum")
        if self.settle_every_s < 0:
            raise ConfigError("settle_every_s", "must be >= 0", "0 disables settlement")
        if self.index_hz < 0:
            raise ConfigError("index_hz", "must be >= 0")
        if not 1 <= self.depth_min <= self.depth_max <= 98:
            raise ConfigError("depth_min/depth_max", "need 1 <= depth_min <= depth_max <= 98")
        if not 0 <= self.one_sided_markets <= self.markets:
            raise ConfigError("one_sided_markets", "must be between 0 and markets")
        if self.auth not in ("required", "public", "open"):
            raise ConfigError(
                "auth", f"{self.auth!r} is not a mode", "use required, public or open"
            )
        if self.auth == "required" and not self.public_keys:
            raise ConfigError(
                "public_keys", "auth 'required' needs at least one public key", "or use auth='open'"
            )
        if self.freshness_s <= 0:
            raise ConfigError("freshness_s", "must be > 0")
        if self.send_buffer_frames < 16:
            raise ConfigError("send_buffer_frames", "must be >= 16")
        if self.truth_books_every_s is not None and self.truth_books_every_s <= 0:
            raise ConfigError("truth_books_every_s", "must be > 0 or None")
        if self.close_timeout_s <= 0:
            raise ConfigError("close_timeout_s", "must be > 0")

    @property
    def truth_enabled(self) -> bool:
        """True when anything records the truth (a file or memory)."""
        return self.record_truth or self.truth_path is not None
