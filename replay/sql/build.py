"""Building blocks of the SQL text over a capture: literals, file sources, typed fields.

* `sql_literal` and `parquet_source`: file lists become escaped string literals
  (views cannot hold bound parameters); the listing has already checked every
  name against the publisher's pattern, so nothing else reaches the SQL.
* `Expr` and its constructors: one typed column of a view, as SQL over the frame
  parsed once by `json_transform` (`f.j`), with the JSON fields it reads, so a
  view's transform structure lists exactly the fields its columns use. Casts are
  `TRY_CAST`: a missing or malformed value is NULL, never an error.
* `event_field`: one field of a typed connection event (`schemas.events`) read from
  an event record's JSON, named through its class, so SQL never spells an event's
  field by hand.

Units follow docs/protocol.md section 7: prices `DECIMAL(18,4)` (legacy cents / 100),
counts `DECIMAL(18,2)`, money `DECIMAL(18,6)`, index values `DECIMAL(38,8)`, times
`TIMESTAMPTZ` from int seconds, int ms or RFC3339 as each field documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from schemas.events import ConnectionEvent

__all__ = [
    "COUNT",
    "INDEX_VALUE",
    "LEVEL",
    "MONEY",
    "PRICE",
    "Expr",
    "boolean",
    "count",
    "decimal",
    "event_field",
    "every_column",
    "field",
    "first",
    "integer",
    "levels",
    "millis",
    "money",
    "number",
    "parquet_source",
    "price",
    "rfc3339",
    "seconds",
    "seconds_or_rfc3339",
    "side_from_legacy",
    "sql_literal",
    "text",
]

PRICE: Final = "DECIMAL(18,4)"
COUNT: Final = "DECIMAL(18,2)"
MONEY: Final = "DECIMAL(18,6)"
INDEX_VALUE: Final = "DECIMAL(38,8)"
LEVEL: Final = f"STRUCT(price_dollars {PRICE}, quantity {COUNT})"

_EMPTY: Final = (
    "(SELECT NULL::VARCHAR AS run_id, NULL::BIGINT AS idx, NULL::INTEGER AS conn, "
    "NULL::BIGINT AS recv_ns, NULL::BIGINT AS mono_ns, NULL::VARCHAR AS dir, "
    "NULL::VARCHAR AS channel, NULL::VARCHAR AS type, NULL::INTEGER AS sid, "
    "NULL::BIGINT AS seq, NULL::VARCHAR AS market_ticker, NULL::BLOB AS raw, "
    'NULL::TINYINT AS opcode, NULL::TINYINT AS feed, NULL::DATE AS "date" WHERE false)'
)


def sql_literal(text: str) -> str:
    """A SQL string literal for text (standard SQL: quotes doubled, no backslash escapes)."""
    if "\x00" in text:
        raise ValueError("a SQL literal cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def parquet_source(paths: Sequence[str | PurePath]) -> str:
    """A table expression over these capture files (local paths or `s3://` URIs), with the
    Hive `channel` and `date`.

    Files of older captures lack `opcode` and `feed` (`schemas.arrow.OPTIONAL_COLUMNS`):
    DuckDB reads a mixed list as long as a query does not select those columns, and
    reads footers only of the files a query's filters keep. A view that selects one
    reads through `every_column`."""
    return _EMPTY if not paths else _read_parquet(paths, union_by_name=False)


def every_column(paths: Sequence[str | PurePath]) -> str:
    """Like `parquet_source`, with every capture column: the optional ones are NULL where
    a file lacks them. Every file's footer is read when a query binds (DuckDB's
    `union_by_name`), whatever the query's filters."""
    if not paths:
        return _EMPTY
    source = _read_parquet(paths, union_by_name=True)
    return f"(SELECT * FROM {source} UNION ALL BY NAME SELECT * FROM {_EMPTY})"


def _read_parquet(paths: Sequence[str | PurePath], *, union_by_name: bool) -> str:
    files = ", ".join(sql_literal(str(p)) for p in paths)
    union = ", union_by_name = true" if union_by_name else ""
    return (
        f"read_parquet([{files}], hive_partitioning = true{union}, "
        "hive_types = {'channel': 'VARCHAR', 'date': 'DATE'})"
    )


@dataclass(frozen=True, slots=True)
class Expr:
    """A SQL expression over the parsed frame `f.j`, and the JSON fields it reads."""

    sql: str
    fields: tuple[tuple[str, Any], ...]


def _ref(path: str) -> str:
    return "f.j" + "".join(f'."{part}"' for part in path.split("."))


def field(name: str, json_type: Any = "VARCHAR") -> Expr:
    """A field of `msg` (or of the envelope, written `$name`), as `json_type`."""
    path = name if name.startswith("$") else f"msg.{name}"
    path = path.removeprefix("$")
    return Expr(_ref(path), ((path, json_type),))


