"""The typed per-channel views over a capture, as SQL text built from the file listing.

Each typed view reads only the files of its channels (partition pruning by
construction), keeps the inbound frames of its message types, parses `raw` once
with `json_transform` (as VARCHAR leaves, so a number sent where a string is
expected still reads, docs/protocol.md section 7) and casts each field:

* prices `DECIMAL(18,4)` from `*_dollars`, else the legacy integer cents / 100;
* counts `DECIMAL(18,2)` from `*_fp`, else the legacy integer count;
* money `DECIMAL(18,6)` (costs and fees have 6 decimals), index values `DECIMAL(38,8)`;
* times `TIMESTAMPTZ` from each field's documented unit: `ts` int seconds (RFC3339 on
  orderbook deltas; either is accepted), `*_ts_ms` / `ts_ms` int ms, `*_time` RFC3339.

A field that is missing or malformed gives NULL, never an error: one bad frame must
not break a query over millions. Frames whose bytes are not UTF-8 live under
`_unknown` and appear only in `frames`.

This module knows the wire fields (docs/protocol.md section 8 and its legacy table) and
the capture columns; it builds SQL text only, from `replay.sql.build`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from replay.sql.build import (
    INDEX_VALUE,
    Expr,
    boolean,
    count,
    decimal,
    field,
    first,
    integer,
    levels,
    millis,
    money,
    number,
    price,
    rfc3339,
    seconds,
    seconds_or_rfc3339,
    side_from_legacy,
    sql_literal,
    text,
)
from schemas.channels import COMMUNICATIONS_TYPES, Channel

__all__ = [
    "BOOK_SNAPSHOT_LEVELS",
    "DATASETS_DIR",
    "TYPED_VIEWS",
    "TypedView",
    "dataset_view_statements",
    "typed_view_sql",
]


@dataclass(frozen=True, slots=True)
class TypedView:
    """One typed view: its channels, message types and columns."""

    name: str
    channels: tuple[str, ...]
    types: tuple[str, ...]
    columns: tuple[tuple[str, Expr], ...]
    market: bool = True  # expose the frame's market_ticker column
    payload: bool = False  # expose the whole `msg` as JSON (low-volume channels)


def _exchange_time(*exprs: Expr) -> tuple[str, Expr]:
    return ("exchange_time", first(*exprs))


TRADES = TypedView(
    "trades",
    (Channel.TRADE,),
    ("trade",),
    (
        ("trade_id", text("trade_id")),
        ("yes_price_dollars", price("yes_price_dollars", "yes_price")),
        ("no_price_dollars", price("no_price_dollars", "no_price")),
        ("count", count("count_fp", "count")),
        ("taker_outcome_side", side_from_legacy("taker_outcome_side", "taker_side", "yes", "no")),
        ("taker_book_side", side_from_legacy("taker_book_side", "taker_side", "bid", "ask")),
        ("taker_side", text("taker_side")),
        ("is_block_trade", boolean("is_block_trade")),
        _exchange_time(millis("ts_ms"), seconds_or_rfc3339("ts")),
    ),
)

TICKERS = TypedView(
    "tickers",
    (Channel.TICKER,),
    ("ticker",),
    (
        ("market_id", text("market_id")),
        ("price_dollars", price("price_dollars", "price")),
        ("yes_bid_dollars", price("yes_bid_dollars", "yes_bid")),
        ("yes_ask_dollars", price("yes_ask_dollars", "yes_ask")),
        ("yes_bid_size", count("yes_bid_size_fp")),
        ("yes_ask_size", count("yes_ask_size_fp")),
        ("last_trade_size", count("last_trade_size_fp")),
        ("volume", count("volume_fp", "volume")),
        ("open_interest", count("open_interest_fp", "open_interest")),
        ("dollar_volume", integer("dollar_volume")),
        ("dollar_open_interest", integer("dollar_open_interest")),
        _exchange_time(millis("ts_ms"), seconds_or_rfc3339("ts"), rfc3339("time")),
    ),
)

BOOK_DELTAS = TypedView(
    "book_deltas",
    (Channel.ORDERBOOK_DELTA,),
    ("orderbook_delta",),
    (
        ("market_id", text("market_id")),
        ("clock", integer("clock")),
        ("side", text("side")),
        ("price_dollars", price("price_dollars", "price")),
        ("delta", count("delta_fp", "delta")),
        ("client_order_id", text("client_order_id")),
        ("subaccount", integer("subaccount")),
        _exchange_time(millis("ts_ms"), seconds_or_rfc3339("ts")),
    ),
)

BOOK_SNAPSHOTS = TypedView(
    "book_snapshots",
    (Channel.ORDERBOOK_DELTA,),
    ("orderbook_snapshot",),
    (
        ("market_id", text("market_id")),
        ("clock", integer("clock")),
        ("request_id", integer("$id")),  # set when the snapshot answers get_snapshot
        ("yes_levels", levels("yes_dollars_fp", "yes")),
        ("no_levels", levels("no_dollars_fp", "no")),
    ),
)

LIFECYCLE = TypedView(
    "lifecycle",
    (Channel.MARKET_LIFECYCLE_V2, Channel.MULTIVARIATE_MARKET_LIFECYCLE),
    ("market_lifecycle_v2", "multivariate_market_lifecycle", "event_lifecycle", "event_fee_update"),
    (
        ("event_type", text("event_type")),
        ("event_ticker", first(text("event_ticker"), text("additional_metadata.event_ticker"))),
        ("series_ticker", text("series_ticker")),
        ("title", first(text("title"), text("additional_metadata.title"))),
        ("result", text("result")),
        ("settlement_value_dollars", price("settlement_value")),
        ("is_deactivated", boolean("is_deactivated")),
        ("exchange_index", integer("exchange_index")),
        ("open_time", seconds("open_ts")),
        ("close_time", seconds("close_ts")),
        ("determination_time", seconds("determination_ts")),
        ("settled_time", seconds("settled_ts")),
        ("price_level_structure", text("price_level_structure")),
        ("fee_type_override", text("fee_type_override")),
        ("fee_multiplier_override", number("fee_multiplier_override")),
    ),
    payload=True,
)

FILLS = TypedView(
    "fills",
    (Channel.FILL,),
    ("fill",),
    (
        ("trade_id", text("trade_id")),
        ("order_id", text("order_id")),
        ("client_order_id", text("client_order_id")),
        ("is_taker", boolean("is_taker")),
        ("side", text("side")),
        ("action", text("action")),
        ("outcome_side", text("outcome_side")),
        ("book_side", text("book_side")),
        ("purchased_side", text("purchased_side")),
        ("yes_price_dollars", price("yes_price_dollars", "yes_price")),
        ("count", count("count_fp", "count")),
        ("fee_cost_dollars", money("fee_cost")),  # 6-dp dollars without the suffix (8.4)
        ("post_position", count("post_position_fp", "post_position")),
        ("exchange_index", integer("exchange_index")),
        ("subaccount", integer("subaccount")),
        _exchange_time(millis("ts_ms"), seconds_or_rfc3339("ts")),
    ),
)

USER_ORDERS = TypedView(
    "user_orders",
    (Channel.USER_ORDERS,),
    ("user_order",),
    (
        ("order_id", text("order_id")),
        ("user_id", text("user_id")),
        ("client_order_id", text("client_order_id")),
        ("order_group_id", text("order_group_id")),
        ("status", text("status")),
        ("side", text("side")),
        ("is_yes", boolean("is_yes")),
        ("outcome_side", text("outcome_side")),
        ("book_side", text("book_side")),
        ("yes_price_dollars", price("yes_price_dollars", "yes_price")),
        ("fill_count", count("fill_count_fp", "fill_count")),
        ("remaining_count", count("remaining_count_fp", "remaining_count")),
        ("initial_count", count("initial_count_fp", "initial_count")),
        ("taker_fill_cost_dollars", money("taker_fill_cost_dollars", "taker_fill_cost")),
        ("maker_fill_cost_dollars", money("maker_fill_cost_dollars", "maker_fill_cost")),
        ("taker_fees_dollars", money("taker_fees_dollars", "taker_fees")),
        ("maker_fees_dollars", money("maker_fees_dollars", "maker_fees")),
        ("self_trade_prevention_type", text("self_trade_prevention_type")),
        ("last_update_reason", text("last_update_reason")),
        ("exchange_index", integer("exchange_index")),
        ("subaccount_number", integer("subaccount_number")),
        ("created_time", first(millis("created_ts_ms"), rfc3339("created_time"))),
        ("last_update_time", first(millis("last_updated_ts_ms"), rfc3339("last_update_time"))),
        ("expiration_time", first(millis("expiration_ts_ms"), rfc3339("expiration_time"))),
    ),
)

POSITIONS = TypedView(
    "positions",
    (Channel.MARKET_POSITIONS,),
    ("market_position",),
    (
        ("user_id", text("user_id")),
        ("position", count("position_fp", "position")),
        ("position_cost_dollars", money("position_cost_dollars", "position_cost")),
        ("realized_pnl_dollars", money("realized_pnl_dollars", "realized_pnl")),
        ("fees_paid_dollars", money("fees_paid_dollars", "fees_paid")),
        ("position_fee_cost_dollars", money("position_fee_cost_dollars")),
        ("volume", count("volume_fp", "volume")),
        ("subaccount", integer("subaccount")),
    ),
)

ORDER_GROUPS = TypedView(
    "order_groups",
    (Channel.ORDER_GROUP_UPDATES,),
    ("order_group_updates",),
    (
        ("event_type", text("event_type")),
        ("order_group_id", text("order_group_id")),
        ("contracts_limit", count("contracts_limit_fp", "contracts_limit")),
        _exchange_time(millis("ts_ms")),
    ),
    market=False,
)

COMMUNICATIONS = TypedView(
    "communications",
    (Channel.COMMUNICATIONS,),
    COMMUNICATIONS_TYPES,
    (
        ("id", text("id")),
        ("rfq_id", text("rfq_id")),
        ("quote_id", text("quote_id")),
        ("rfq_batch_id", text("rfq_batch_id")),
        ("batch_quote_id", text("batch_quote_id")),
        ("creator_id", text("creator_id")),
        ("quote_creator_id", text("quote_creator_id")),
        ("rfq_creator_id", text("rfq_creator_id")),
        ("event_ticker", text("event_ticker")),
        ("yes_bid_dollars", price("yes_bid_dollars")),
        ("no_bid_dollars", price("no_bid_dollars")),
        ("contracts", count("contracts_fp")),
        ("accepted_side", text("accepted_side")),
        _exchange_time(
            rfc3339("created_ts"),
            rfc3339("deleted_ts"),
            rfc3339("executed_ts"),
            rfc3339("accepted_ts"),
            rfc3339("updated_ts"),
        ),
    ),
    payload=True,
)

INDEX_VALUES = TypedView(
    "index_values",
    (Channel.CFBENCHMARKS_VALUE, Channel.CFBENCHMARKS_VALUE_5HZ, Channel.PYTH_VALUE),
    ("cfbenchmarks_value", "cfbenchmarks_value_5hz", "pyth_value"),
    (
        ("index_id", first(text("index_id"), text("underlying_ticker"))),
        ("value_usd", decimal("value_usd", INDEX_VALUE)),
        ("avg_60s_value_usd", decimal("avg_60s_data.value", INDEX_VALUE)),
        ("source_time", millis("source_ts_ms")),
        ("received_time", millis("received_at")),
        ("data", text("data")),
    ),
    market=False,
)

MULTIVARIATE_LOOKUPS = TypedView(
    "multivariate_lookups",
    (Channel.MULTIVARIATE,),
    ("multivariate_lookup",),
    (
        ("collection_ticker", text("collection_ticker")),
        ("event_ticker", text("event_ticker")),
        ("selected_markets", field("selected_markets", "JSON")),
    ),
)

TYPED_VIEWS: Final[tuple[TypedView, ...]] = (
    TRADES,
    TICKERS,
    BOOK_DELTAS,
    BOOK_SNAPSHOTS,
    LIFECYCLE,
    FILLS,
    USER_ORDERS,
    POSITIONS,
    ORDER_GROUPS,
    COMMUNICATIONS,
    INDEX_VALUES,
    MULTIVARIATE_LOOKUPS,
)


def _structure(fields: Sequence[tuple[str, Any]]) -> str:
    """The `json_transform` structure that extracts exactly these fields."""
    tree: dict[str, Any] = {}
    for path, json_type in fields:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # pragma: no cover - a field is never both
                raise ValueError(f"field {path} is both a value and an object")
        node[leaf] = json_type
    return json.dumps(tree)


def typed_view_sql(view: TypedView, source: str) -> str:
    """CREATE VIEW for one typed view over a table expression of its channels' files."""
    fields = [f for _, expr in view.columns for f in expr.fields]
    head = [
        "f.run_id",
        "f.idx",
        "f.conn",
        "f.recv_ns",
        "make_timestamptz(f.recv_ns // 1000) AS recv_time",
        'f."date"',
    ]
    if len(view.channels) > 1:
        head.append("f.channel")
    if len(view.types) > 1:
        head.append("f.type")
    head += ["f.sid", "f.seq"]
    if view.market:
        head.append("f.market_ticker")
    cols = head + [f'{expr.sql} AS "{name}"' for name, expr in view.columns]
    if view.payload:
        cols.append("TRY(CAST(json_extract(f.txt, '$.msg') AS JSON)) AS msg")
    types = ", ".join(sql_literal(t) for t in view.types)
    return (
        f"CREATE VIEW {view.name} AS SELECT {', '.join(cols)} FROM ("
        f"SELECT *, TRY(json_transform(txt, {sql_literal(_structure(fields))})) AS j FROM ("
        f"SELECT *, TRY(decode(raw)) AS txt FROM {source} "
        f"WHERE type IN ({types}) AND dir = 'in')) AS f"
    )


