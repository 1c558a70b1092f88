"""The replay server's truth pieces: books moved by recorded frames, which closes are reactive."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from replay.server.capture_books import CaptureBooks
from replay.server.capture_closes import is_reactive
from schemas.events import Closed


def apply(levels: dict[str, dict[Decimal, Decimal]], events: list[Any]) -> None:
    """Apply synthetic deltas (either wire form) as a client would."""
    for event in events:
        msg = event.payload
        legacy = "price" in msg
        price = Decimal(msg["price"]) / 100 if legacy else Decimal(msg["price_dollars"])
        change = Decimal(msg["delta"] if legacy else msg["delta_fp"])
        side = levels[msg["side"]]
        side[price] = side.get(price, Decimal(0)) + change
        if not side[price]:
            del side[price]


def test_a_recorded_snapshot_becomes_the_deltas_from_the_old_book_to_the_new() -> None:
    books = CaptureBooks()
    first = {"market_ticker": "KX", "market_id": "m1", "clock": 5,
             "yes_dollars_fp": [["0.4000", "10.00"], ["0.4100", "5.00"]]}  # fmt: skip
    client: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}
    apply(client, books.replace(first, 1_000))
    books.apply_delta({"market_ticker": "KX", "clock": 6, "price_dollars": "0.41",
                       "delta_fp": 2, "side": "yes"})  # fmt: skip  # a number, and "0.41"
    client["yes"][Decimal("0.41")] += 2
    second = {
        "market_ticker": "KX",
        "market_id": "m1",
        "clock": 9,
        "yes_dollars_fp": [["0.4100", "7.00"]],
        "no_dollars_fp": [["0.5500", "3.00"]],
    }
    deltas = books.replace(second, 2_000)
    assert [
        (e.payload["side"], e.payload["price_dollars"], e.payload["delta_fp"]) for e in deltas
    ] == [
        ("yes", "0.4000", "-10.00"),
        ("no", "0.5500", "3.00"),
    ]  # the unchanged 0.41 level sends nothing
    assert {e.payload["clock"] for e in deltas} == {9} and deltas[0].payload["ts_ms"] == 2_000
    apply(client, deltas)
    view = books.view("KX")
    assert view.yes == (("0.4100", "7.00"),) and view.no == (("0.5500", "3.00"),)
    assert view.clock == 9 and view.market_id == "m1"
    assert client == {"yes": {Decimal("0.41"): 7}, "no": {Decimal("0.55"): 3}}  # the truth
    assert books.replace(second, 3_000) == []


def test_legacy_snapshots_and_deltas_are_read_in_cents_and_diffed_in_cents() -> None:
    books = CaptureBooks()
    books.replace({"market_ticker": "KX", "market_id": "m", "clock": 1, "yes": [[30, 10]]}, 0)
    books.apply_delta({"market_ticker": "KX", "price": 30, "delta": -4, "side": "yes"})
    assert books.view("KX").yes == (("0.3000", "6.00"),)
    deltas = books.replace({"market_ticker": "KX", "clock": 2, "yes": [[31, 1]]}, 0)
    assert [(e.payload["price"], e.payload["delta"]) for e in deltas] == [(30, -6), (31, 1)]


def test_a_market_without_a_book_yet_has_an_empty_view_with_its_id() -> None:
    books = CaptureBooks()
    books.note_market_id("KX", "m-9")
    view = books.view("KX")
    assert (view.market_id, view.clock, view.yes, view.no) == ("m-9", 0, (), ())
    assert "KX" not in books  # noting an id starts no book


@pytest.mark.parametrize(
    ("detail", "reactive"),
    [
        ({"initiator": "server", "disconnect_reason": "server_closed", "code": 1011}, True),
        ({"initiator": "server", "disconnect_reason": "network_error", "code": 1006}, True),
        ({"initiator": "client", "disconnect_reason": "ping_timeout", "code": 1011}, True),
        ({"initiator": "client", "disconnect_reason": "stale", "code": 1000}, True),
        ({"disconnect_reason": "NETWORK_ERROR", "code": 1006}, True),
        ({"initiator": "client", "disconnect_reason": "scheduled", "code": 1000}, False),
        ({"initiator": "client", "disconnect_reason": "user_requested", "code": 1000}, False),
        ({"initiator": "client", "disconnect_reason": "connection_limit", "code": 1000}, False),
        ({"initiator": "client", "disconnect_reason": "killed", "code": 1006}, False),
        ({"disconnect_reason": "shutdown", "code": 1000}, False),
    ],
)
def test_only_disconnects_that_happened_to_the_recorder_are_reproduced(
    detail: dict[str, Any], reactive: bool
) -> None:
    assert is_reactive(Closed(**detail)) is reactive
