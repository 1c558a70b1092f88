"""Client commands parse with every parameter of docs/protocol.md section 6 and round-trip."""

from __future__ import annotations

import pytest

from schemas.channels import COMMANDS
from schemas.messages import Subscribe, UpdateSubscription
from schemas.parse import COMMAND_MODELS, parse_command
from tests.schemas.corpus import FRAMES, Case, check_value, load_cases, resolve

CASES = load_cases(FRAMES / "commands")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_command_parses_to_its_model_with_the_expected_params(case: Case) -> None:
    command = parse_command(case.raw)
    for path, expected in case.expect.items():
        check_value(resolve(command, path), expected, f"{case.name} {path}")
    assert isinstance(command, COMMAND_MODELS[command.cmd])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_command_serialised_without_nones_parses_back_to_an_equal_model(case: Case) -> None:
    command = parse_command(case.raw)
    again = parse_command(command.model_dump_json(exclude_none=True))
    assert again == command


def test_every_command_has_a_model() -> None:
    assert set(COMMAND_MODELS) == set(COMMANDS)


def test_every_update_action_appears_in_both_sid_forms() -> None:
    actions = {}
    for case in CASES:
        command = parse_command(case.raw)
        if isinstance(command, UpdateSubscription):
            form = "sid" if command.params.sid is not None else "sids"
            actions.setdefault(command.params.action, set()).add(form)
    assert len(actions) == 9
    assert set().union(*actions.values()) == {"sid", "sids"}


def test_subscribe_params_cover_section_6() -> None:
    section_6 = {
        "channels",
        "market_ticker",
        "market_tickers",
        "market_id",
        "market_ids",
        "send_initial_snapshot",
        "skip_ticker_ack",
        "use_yes_price",
        "user_filter",
        "shard_factor",
        "shard_key",
        "index_ids",
        "underlying_tickers",
    }
    fields = Subscribe.model_fields["params"].annotation.model_fields  # type: ignore[union-attr]
    assert section_6 <= set(fields)
    seen = set()
    for case in CASES:
        command = parse_command(case.raw)
        if isinstance(command, Subscribe):
            seen |= {k for k, v in command.params if v is not None}
    assert section_6 <= seen


def test_subscription_sid_is_the_same_for_both_forms() -> None:
    by_sid = parse_command(
        '{"id":1,"cmd":"update_subscription","params":{"sid":4,"action":"indexlist"}}'
    )
    by_sids = parse_command(
        '{"id":1,"cmd":"update_subscription","params":{"sids":[4],"action":"indexlist"}}'
    )
    assert isinstance(by_sid, UpdateSubscription)
    assert isinstance(by_sids, UpdateSubscription)
    assert by_sid.params.subscription_sid == by_sids.params.subscription_sid == 4
