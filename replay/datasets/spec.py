"""Dataset names: "quotes", "depth:10@1s", "bars:1m"... parsed, and named on disk and in SQL.

A `Spec` is one requested dataset: its kind, and for depth its levels and
interval, for bars its interval. `folder` is its folder under the datasets
directory and its SQL view name ("depth_10_1s", "bars_1m"); the trades dataset's
view is `trade_table`, since `trades` already names the raw trade channel's view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.errors import ConfigError

__all__ = ["DEFAULT", "KINDS", "Spec", "parse_specs", "view_name"]

KINDS = ("book_changes", "quotes", "trades", "depth", "bars")
DEFAULT = ("quotes", "trades", "bars:1m", "book_changes")
_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d)$")
#: SQL view names that differ from the folder (a view of the capture has the name).
_VIEWS = {"trades": "trade_table"}


def _interval(text: str, name: str) -> int:
    match = _INTERVAL.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(
            "--datasets", f"{name}: {text!r} is not an interval such as 1s, 1m, 1h or 1d"
        )
    ns = int(match.group(1)) * _UNITS_NS[match.group(2)]
    if 86_400 * 10**9 % ns:
        raise ConfigError(
            "--datasets", f"{name}: the interval must divide a day evenly, not {text!r}"
        )
    return ns


@dataclass(frozen=True, slots=True)
class Spec:
    """One dataset: "book_changes", "quotes", "trades", "depth:N@I" or "bars:I"."""

    kind: str
    levels: int = 0
    interval_ns: int = 0
    text: str = ""

    @property
    def name(self) -> str:
        return self.text or self.kind

    @property
    def folder(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")

    @property
    def view(self) -> str:
        return _VIEWS.get(self.folder, self.folder)

    @classmethod
    def parse(cls, text: str) -> Spec:
        text = text.strip()
        kind, _, arg = text.partition(":")
        if kind not in KINDS:
            raise ConfigError(
                "--datasets",
                f"unknown dataset {text!r}; choose from book_changes, quotes, trades, "
                "depth:N@INTERVAL (e.g. depth:10@1s) and bars:INTERVAL (e.g. bars:1m)",
            )
        if kind == "depth":
            levels, _, every = (arg or "10@1s").partition("@")
            if not levels.isdigit() or not 1 <= int(levels) <= 100:
                raise ConfigError(
                    "--datasets", f"{text!r}: depth levels must be 1..100, as in depth:10@1s"
                )
            interval = _interval(every or "1s", text)
            return cls("depth", int(levels), interval, f"depth:{int(levels)}@{every or '1s'}")
        if kind == "bars":
            interval = _interval(arg or "1m", text)
            return cls("bars", 0, interval, f"bars:{arg or '1m'}")
        if arg:
            raise ConfigError("--datasets", f"{text!r}: {kind} takes no argument")
        return cls(kind)


def parse_specs(names: Iterable[str] | str | None) -> list[Spec]:
    """Specs from names (a list, or one comma-separated string); defaults to `DEFAULT`."""
    if names is None:
        names = DEFAULT
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    specs = list(dict.fromkeys(Spec.parse(n) for n in names))
    if not specs:
        raise ConfigError("--datasets", "no dataset named; choose e.g. quotes,trades,bars:1m")
    return specs


def view_name(folder: str) -> str:
    """The SQL view name of a dataset folder."""
    return _VIEWS.get(folder, folder)
