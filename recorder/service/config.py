"""The recorder's configuration: a TOML file, overridden by command-line flags.

This module owns the shape of `kalshi-tape record`'s configuration, its defaults
(those `--help` shows are written in `recorder.service.defaults`), and the translation
of every validation failure into a `ConfigError` that names the field
(`storage.commit_interval_ms`) and says how to fix it. It reads no environment beyond
what it is handed and starts nothing.

    [connection]
    environment = "prod"            # prod | demo | sim (sim: the simulated exchange); the
                                    # default is prod, which needs key_id and key_file
    url = ""                        # overrides environment (ws:// only on loopback)
    key_id = ""                     # or KALSHI_API_KEY_ID
    key_file = ""                   # or KALSHI_PRIVATE_KEY_PATH; PEM (PKCS#8 or PKCS#1), mode 0600
    passphrase_env = "KALSHI_PRIVATE_KEY_PASSPHRASE"

    [channels]                      # what to record; a list of markets, or "all"
    orderbook_delta = ["KXHIGHNY-26NOV21-B45.5"]
    ticker = "all"
    trade = "all"
    market_lifecycle_v2 = "all"

    [storage]
    root = "data"                   # a local directory or a pyarrow URI (s3://bucket/prefix)
    endpoint_url = ""               # S3-compatible endpoint (default $AWS_ENDPOINT_URL)
    region = ""                     # bucket region (default $AWS_REGION)
    journal_dir = ""                # local disk; default <root>/_journal (s3: ~/.local/state/...)
    commit_interval_ms = 50         # the longest a frame waits for its fdatasync
    segment_max_mb = 64
    segment_max_age_s = 300
    memory_limit_mb = 256           # kept in memory while the disk refuses writes
    checkpoint_interval_s = 60      # connection checkpoints, for fast replay seeks

    [jobs]
    compaction = "15 * * * *"       # cron (UTC); "" turns it off
    retention_days = 0              # 0 keeps everything
    retention = "30 3 * * *"
    reconnect_windows = []          # cron times for planned (make-before-break) rotations
    max_connection_age_s = 0        # 0: no limit
    capture_windows = []            # [{start = "0 13 * * 1-5", end = "0 21 * * 1-5"}]

    [sim]                           # the simulated exchange started by --sim
    markets = 20
    rate = 1000                     # frames/s
    seed = 1
    faults = []                     # e.g. ["close:1011@every=30s"]

    [health]
    status_file = ""                # default <root>/_status.json (local roots)
    status_interval_s = 1.0
    log_interval_s = 60             # a status line in the log this often
    metrics_port = 0                # Prometheus metrics on 127.0.0.1; 0 turns it off
    publish_warn_after_s = 10       # WARNING once publishing has failed this long, repeated
                                    # every log_interval_s while it lasts

    [live]                          # connection limits (see the README's limits table)
    max_reconnect_attempts = 1000000    # a recorder keeps trying; the rate limit still holds
    ping_interval_s = 20
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from recorder.link.limits import resolve_limits
from recorder.service import defaults
from schemas.channels import MARKET_FILTER_CHANNELS, MARKET_FILTER_REQUIRED, WIRE_CHANNELS
from schemas.errors import ConfigError

__all__ = [
    "ChannelsConfig",
    "ConnectionConfig",
    "HealthConfig",
    "JobsConfig",
    "RecorderConfig",
    "SimConfig",
    "StorageConfig",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectionConfig(_Section):
    environment: Literal["prod", "demo", "sim"] = defaults.ENVIRONMENT
    url: str = ""
    key_id: str = ""
    key_file: str = ""
    passphrase_env: str = "KALSHI_PRIVATE_KEY_PASSPHRASE"
    compression: bool = False
    #: Redundant feeds: independent connections, each subscribed to everything
    #: (docs/redundancy.md section 1). `urls`: one per feed (empty: every feed uses the URL).
    feeds: int = Field(1, ge=1, le=8)
    urls: list[str] = []
    local_addresses: list[str] = []  # one per feed: connect from these local IPs

    @field_validator("urls", "local_addresses")
    @classmethod
    def _one_per_feed(cls, value: list[str], info: ValidationInfo) -> list[str]:
        feeds = info.data.get("feeds", 1)
        if value and len(value) != feeds:
            raise ValueError(f"{len(value)} given for {feeds} feed(s): give one per feed")
        return value


class CaptureWindow(_Section):
    start: str
    end: str


class StorageConfig(_Section):
    root: str = defaults.ROOT
    endpoint_url: str = ""
    region: str = ""
    journal_dir: str = ""
    commit_interval_ms: float = Field(50, gt=0, le=1000)
    segment_max_mb: float = Field(64, gt=0, le=1024)
    segment_max_age_s: float = Field(300, gt=0)
    memory_limit_mb: float = Field(256, ge=1)
    checkpoint_interval_s: float = Field(60, ge=0)


class JobsConfig(_Section):
    compaction: str = "15 * * * *"
    retention_days: float = Field(0, ge=0)
    retention: str = "30 3 * * *"
    reconnect_windows: list[str] = []
    max_connection_age_s: float = Field(0, ge=0)
    capture_windows: list[CaptureWindow] = []


class SimConfig(_Section):
    markets: int = Field(defaults.SIM_MARKETS, ge=1, le=10_000)
    rate: float = Field(defaults.SIM_RATE, gt=0, le=1_000_000)
    seed: int = defaults.SIM_SEED
    faults: list[str] = []


class HealthConfig(_Section):
    status_file: str = ""
    status_interval_s: float = Field(1.0, gt=0, le=3600)
    log_interval_s: float = Field(defaults.LOG_INTERVAL_S, gt=0, le=86400)
    metrics_port: int = Field(0, ge=0, le=65535)
    publish_warn_after_s: float = Field(10.0, gt=0, le=86400)


#: The recorder's defaults for the live limits (recorder.link.limits): unlike an interactive
#: client, an always-on capture never gives up reconnecting.
RECORDER_LIVE_DEFAULTS: dict[str, float] = {"max_reconnect_attempts": 1_000_000}


Markets = Literal["all"] | list[str] | bool


class ChannelsConfig(_Section):
    """Markets to record per channel: a list, "all", or true (channels without filters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    orderbook_delta: Markets = False
    ticker: Markets = False
    trade: Markets = False
    fill: Markets = False
    market_positions: Markets = False
    market_lifecycle_v2: Markets = False
    multivariate_market_lifecycle: Markets = False
    communications: Markets = False
    order_group_updates: Markets = False
    user_orders: Markets = False
    cfbenchmarks_value: Markets = False
    cfbenchmarks_value_5hz: Markets = False
    pyth_value: Markets = False
    multivariate: Markets = False

    @field_validator("*")
    @classmethod
    def _no_empty_lists(cls, value: Markets) -> Markets:
        if isinstance(value, list) and not value:
            raise ValueError('an empty list records nothing: give markets, "all", or false')
        return value

    def selected(self) -> dict[str, list[str] | None]:
        """Channel -> markets to record (None: every market, or a channel without filters)."""
        chosen: dict[str, list[str] | None] = {}
        for channel in WIRE_CHANNELS:
            value = getattr(self, channel)
            if value is False:
                continue
            if isinstance(value, list):
                chosen[channel] = value
            else:
                chosen[channel] = None
        return chosen


#: What `kalshi-tape record --sim` records when no channel is configured.
SIM_DEFAULT_CHANNELS: dict[str, Any] = {
    "orderbook_delta": "all",
    "ticker": "all",
    "trade": "all",
    "market_lifecycle_v2": "all",
}


class RecorderConfig(_Section):
    connection: ConnectionConfig = ConnectionConfig()
    channels: ChannelsConfig = ChannelsConfig()
    storage: StorageConfig = StorageConfig()
    jobs: JobsConfig = JobsConfig()
    sim: SimConfig = SimConfig()
    health: HealthConfig = HealthConfig()
    live: dict[str, float] = {}

    def check(self) -> RecorderConfig:
        """Cross-field rules a single field cannot express."""
        chosen = self.channels.selected()
        for channel, markets in chosen.items():
            if markets is not None and channel not in MARKET_FILTER_CHANNELS:
                raise ConfigError(
                    f"channels.{channel}", f"{channel} takes no market filter",
                    'set it to "all" (or true) instead of a list of markets',
                )  # fmt: skip
            kalshi = self.connection.environment != "sim" and not self.connection.url
            if markets is None and channel in MARKET_FILTER_REQUIRED and kalshi:
                raise ConfigError(
                    f"channels.{channel}",
                    f"{channel} needs a list of markets (the exchange answers error 14 "
                    "without one)",
                    'list the market tickers to record, e.g. ["KXHIGHNY-26NOV21-B45.5"]',
                )
        resolve_limits({**RECORDER_LIVE_DEFAULTS, **self.live})  # names the bad [live] key
        if self.storage.journal_dir.startswith(("s3://", "gs://", "hdfs://", "file://")):
            raise ConfigError(
                "storage.journal_dir",
                "the journal must be on local disk (it is fdatasync'd)",
                "give a local directory; only storage.root may be a remote URI",
            )
        return self


_FORMS = {"literal['all']": '"all"', "list[str]": "a list of strings", "bool": "true or false"}


def _error_from(exc: ValidationError, source: str) -> ConfigError:
    errors = exc.errors()
    err = errors[0]
    # A value checked against a union (Markets) fails once per member, and pydantic puts
    # each member's name in the location ("literal['all']", "list[str]"): name the field
    # alone, and say every form it accepts.
    loc = [str(p) for p in err["loc"]]
    cut = next((i for i, p in enumerate(loc) if i and p in _FORMS), None)
    field = ".".join(loc[:cut])
    problem = err["msg"]
    if cut is not None:
        tried = [e for e in errors if [str(p) for p in e["loc"]][:cut] == loc[:cut]]
        forms = ", ".join(_FORMS.get(str(e["loc"][cut]), str(e["loc"][cut])) for e in tried)
        problem = f"{err['input']!r} is none of: {forms}"
    if err["type"] == "extra_forbidden":
        problem = "unknown setting"
        fix = f"remove it or check its spelling in {source} (see `kalshi-tape record --help`)"
    elif err["type"] == "literal_error":
        fix = None
    else:
        fix = f"correct it in {source}"
    return ConfigError(field, problem, fix)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RecorderConfig:
    """Read a TOML config (or none), apply command-line overrides, validate.

    `overrides` maps dotted keys (`storage.root`) to values given on the command line.

    Raises:
        ConfigError: the file is missing or not TOML, or a value is wrong; the message
            names the field and the fix.
    """
    data: dict[str, Any] = {}
    source = "the command line"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except OSError as exc:  # a directory, no permission...
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError("--config", f"{path} is not UTF-8 text (TOML must be)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, f"must be a [{section}] table, not a value",
                              f"correct it in {source}")  # fmt: skip
        table[key] = value
    try:
        config = RecorderConfig.model_validate(data)
    except ValidationError as exc:
        raise _error_from(exc, source) from None
    return config.check()
