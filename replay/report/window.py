"""The time range a report covers, and the time buckets its charts aggregate into.

A `Window` is [start_ns, end_ns): the capture's own span, narrowed by `--start` /
`--end`. Its bucket is the smallest round step (1 s, 2 s, 5 s ... 1 h) that keeps
a series under `MAX_BUCKETS` points, so a minute of capture is drawn per second and
a day per minute. It builds SQL text only (integer literals, never user text).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_BUCKETS", "Window"]

#: The most points a series over the window has (per channel).
MAX_BUCKETS: Final = 1500
_S: Final = 1_000_000_000
_STEPS_S: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True, slots=True)
class Window:
    """[start_ns, end_ns) of the report, and whether the user narrowed it."""

    start_ns: int
    end_ns: int
    narrowed: bool = False

    @classmethod
    def of(
        cls, first_ns: int, end_ns: int, start: int | None = None, end: int | None = None
    ) -> Window:
        """The capture's span [first_ns, end_ns) cut to [start, end) where given."""
        lo = first_ns if start is None else max(first_ns, start)
        hi = end_ns if end is None else min(end_ns, end)
        return cls(lo, max(hi, lo + 1), start is not None or end is not None)

    @property
    def bucket_ns(self) -> int:
        """The series step: the first round step giving at most MAX_BUCKETS points."""
        span_s = (self.end_ns - self.start_ns) / _S
        step = next((s for s in _STEPS_S if span_s / s <= MAX_BUCKETS), _STEPS_S[-1])
        return step * _S

    @property
    def first_date(self) -> str:
        return _date(self.start_ns)

    @property
    def last_date(self) -> str:
        return _date(self.end_ns - 1)

    def where(self, column: str = "recv_ns") -> str:
        """SQL: `column` inside the window."""
        return f"{column} >= {int(self.start_ns)} AND {column} < {int(self.end_ns)}"

    def bucket_ms(self, column: str = "recv_ns") -> str:
        """SQL: the epoch-ms start of the bucket `column` falls in."""
        step = self.bucket_ns
        return f"(({column} - {self.start_ns}) // {step} * {step} + {self.start_ns}) / 1e6"

    @property
    def start_ms(self) -> float:
        return self.start_ns / 1e6

    @property
    def end_ms(self) -> float:
        return self.end_ns / 1e6


def _date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // _S, tz=dt.UTC).date().isoformat()
