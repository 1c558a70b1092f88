"""The live client's tunable limits: defaults, hard bounds, and their resolution.

This module owns every number the connection manager reads (timeouts, keep-alive,
backoff, the attempt rate limit, staleness, connection age, policy polling,
alerts, the frame size limit) and one rule for all of them: a value comes from a
constructor argument if given, else from the config mapping, else the default;
whichever it is, it is clamped to the field's hard bounds (a warning names the
field), so no caller can configure a reconnect storm or a zero timeout. The hard
minimum of durations is 0.01 s so tests run in milliseconds. Unknown keys and
unparsable values are errors that name the field. The result is immutable.
It knows nothing of sockets or of the engine.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas.errors import ConfigError

__all__ = ["LIMIT_SPECS", "LimitSpec", "Limits", "resolve_limits"]

log = logging.getLogger("kalshi_tape.recorder.limits")

MIB: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Resolved limits (see LIMIT_SPECS for meanings and bounds). Build with `resolve_limits`.

    The defaults written here are the only ones: `LimitSpec.default`, the README's
    table and the error messages read them from this class."""

    open_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 10.0
    close_timeout_s: float = 3.0
    max_frame_bytes: int = 16 * MIB
    reconnect_delay_s: float = 1.0
    max_reconnect_delay_s: float = 60.0
    max_reconnect_attempts: int = 10
    attempts_per_window: int = 10
    attempt_window_s: float = 60.0
    stable_connection_s: float = 60.0
    server_unavailable_delay_s: float = 30.0
    stale_floor_s: float = 30.0
    stale_multiplier: float = 10.0
    stale_min_observations: int = 20
    stale_check_interval_s: float = 1.0
    max_connection_age_s: float = 0.0
    disconnect_margin_s: float = 300.0
    disconnect_check_interval_s: float = 10.0
    reconnect_check_interval_s: float = 5.0
    disconnect_alert_interval_s: float = 300.0
    tick_interval_s: float = 0.1

    @property
    def dead_connection_bound_s(self) -> float:
        """The longest a dead connection can go unnoticed: ping interval + timeout + close."""
        return self.ping_interval_s + self.ping_timeout_s + self.close_timeout_s


