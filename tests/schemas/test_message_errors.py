"""Bad frames fail with an error of `schemas.errors` that names the type and the field.

Malformed frames are in tests/fixtures/frames/malformed: each names the expected
error class, the type and the dotted field path. A property test then feeds
mutated corpus frames and random JSON and checks that nothing but our errors leaves
`parse_message` (behaviour 3 needs a malformed frame to be reported, not to crash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import errors
from schemas.parse import parse_command, parse_message
from tests.schemas.corpus import FRAMES, load_cases

MALFORMED = FRAMES / "malformed"


def _load(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


MESSAGE_CASES = _load(MALFORMED / "messages.json")
COMMAND_CASES = _load(MALFORMED / "commands.json")


def _check(case: dict[str, Any], exc: errors.SchemaError) -> None:
    expected = getattr(errors, case["error"])
    assert type(exc) is expected, f"{case['name']}: {type(exc).__name__}: {exc}"
    text = str(exc)
    if case.get("message"):
        assert case["message"] in text, text
    if case["type"] is not None:
        assert isinstance(exc, errors.MessageError)
        assert exc.type == case["type"]
        assert case["type"] in text
    if case.get("path"):
        assert isinstance(exc, errors.MessageValidationError)
        paths = [path for path, _ in exc.errors]
        assert case["path"] in paths, f"{case['name']}: {paths}"
        assert f"{case['type']}.{case['path']}:" in text, text


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=lambda c: c["name"])
def test_malformed_frame_raises_an_error_naming_its_type_and_field(case: dict[str, Any]) -> None:
    with pytest.raises(errors.SchemaError) as info:
        parse_message(case["raw"])
    _check(case, info.value)


@pytest.mark.parametrize("case", COMMAND_CASES, ids=lambda c: c["name"])
def test_malformed_command_raises_an_error_naming_its_cmd_and_field(case: dict[str, Any]) -> None:
    with pytest.raises(errors.SchemaError) as info:
        parse_command(case["raw"])
    _check(case, info.value)


def test_missing_field_error_message_has_the_documented_form() -> None:
    raw = next(c["raw"] for c in MESSAGE_CASES if c["name"] == "missing_required_count_fp")
    with pytest.raises(errors.MessageValidationError) as info:
        parse_message(raw)
    assert str(info.value) == "invalid trade message: trade.msg.count_fp: Field required"
    assert info.value.errors == [("msg.count_fp", "Field required")]


def test_a_current_frame_missing_a_field_reports_it_not_the_legacy_names() -> None:
    raw = next(c["raw"] for c in MESSAGE_CASES if c["name"] == "missing_required_market_id")
    with pytest.raises(errors.MessageValidationError) as info:
        parse_message(raw)
    assert info.value.errors == [("msg.market_id", "Field required")]


def test_a_legacy_frame_with_a_bad_value_reports_the_legacy_field() -> None:
    raw = next(c["raw"] for c in MESSAGE_CASES if c["name"] == "legacy_bad_cents")
    with pytest.raises(errors.MessageValidationError) as info:
        parse_message(raw)
    assert [path for path, _ in info.value.errors] == ["msg.price"]


def test_unknown_type_error_carries_the_type() -> None:
    with pytest.raises(errors.UnknownMessageType) as info:
        parse_message(b'{"type":"rfq_batch_amended","sid":20,"seq":14,"msg":{}}')
    assert info.value.type == "rfq_batch_amended"


# --- property: only our errors ever leave the parser ---------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FRAMES = [json.loads(case.raw) for case in load_cases()]


def _mutate(frame: dict[str, Any], draw_path: list[int], value: Any, drop: bool) -> dict[str, Any]:
    target: Any = frame
    keys: list[Any] = []
    while isinstance(target, dict | list) and target and draw_path:
        index = draw_path.pop() % len(target)
        key = list(target)[index] if isinstance(target, dict) else index
        keys.append((target, key))
        target = target[key]
    if keys:
        parent, key = keys[-1]
        if drop and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = value
    return frame


def _parse_safely(raw: str | bytes) -> None:
    try:
        result = parse_message(raw)
    except errors.SchemaError:
        return
    assert isinstance(result, BaseModel)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(_FRAMES))),
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=5),
    _JSON,
    st.booleans(),
)
# Found by this test in CI (2026-12-07): a legacy fill whose `action` is a list raised
# TypeError (unhashable) from the side mapping instead of a schema error.
@example(index=18, path=[30, 32], value=[], drop=False)
def test_mutated_corpus_frames_raise_only_schema_errors(
    index: int, path: list[int], value: Any, drop: bool
) -> None:
    frame = _mutate(json.loads(json.dumps(_FRAMES[index])), path, value, drop)
    _parse_safely(json.dumps(frame))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | _JSON.map(json.dumps))
def test_random_input_raises_only_schema_errors(raw: bytes | str) -> None:
    _parse_safely(raw)
    try:
        parse_command(raw)
    except errors.SchemaError:
        pass
