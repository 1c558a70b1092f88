"""Limits: argument, else config, else default; always clamped to hard bounds; immutable."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from recorder.link.limits import LIMIT_SPECS, Limits, resolve_limits
from schemas.errors import ConfigError


def test_every_default_is_the_documented_one_and_lies_inside_its_bounds() -> None:
    limits = resolve_limits()
    assert limits == Limits()
    for spec in LIMIT_SPECS:
        value = getattr(limits, spec.name)
        assert value == spec.default
        assert value == spec.off or spec.minimum <= value <= spec.maximum


def test_every_limit_field_has_a_spec() -> None:
    assert {f.name for f in dataclasses.fields(Limits)} == {s.name for s in LIMIT_SPECS}


def test_an_argument_beats_config_and_config_beats_the_default() -> None:
    limits = resolve_limits({"ping_interval_s": "7.5", "ping_timeout_s": 4}, ping_interval_s=3.0)
    assert limits.ping_interval_s == 3.0
    assert limits.ping_timeout_s == 4.0
    assert limits.close_timeout_s == Limits().close_timeout_s


def test_config_values_outside_the_bounds_are_clamped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "kalshi_tape.recorder.limits"):
        limits = resolve_limits({"reconnect_delay_s": 0.0001, "max_reconnect_attempts": 10**9})
    assert limits.reconnect_delay_s == 0.01
    assert limits.max_reconnect_attempts == 1_000_000
    assert "live.reconnect_delay_s" in caplog.text


def test_constructor_arguments_are_clamped_too() -> None:
    limits = resolve_limits(ping_interval_s=0.0, attempts_per_window=0, max_frame_bytes=10)
    assert limits.ping_interval_s == 0.01
    assert limits.attempts_per_window == 1
    assert limits.max_frame_bytes == 64 * 1024


def test_a_prebuilt_limits_object_is_clamped_when_resolved() -> None:
    unsafe = Limits(ping_timeout_s=0.0)
    assert resolve_limits(base=unsafe).ping_timeout_s == 0.01


def test_a_missing_config_key_falls_back_to_its_default_alone() -> None:
    limits = resolve_limits({"stale_floor_s": 12})
    assert limits.stale_floor_s == 12.0
    assert limits.stale_multiplier == Limits().stale_multiplier


def test_an_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"live\.ping_intervall_s"):
        resolve_limits({"ping_intervall_s": 5})


def test_an_unparsable_value_is_an_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"live\.ping_timeout_s.*'soon' is not a number"):
        resolve_limits({"ping_timeout_s": "soon"})
    with pytest.raises(ConfigError, match=r"argument\.max_reconnect_attempts.*whole number"):
        resolve_limits(max_reconnect_attempts="2.5")
    with pytest.raises(ConfigError, match="not a number"):
        resolve_limits({"ping_timeout_s": True})


def test_zero_disables_the_maximum_connection_age_instead_of_clamping() -> None:
    assert resolve_limits({"max_connection_age_s": 0}).max_connection_age_s == 0.0
    assert resolve_limits({"max_connection_age_s": 0.001}).max_connection_age_s == 0.01


def test_a_backoff_cap_below_the_base_is_lifted_to_the_base() -> None:
    limits = resolve_limits(reconnect_delay_s=5.0, max_reconnect_delay_s=1.0)
    assert limits.max_reconnect_delay_s == 5.0


def test_resolved_limits_are_immutable() -> None:
    limits = resolve_limits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.ping_interval_s = 1.0  # type: ignore[misc]


def test_the_dead_connection_bound_is_interval_plus_timeout_plus_close() -> None:
    limits = resolve_limits(ping_interval_s=1.0, ping_timeout_s=2.0, close_timeout_s=0.5)
    assert limits.dead_connection_bound_s == 3.5