def _wrap(template: str, *exprs: Expr) -> Expr:
    """Fill each `{}` of template, in order, with an expression's SQL."""
    fields = tuple(f for e in exprs for f in e.fields)
    sql = template
    for e in exprs:
        sql = sql.replace("{}", e.sql, 1)
    return Expr(sql, fields)


def first(*exprs: Expr) -> Expr:
    """The first non-NULL of several expressions (current form first, then legacy)."""
    return _wrap("COALESCE(" + ", ".join("{}" for _ in exprs) + ")", *exprs)


def text(name: str) -> Expr:
    return field(name)


def integer(name: str) -> Expr:
    return _wrap("TRY_CAST({} AS BIGINT)", field(name))


def boolean(name: str) -> Expr:
    return _wrap("TRY_CAST({} AS BOOLEAN)", field(name))


def number(name: str) -> Expr:
    return _wrap("TRY_CAST({} AS DOUBLE)", field(name))


def decimal(name: str, sql_type: str, legacy_cents: str | None = None) -> Expr:
    """A decimal from a dollar or fixed-point string, else from legacy integer cents."""
    current = _wrap(f"TRY_CAST({{}} AS {sql_type})", field(name))
    if legacy_cents is None:
        return current
    cents = _wrap(f"CAST(TRY_CAST({{}} AS {sql_type}) * 0.01 AS {sql_type})", field(legacy_cents))
    return first(current, cents)


def price(name: str, legacy_cents: str | None = None) -> Expr:
    return decimal(name, PRICE, legacy_cents)


def money(name: str, legacy_cents: str | None = None) -> Expr:
    return decimal(name, MONEY, legacy_cents)


def count(name: str, legacy_count: str | None = None) -> Expr:
    current = _wrap(f"TRY_CAST({{}} AS {COUNT})", field(name))
    if legacy_count is None:
        return current
    return first(current, _wrap(f"TRY_CAST({{}} AS {COUNT})", field(legacy_count)))


def seconds(name: str) -> Expr:
    return _wrap("TRY(make_timestamptz(TRY_CAST({} AS BIGINT) * 1000000))", field(name))


def millis(name: str) -> Expr:
    return _wrap("TRY(make_timestamptz(TRY_CAST({} AS BIGINT) * 1000))", field(name))


def rfc3339(name: str) -> Expr:
    return _wrap("TRY_CAST({} AS TIMESTAMPTZ)", field(name))


def seconds_or_rfc3339(name: str) -> Expr:
    """`ts`: int seconds on ticker, trade and fill, an RFC3339 string on deltas (section 7)."""
    return first(seconds(name), rfc3339(name))


def levels(name: str, legacy_name: str) -> Expr:
    """Book levels `[[price, count], ...]` from the current or the legacy (cents) form."""
    cur, leg = field(name, [["VARCHAR"]]), field(legacy_name, [["VARCHAR"]])
    now = f"{{'price_dollars': TRY_CAST(l[1] AS {PRICE}), 'quantity': TRY_CAST(l[2] AS {COUNT})}}"
    old = (
        f"{{'price_dollars': CAST(TRY_CAST(l[1] AS {PRICE}) * 0.01 AS {PRICE}), "
        f"'quantity': TRY_CAST(l[2] AS {COUNT})}}"
    )
    template = (
        f"COALESCE(list_transform({{}}, lambda l: {now}), "
        f"list_transform({{}}, lambda l: {old}), []::{LEVEL}[])"
    )
    return _wrap(template, cur, leg)


def side_from_legacy(name: str, legacy: str, yes: str, no: str) -> Expr:
    """A canonical side, else mapped from the legacy yes/no field (bid = yes, ask = no)."""
    return _wrap(
        f"COALESCE({{}}, CASE {{}} WHEN 'yes' THEN '{yes}' WHEN 'no' THEN '{no}' END)",
        field(name),
        field(legacy),
    )


def event_field(cls: type[ConnectionEvent], name: str, sql_type: str | None = None, *,
                detail: str = "d") -> str:  # fmt: skip
    """SQL reading field `name` of event class `cls` from the decoded JSON `detail`.

    The text is `detail->>'name'`, under `TRY_CAST(... AS sql_type)` when a type is
    given, and falls back to the class's default when the event lacks the field (as
    `schemas.events.event_from_bytes` does for an older capture). A name that is not a
    field of `cls` raises here, when the view is built.
    """
    import msgspec

    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    if name not in fields:
        raise AttributeError(f"{cls.__name__} has no field {name!r}")
    text = f"{detail}->>'{name}'"
    if sql_type:
        text = f"TRY_CAST({text} AS {sql_type})"
    default = fields[name].default
    if default is msgspec.NODEFAULT or default is None:
        return text
    return f"COALESCE({text}, {_default_literal(default)})"


def _default_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return sql_literal(str(value))
