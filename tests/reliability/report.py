"""Render the reliability results into Markdown and into the README's reliability section.

This script owns the presentation of `tests/reliability/.results/*.json` (written by
the suite's `results` fixture, `tests/results.py`): the fault matrix (fault x
outcomes), the network faults with their measured times against the keep-alive bound,
the connection attempt rate against an always-1013 exchange, the crash loops with their
recovery times, and the fault soak's figures. It
rewrites the README between `<!-- reliability-table:start -->` and
`<!-- reliability-table:end -->` and nothing else. It knows nothing of how the
results were produced.

    .venv/bin/python -m pytest tests/reliability tests/recorder  # writes .results/*.json
    .venv/bin/python tests/reliability/report.py        # rewrites README.md's section
    .venv/bin/python tests/reliability/report.py --print  # only prints the Markdown
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["END", "START", "render", "rewrite_readme"]

START = "<!-- reliability-table:start -->"
END = "<!-- reliability-table:end -->"
HERE = Path(__file__).resolve().parent
_YES, _NO = "✓", "✗"


def _load(directory: Path, table: str) -> list[dict[str, Any]]:
    path = directory / f"{table}.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["rows"])


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _outcome(row: dict[str, Any]) -> str:
    outcome = row.get("outcome", "unknown")
    if outcome == "xfailed":
        return f"{_NO} known bug"
    return {"passed": _YES, "failed": f"{_NO} FAILED"}.get(outcome, outcome)


def _recover(values: list[float | None], row: dict[str, Any]) -> str:
    if not values:
        return "-"
    if not row.get("running", True):
        return "- (stops, by design)"
    if None not in values and not row.get("reconnects") and not row.get("resyncs"):
        return "no outage"
    if None in values:
        return f"{_NO} not within the wait"
    low, high = min(values), max(values)  # type: ignore[type-var]
    low_s, high_s = _seconds(low), _seconds(high)
    return high_s if low_s == high_s else f"{low_s} - {high_s}"


def _gaps(row: dict[str, Any]) -> str:
    gaps = {k: v for k, v in row.get("gaps", {}).items() if v}
    parts = [f"{k} {v}" for k, v in sorted(gaps.items())]
    resyncs = row.get("resyncs", 0)
    if resyncs:
        parts.append(f"resyncs {resyncs}")
    if row.get("unrecovered"):
        parts.append(f"{_NO} unrecovered {row['unrecovered']}")
    if row.get("unresyncable"):
        parts.append(f"{row['unresyncable']} on trades (no snapshot to resync)")
    return ", ".join(parts) or "-"


def _verifies(row: dict[str, Any]) -> str:
    if not row.get("verifies"):
        return f"{_NO} " + "; ".join(row.get("problems", []))
    text = f"{_YES} {row.get('frames', 0):,} frames byte-exact"
    if not row.get("byte_exact", True):
        text = f"{_NO} stored frames differ from those sent"
    if row.get("lost"):
        text += f" ({row['lost']} in flight at a disconnect)"
    return text


def _books(row: dict[str, Any]) -> str:
    checks = row.get("books_equal", [])
    if not checks:
        return "n/a (stops, by design)" if not row.get("running", True) else "-"
    good = sum(1 for c in checks if c)
    return f"{_YES if good == len(checks) else _NO} {good}/{len(checks)}"


def _matrix(rows: list[dict[str, Any]]) -> list[str]:
    head = ["fault", "events recorded", "reconnects", "gaps / resyncs", "capture verifies",
            "books equal truth", "time to recover", "test"]  # fmt: skip
    body = []
    for r in rows:
        events = f"{_YES if r.get('marks_ok') else _NO} {r.get('events', '')}"
        if r.get("flowing") and not all(r["flowing"]):
            events += f"; {_NO} a channel stopped being recorded"
        body.append(
            [
                f"`{r['kind']}` {r['title']}",
                events,
                r.get("reconnects", 0),
                _gaps(r),
                _verifies(r),
                _books(r),
                _recover(r.get("recover_s", []), r),
                _outcome(r),
            ]
        )
    return _table(head, body)  # fmt: skip


def _network(rows: list[dict[str, Any]]) -> list[str]:
    head = ["network fault (proxy)", "bound", "detected after", "replaced after", "how",
            "capture verifies", "books equal truth", "test"]  # fmt: skip
    body = []
    for r in rows:
        how = r.get("disconnect_reason") or ""
        if r.get("close_code"):
            how += f" ({r['close_code']})"
        if "resync_s" in r:
            how = (
                f"resync after a gap took {_seconds(max(r['resync_s']))}; DOWN rate ≤ "
                + f"{max(r['down_rates_bps']) / 1000:.1f} kB/s"
            )
        if "attempt_timeouts_s" in r:
            how = "attempts abandoned after " + ", ".join(
                _seconds(s) for s in r["attempt_timeouts_s"]
            )
        bound = _seconds(r.get("bound_s")) if r.get("bound_s") else "-"
        verifies = _verifies(r) if "verifies" in r else "-"
        books = (_YES if r.get("books_equal") else _NO) if "books_equal" in r else "-"
        body.append([r["case"], bound, _seconds(r.get("detect_s")), _seconds(r.get("replace_s")),
                     how, verifies, books, _outcome(r)])  # fmt: skip
    return _table(head, body)


def _attempts(rows: list[dict[str, Any]]) -> list[str]:
    head = ["exchange closes every connection with 1013", "time scale", "attempts",
            "most in any (scaled) minute", "closest two attempts", "test"]  # fmt: skip
    body = []
    for r in rows:
        scale = r.get("scale", 1.0)
        gap = r.get("min_gap_s")
        closest = "-" if gap is None else _seconds(gap)
        if gap is not None and scale != 1.0 and "rate_limit_waits" not in r:
            closest += f" (= {_seconds(gap / scale)} unscaled)"
        body.append([r["case"], f"1 min = {_seconds(r['scaled_minute_s'])}", r["attempts"],
                     r["max_per_minute"], closest, _outcome(r)])  # fmt: skip
    return _table(head, body)


def _crash(rows: list[dict[str, Any]]) -> list[str]:
    head = ["kill -9 of", "cycles", "durable frames checked", "lost", "stored twice",
            "unreadable files", "recovery, median / max", "test"]  # fmt: skip
    body = []
    for r in rows:
        recovery = "-"
        if "recovery_s_median" in r:
            recovery = f"{_seconds(r['recovery_s_median'])} / {_seconds(r['recovery_s_max'])}"
        what = r["case"]
        if r.get("not_sent"):
            what += f"; {_NO} {r['not_sent']} stored frames the exchange never sent"
        if "verifies" in r:
            what += f"; capture verifies {_YES if r['verifies'] else _NO}"
        body.append([what, r["cycles"], f"{r['durable']:,}", r["lost"], r["doubled"],
                     r["unreadable"], recovery, _outcome(r)])  # fmt: skip
    return _table(head, body)


def _soak(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in sorted(rows, key=lambda r: r.get("duration_s", 0)):
        fired = ", ".join(f"{k} {v}" for k, v in sorted(r.get("fired", {}).items()))
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.get("disconnect_reasons", {}).items()))
        lines += [
            f"**{r['case']}** (seed {r['seed']}, {_outcome(r)}): {r['combinations']} combinations "
            f"of faults; fired: {fired}. {r['reconnects']} reconnects ({reasons}); gaps "
            f"{_gaps(r)}; {r['frames']:,} frames stored byte-exact, {r['lost_in_flight']} lost in "
            f"flight at a disconnect; capture verifies: {_YES if r['verifies'] else _NO}; books "
            f"equal truth at {r['book_checks_equal']}/{r['book_checks']} checks; "
            f"{r['outages']} outages (max {_seconds(r['outage_s_max'])}, median "
            f"{_seconds(r['outage_s_median'])}, {r['downtime_share']:.1%} of the time); "
            f"recorder running and {r['final_state']} at the end.",
            "",
        ]
    return lines


def render(directory: Path) -> str:
    """The Markdown of every results table found in `directory`."""
    out: list[str] = []
    sections = [
        ("fault_matrix", _matrix, "Every fault the simulated exchange can inject, against the "
         "real recorder with a consumer riding its subscriptions (`tests/reliability/"
         "test_fault_matrix.py`)."),
        ("network", _network, "Network faults through our own TCP proxy, keep-alive limits "
         "0.2 s / 0.2 s / 0.2 s (`test_network_faults.py`)."),
        ("attempt_rate", _attempts, "Connection attempts against an exchange that closes every "
         "connection with 1013 (`test_attempt_rate.py`)."),
        ("crash", _crash, "Crash loops: SIGKILL of a real process, then recovery, then every idx "
         "counted (`tests/recorder/test_crash.py`, `test_record_crash.py`, `test_recovery.py`, "
         "`test_compaction.py`; the soak rows with `-m soak`, `KT_SOAK_CYCLES` cycles)."),
        ("fault_soak", _soak, "Random fault combinations (`test_fault_soak.py`, `-m soak`)."),
    ]  # fmt: skip
    for table, fn, intro in sections:
        rows = _load(directory, table)
        if rows:
            out += [intro, "", *fn(rows), ""]
    return "\n".join(out).rstrip() + "\n"


def rewrite_readme(readme: Path, markdown: str) -> None:
    """Replace what lies between the markers of `readme` with `markdown`."""
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: add the markers {START} and {END} (in that order) first")
    head = text[: start + len(START)]
    readme.write_text(f"{head}\n{markdown}{text[end:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / ".results")
    parser.add_argument("--readme", type=Path, default=HERE.parent.parent / "README.md")
    parser.add_argument("--print", action="store_true", help="print, do not rewrite the README")
    args = parser.parse_args(argv)
    markdown = render(args.results)
    if args.print:
        sys.stdout.write(markdown)
        return 0
    rewrite_readme(args.readme, markdown)
    print(f"rewrote the reliability section of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
