"""Connection checkpoints: the whole derived state of one connection, as data.

Replay seeks to a time T by restoring the latest checkpoint before T and fast-
forwarding silently from there (docs/architecture.md section 7.3). A
checkpoint must therefore restore *exactly* what the engine would hold: every
acknowledged wire subscription of the connection (sid, channel, params, markets),
its sequence watermark, and every book it seeded. Books of one subscription share
one seq counter, so they are checkpointed together, never market by market.

The engine takes a checkpoint only when the connection is quiescent (no subscribe
awaiting its ack, no stashed frame, no resync in flight), so nothing transient is
lost. The record is plain JSON-able data; prices and sizes are decimal strings in
dollars and contracts (the wire's text), whatever the engine holds them in.
"""

from __future__ import annotations

from typing import Any

from schemas.channels import BOOK_CHANNELS, SEQUENCED_CHANNELS
from stream.book import OrderBook
from stream.connections import Connection
from stream.fixed import Units, format_price, format_size, price_units, size_units
from stream.subscriptions import WireSubscription

__all__ = ["VERSION", "checkpoint_record", "is_quiescent", "restore_wires"]

VERSION = 1


def is_quiescent(conn: Connection) -> bool:
    """True when a checkpoint of `conn` would capture everything that matters."""
    group = conn.group
    return (
        not conn.pending
        and not conn.stash
        and group.standby is None
        and not group.retiring
        and all(not w.awaiting_snapshot for w in conn.sids.values())
    )


def _levels(side: dict[Units, Units]) -> list[list[str]]:
    return [[format_price(p), format_size(q)] for p, q in sorted(side.items())]


def _restore_levels(levels: list[list[str]]) -> dict[Units, Units]:
    return {price_units(p): size_units(q) for p, q in levels}


def checkpoint_record(conn: Connection, delivers: list[str] | None = None) -> dict[str, Any]:
    """Everything the engine knows of a connection's subscriptions and books; with
    redundant feeds, `delivers`: the markets whose book is delivered from this
    connection's feed (`stream.arbitration`), so that a seek delivers each market from
    the feed that delivered it live."""
    subs = []
    for sid, wire in sorted(conn.sids.items()):
        subs.append(
            {
                "sid": sid,
                "channel": wire.channel,
                "cmd_id": wire.cmd_id,
                "params": wire.params,
                "markets": None if wire.markets is None else sorted(wire.markets),
                "last_seq": wire.last_seq,
                "use_yes_price": wire.use_yes_price,
                "books": {
                    market: {
                        "seq": book.seq,
                        "clock": book.clock,
                        "market_id": book.market_id,
                        "recv_ns": book.recv_ns,
                        "yes": _levels(book.yes),
                        "no": _levels(book.no),
                    }
                    for market, book in sorted(wire.books.items())
                },
            }
        )
    record: dict[str, Any] = {"version": VERSION, "conn": conn.conn, "subs": subs}
    if delivers is not None:
        record["delivers"] = sorted(delivers)
    return record


def restore_wires(conn: Connection, record: dict[str, Any]) -> list[WireSubscription]:
    """Rebuild a connection's wire subscriptions and books from a checkpoint record.

    Raises:
        ValueError: the record is of an unknown version or malformed.
    """
    if record.get("version") != VERSION:
        raise ValueError(f"checkpoint version {record.get('version')!r} is not {VERSION}")
    wires = []
    for sub in record["subs"]:
        channel = sub["channel"]
        wire = WireSubscription(
            conn=conn.conn,
            channel=channel,
            cmd_id=sub.get("cmd_id"),
            params=dict(sub.get("params") or {}),
            owner=None,
            sequenced=channel in SEQUENCED_CHANNELS,
            is_book=channel in BOOK_CHANNELS,
            sid=int(sub["sid"]),
            last_seq=sub.get("last_seq"),
            markets=None if sub.get("markets") is None else frozenset(sub["markets"]),
            use_yes_price=bool(sub.get("use_yes_price")),
        )
        for market, data in (sub.get("books") or {}).items():
            # Stored in NO-leg prices already: restore without the use_yes_price conversion.
            book = OrderBook(market, conn.conn, wire.sid, use_yes_price=False)
            book.reset(
                _restore_levels(data["yes"]),
                _restore_levels(data["no"]),
                seq=data.get("seq"),
                clock=data.get("clock"),
                recv_ns=int(data.get("recv_ns") or 0),
                market_id=data.get("market_id"),  # absent from older checkpoints
            )
            book.use_yes_price = wire.use_yes_price
            wire.books[market] = book
        conn.sids[wire.sid] = wire  # type: ignore[index]
        wires.append(wire)
    return wires
