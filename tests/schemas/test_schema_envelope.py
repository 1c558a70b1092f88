"""The cheap envelope decode agrees with the full models on every corpus frame."""

from __future__ import annotations

import pytest

from schemas.envelope import ack_channel_sid, decode_envelope, encode_json
from schemas.errors import EnvelopeError
from schemas.parse import parse_command, parse_message
from tests.schemas.corpus import FRAMES, Case, load_cases

CASES = load_cases()


def _market(message: object) -> str | None:
    msg = getattr(message, "msg", None)
    ticker = getattr(msg, "market_ticker", None)
    return ticker if ticker is not None else getattr(msg, "ticker", None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_envelope_of_a_corpus_frame_matches_its_model(case: Case) -> None:
    env = decode_envelope(case.raw.encode())
    message = parse_message(case.raw)
    assert env.type == message.type == case.file
    assert (env.sid, env.seq, env.id) == (message.sid, message.seq, message.id)
    assert env.market_ticker == _market(message)
    assert env.is_command is False


def test_user_order_market_comes_from_its_ticker_field() -> None:
    case = next(c for c in CASES if c.id == "user_order:current")
    assert decode_envelope(case.raw).market_ticker == "KXHIGHNY-26NOV21-B45.5"


def test_list_subscriptions_reply_has_no_market() -> None:
    case = next(c for c in CASES if c.id == "ok:list_subscriptions_array")
    env = decode_envelope(case.raw)
    assert (env.type, env.id, env.market_ticker) == ("ok", 10, None)


@pytest.mark.parametrize("case", load_cases(FRAMES / "commands"), ids=lambda c: c.name)
def test_envelope_of_a_command_is_its_cmd_and_id(case: Case) -> None:
    env = decode_envelope(case.raw)
    command = parse_command(case.raw)
    assert env.is_command is True
    assert (env.type, env.id, env.sid, env.market_ticker) == (command.cmd, command.id, None, None)


def test_ack_channel_sid_reads_the_sid_inside_msg() -> None:
    for case in CASES:
        ack = ack_channel_sid(case.raw)
        if case.file == "subscribed":
            message = parse_message(case.raw)
            assert ack == (message.msg.channel, message.msg.sid)  # type: ignore[union-attr]
        else:
            assert ack is None, case.id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{bad", "not JSON"), (b"[1]", "invalid envelope"), (b'{"sid":1}', "no `type`")],
)
def test_a_frame_that_is_not_an_object_with_a_type_raises_envelope_error(
    raw: bytes, reason: str
) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode_envelope(raw)


def test_string_numbers_in_the_envelope_are_coerced() -> None:
    env = decode_envelope(b'{"type":"orderbook_delta","sid":"2","seq":"1042","msg":{}}')
    assert (env.sid, env.seq) == (2, 1042)


def test_encode_json_is_compact() -> None:
    assert encode_json({"id": 1, "cmd": "list_subscriptions"}) == (
        b'{"id":1,"cmd":"list_subscriptions"}'
    )
