"""The golden frame corpus in tests/fixtures/frames and how its expectations are checked.

Each `<type>.json` holds a list of cases: `name`, `raw` (the frame text exactly as
on the wire), `expect` (dotted path -> expected value), and optionally `same_as`
(the name of a case in the same file that must parse to an equal model), `model`
(the class name of `msg`) and `extras` (dotted path -> extra fields kept there).

Expected values: `{"dec": "0.4800"}` is a Decimal whose text is exactly that;
`{"utc": "<iso>"}` is a datetime at that instant with a zero UTC offset; a list is a
tuple with those items; a dict is a model with those fields; anything else equals.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

FRAMES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"

__all__ = ["FRAMES", "Case", "check_value", "load_cases", "resolve"]


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    raw: str
    expect: dict[str, Any]
    same_as: str | None = None
    model: str | None = None
    extras: dict[str, dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def load_cases(directory: Path = FRAMES) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            cases.append(Case(file=path.stem, **item))
    return cases


def resolve(obj: Any, path: str) -> Any:
    """Follow a dotted path through attributes (models) and indexes (tuples)."""
    for part in path.split(".") if path else ():
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def check_value(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict) and set(expected) == {"dec"}:
        assert isinstance(actual, Decimal), f"{where}: {actual!r} is not a Decimal"
        assert str(actual) == expected["dec"], f"{where}: {actual!r} != {expected['dec']}"
    elif isinstance(expected, dict) and set(expected) == {"utc"}:
        assert isinstance(actual, dt.datetime), f"{where}: {actual!r} is not a datetime"
        assert actual.utcoffset() == dt.timedelta(0), f"{where}: {actual!r} is not UTC"
        assert actual == dt.datetime.fromisoformat(expected["utc"]), f"{where}: {actual!r}"
    elif isinstance(expected, list):
        assert isinstance(actual, tuple), f"{where}: {actual!r} is not a tuple"
        assert len(actual) == len(expected), f"{where}: {actual!r} has the wrong length"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            check_value(a, e, f"{where}.{i}")
    elif isinstance(expected, dict):
        assert isinstance(actual, BaseModel), f"{where}: {actual!r} is not a model"
        for key, value in expected.items():
            check_value(getattr(actual, key), value, f"{where}.{key}")
    else:
        assert type(actual) is type(expected), f"{where}: {actual!r} vs {expected!r}"
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