#: One row per level of each snapshot: the form a book fold starts from.
BOOK_SNAPSHOT_LEVELS: Final = (
    "CREATE VIEW book_snapshot_levels AS "
    'SELECT run_id, idx, conn, recv_ns, recv_time, "date", sid, seq, market_ticker, '
    "lv.side AS side, lv.price_dollars AS price_dollars, lv.quantity AS quantity FROM ("
    "SELECT *, unnest(list_concat("
    "list_transform(yes_levels, lambda x: {'side': 'yes', 'price_dollars': x.price_dollars, "
    "'quantity': x.quantity}), "
    "list_transform(no_levels, lambda x: {'side': 'no', 'price_dollars': x.price_dollars, "
    "'quantity': x.quantity}))) AS lv FROM book_snapshots)"
)


# -------------------------------------------------------------- research datasets

#: Where `kalshi-tape derive` writes by default, under the capture root.
DATASETS_DIR: Final = "_datasets"


def dataset_view_statements(location: Any) -> list[str]:
    """CREATE VIEW statements for the datasets built under `<root>/_datasets`.

    The datasets' manifest (`_manifest.json`, written by `replay.datasets`) names each
    built dataset's folder and its view (`quotes`, `bars_1m`, `depth_10_1s`,
    `book_changes`, and `trade_table` for the trades dataset, `trades` being the raw
    channel's view); a folder with no Parquet file yet gets no view.
    """
    import pyarrow.fs as pafs

    fs = location.filesystem or pafs.LocalFileSystem()
    base = f"{location.path}/{DATASETS_DIR}"
    try:
        with fs.open_input_stream(f"{base}/_manifest.json") as f:
            views = json.loads(f.read()).get("views") or {}
    except (OSError, ValueError, AttributeError):
        return []
    statements = []
    for folder, view in sorted(views.items()):
        selector = pafs.FileSelector(f"{base}/{folder}", recursive=True, allow_not_found=True)
        if not any(i.path.endswith(".parquet") for i in fs.get_file_info(selector)):
            continue
        pattern = f"{location.uri}/{DATASETS_DIR}/{folder}/*/*.parquet"
        statements.append(
            f"CREATE VIEW {view} AS SELECT * FROM read_parquet({sql_literal(pattern)}, "
            "hive_partitioning = true, hive_types = {'date': 'DATE'})"
        )
    return statements