#: Each limit's default, read from `Limits` (the one place defaults are written).
_DEFAULTS: Final[dict[str, float | int]] = {
    f.name: f.default for f in dataclasses.fields(Limits) if isinstance(f.default, int | float)
}


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit: its hard bounds and meaning (its default is `Limits`'). `off` is a value
    that disables it."""

    name: str
    minimum: float | int
    maximum: float | int
    doc: str
    integer: bool = False
    off: float | int | None = None

    @property
    def default(self) -> float | int:
        """The value `Limits` takes when nothing sets this limit."""
        value: float | int = _DEFAULTS[self.name]
        return value


LIMIT_SPECS: Final[tuple[LimitSpec, ...]] = (
    LimitSpec("open_timeout_s", 0.01, 120.0, "TCP + TLS + upgrade must finish within this"),
    LimitSpec("ping_interval_s", 0.01, 300.0, "send a keep-alive ping this often"),
    LimitSpec("ping_timeout_s", 0.01, 300.0, "no pong within this: the connection is dead"),
    LimitSpec("close_timeout_s", 0.01, 60.0, "wait this long for the close handshake"),
    LimitSpec(
        "max_frame_bytes",
        64 * 1024,
        1024 * MIB,
        "largest frame accepted (all-market snapshots exceed 1 MiB)",
        integer=True,
    ),
    LimitSpec("reconnect_delay_s", 0.01, 300.0, "backoff base (fixed delay: the delay)"),
    LimitSpec("max_reconnect_delay_s", 0.01, 3600.0, "backoff cap"),
    LimitSpec(
        "max_reconnect_attempts",
        0,
        1_000_000,
        "attempts since the last stable connection before giving up (0: never retry)",
        integer=True,
    ),
    LimitSpec(
        "attempts_per_window", 1, 1000, "at most this many handshakes per window", integer=True
    ),
    LimitSpec("attempt_window_s", 0.01, 3600.0, "the sliding window of the attempt limit"),
    LimitSpec("stable_connection_s", 0.01, 86400.0, "open this long: the budget resets"),
    LimitSpec("server_unavailable_delay_s", 0.01, 600.0, "wait after 1013, HTTP 429/503"),
    LimitSpec("stale_floor_s", 0.01, 86400.0, "never call a subscription stale sooner"),
    LimitSpec("stale_multiplier", 1.0, 1000.0, "stale after this many mean gaps of silence"),
    LimitSpec(
        "stale_min_observations",
        1,
        1_000_000,
        "gaps a subscription must show before it can be stale",
        integer=True,
    ),
    LimitSpec("stale_check_interval_s", 0.01, 60.0, "how often staleness is judged"),
    LimitSpec(
        "max_connection_age_s",
        0.01,
        30 * 86400.0,
        "rotate before a platform's connection limit (0: no limit)",
        off=0.0,
    ),
    LimitSpec("disconnect_margin_s", 0.0, 86400.0, "rotate this long before that limit"),
    LimitSpec("disconnect_check_interval_s", 0.01, 3600.0, "should_disconnect poll period"),
    LimitSpec("reconnect_check_interval_s", 0.01, 3600.0, "should_reconnect poll period"),
    LimitSpec("disconnect_alert_interval_s", 0.01, 86400.0, "at most one alert this often"),
    LimitSpec("tick_interval_s", 0.01, 1.0, "engine timers (ack, resync, standby) period"),
)

_SPECS: Final = {spec.name: spec for spec in LIMIT_SPECS}


def _parse(spec: LimitSpec, value: Any, where: str) -> float | int:
    field = f"{where}.{spec.name}"
    if isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not a number", f"give a number like {spec.default}")
    if spec.integer:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ConfigError(
                field, f"{value!r} is not a whole number", f"give an integer like {spec.default}"
            ) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            field, f"{value!r} is not a number", f"give seconds like {spec.default}"
        ) from None
    if math.isnan(number):
        raise ConfigError(field, "NaN is not a number")
    return number


def _clamp(spec: LimitSpec, value: float | int, where: str) -> float | int:
    if spec.off is not None and value == spec.off:
        return value
    if value < spec.minimum or value > spec.maximum:
        clamped = min(max(value, spec.minimum), spec.maximum)
        log.warning(
            "%s.%s = %r is outside [%r, %r]; using %r",
            where,
            spec.name,
            value,
            spec.minimum,
            spec.maximum,
            clamped,
        )
        return clamped
    return value


def resolve_limits(
    config: Mapping[str, Any] | None = None,
    *,
    base: Limits | None = None,
    **overrides: float | int | None,
) -> Limits:
    """Resolve the limits: argument, else config, else default; always clamped.

    Args:
        config: a mapping of limit names to values (numbers or numeric strings),
            typically the `[live]` table of a config file. Missing keys take the
            default; unknown keys are an error (a typo must not be ignored).
        base: start from these limits instead of the defaults (clamped too).
        **overrides: limit names as keyword arguments (None means "not given").

    Raises:
        ConfigError: an unknown key, or a value that is not a number, naming the field.
    """
    given = dataclasses.asdict(base) if base is not None else {}
    values = {
        name: _clamp(_SPECS[name], _parse(_SPECS[name], value, "limits"), "limits")
        for name, value in given.items()
    }
    for source, where in ((config or {}, "live"), (overrides, "argument")):
        for name, value in source.items():
            spec = _SPECS.get(name)
            if spec is None:
                raise ConfigError(
                    f"{where}.{name}",
                    "is not a limit of the live client",
                    f"use one of {sorted(_SPECS)}",
                )
            if value is None:
                continue
            values[name] = _clamp(spec, _parse(spec, value, where), where)
    limits = Limits(**values)  # type: ignore[arg-type]
    if limits.max_reconnect_delay_s < limits.reconnect_delay_s:
        # A cap below the base would make every delay the cap: lift it to the base.
        limits = dataclasses.replace(limits, max_reconnect_delay_s=limits.reconnect_delay_s)
    return limits
