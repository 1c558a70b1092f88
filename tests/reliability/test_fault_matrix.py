"""The fault matrix: every fault the simulated exchange can inject, against the real recorder.

For each row of `tests.reliability.rows`, an in-process recorder records an in-process
simulated exchange while a consumer rides its subscriptions. The fault is injected
(a couple of times where it repeats), and after each injection the test waits until
it has played out and the recorder streams again with whole books (the time to
recover), then quiesces the market and compares the consumer's books with the
exchange's truth. At the end the recorder stops cleanly and its capture must:
verify with no problems (`kalshi-tape verify`), hold every frame the exchange sent
byte for byte (all of them unless a connection died with frames in flight), and carry
the fault's marks (close codes and reasons, gaps, rejected frames...). The time to
recover runs from the injection until the fault has shown its effect and the recorder
streams again with every followed book valid.

The outcome of every row goes to `.results/fault_matrix.json` before any assertion,
so `report.py` can render the table from a run that failed too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from replay.server import FaultKind, SimServer

from ..results import ResultLog
from .capture_facts import read_capture, server_sent
from .rig import Rig, server_config
from .rows import ROWS, Before, Inject, Row

pytestmark = pytest.mark.timeout(60)

_RECOVER_TIMEOUT_S = 4.0
_KNOWN_BUG_TIMEOUT_S = 1.5  # a row that fails today need not wait long to show it
_BETWEEN_S = 0.3
_FLOWING = (b"orderbook_delta", b"trade")  # the recorded channels must keep flowing


def test_every_fault_kind_of_the_exchange_has_a_row() -> None:
    assert {row.kind for row in ROWS} == set(FaultKind)
    assert len({row.case for row in ROWS}) == len(ROWS)


async def _holds(rig: Rig, predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Whether `predicate()` came true within `timeout_s`."""
    try:
        await rig.until(predicate, timeout_s)
    except TimeoutError:
        return False
    return True


async def _flowing(rig: Rig, timeout_s: float = 2.0) -> bool:
    """Every recorded channel receives new frames (the recorder still records it)."""
    seen = dict(rig.session.stats.types_received)
    received = rig.session.stats.types_received
    return await _holds(rig, lambda: all(received[t] > seen.get(t, 0) for t in _FLOWING), timeout_s)


async def _warm_up(rig: Rig) -> None:
    """Streaming with whole books, and long enough for the staleness judge to know the rates."""
    await rig.wait_streaming()
    stats = rig.session.stats
    await rig.until(lambda: stats.messages_received > 300 and rig.consumer.trades > 5, 10.0)


async def _one(rig: Rig, row: Row, inject: Inject) -> tuple[float | None, bool | None, bool | None]:
    """Inject once; (seconds to recover or None, channels flowing, books equal truth)."""
    before = Before.of(rig, row.kind)
    wait_s = _KNOWN_BUG_TIMEOUT_S if row.known_bug else _RECOVER_TIMEOUT_S
    started = time.monotonic()
    await inject(rig)
    recovered = await _holds(rig, lambda: row.effect(rig, before), wait_s)
    if not row.keeps_running:
        return (time.monotonic() - started if recovered else None), None, None
    recovered = recovered and await _holds(rig, rig.settled, wait_s)
    recover_s = time.monotonic() - started if recovered else None
    flowing = await _flowing(rig)
    matches = await rig.books_match_truth(timeout_s=5.0 if recovered else 1.0)
    if recovered and await _holds(rig, rig.settled, _RECOVER_TIMEOUT_S):
        await asyncio.sleep(_BETWEEN_S)  # let the market move before the next fault
    return recover_s, flowing, all(matches.values())


async def run_row(row: Row, tmp_path: Path) -> dict[str, Any]:
    """Run one case; return its outcome (nothing asserted here but the rig's start)."""
    truth_path = tmp_path / "truth.ndjson"
    root = tmp_path / "capture"
    out: dict[str, Any] = {
        "case": row.case,
        "kind": row.kind.value,
        "title": row.title,
        "injections": len(row.injections),
        "known_bug": row.known_bug,
    }
    recover_s: list[float | None] = []
    books: list[bool] = []
    flowing: list[bool] = []
    server = SimServer(server_config(truth_path, **row.server))
    async with server, Rig(root, server, live=row.live) as rig:
        await _warm_up(rig)
        for inject in row.injections:
            seconds, flows, equal = await _one(rig, row, inject)
            recover_s.append(seconds)
            if flows is not None and equal is not None:
                flowing.append(flows)
                books.append(equal)
        out["running"] = rig.running
        out["final_state"] = str(rig.session.state.value)
        out["resyncs"] = rig.session.stats.resyncs
        out["consumer_ends"] = len(rig.consumer.ends)
        out["invalid_books_seen"] = sum(rig.consumer.invalid.values())  # cleared, then rebuilt
        out["exit_code"] = await rig.stop() if rig.running else rig.runner.result()  # type: ignore[union-attr]
    sent = server_sent(truth_path, server.truth)  # the server has stopped: its file is whole
    facts = read_capture(root, sent)
    marks_ok, marks_text = row.marks(facts, len(row.injections))
    out.update(
        recover_s=recover_s,
        books_equal=books,
        flowing=flowing,
        marks_ok=marks_ok,
        events=marks_text,
        reconnects=facts.reconnects,
        gaps=dict(facts.gap_kinds),
        unrecovered=facts.unrecovered,
        unresyncable=facts.unresyncable,
        verifies=facts.verifies,
        problems=facts.problems,
        warnings=facts.warnings,
        frames=facts.delivery.frames,
        lost=facts.delivery.lost,
        byte_exact=facts.delivery.byte_exact,
        run_stop_reason=facts.run_stop_reason,
    )
    return out


def check(row: Row, out: dict[str, Any]) -> None:
    """The matrix's promises for one row."""
    assert out["verifies"], out["problems"]
    assert not out["warnings"], out["warnings"]  # no unrecovered gap, a clean stop
    assert out["byte_exact"], "a stored frame is not what the exchange sent"
    if not row.disrupts:
        assert out["lost"] == 0, "frames the exchange sent never reached the capture"
    assert out["marks_ok"], out["events"]
    if not row.keeps_running:  # ended for good: exit 1, and why
        assert out["exit_code"] == 1
        assert out["run_stop_reason"].startswith("session closed: ")
        return
    assert out["exit_code"] == 0
    assert out["running"] and out["final_state"] == "STREAMING"
    assert None not in out["recover_s"], "the recorder did not recover in time"
    assert all(out["flowing"]), "a recorded channel stopped being recorded"
    assert all(out["books_equal"]), "the consumer's books differ from the exchange's truth"
    assert out["unrecovered"] == 0


def _param(row: Row) -> Any:
    marks = [pytest.mark.xfail(reason=row.known_bug, strict=True)] if row.known_bug else []
    return pytest.param(row, id=row.case, marks=marks)


@pytest.mark.parametrize("row", [_param(row) for row in ROWS])
async def test_the_recorder_survives_the_fault_and_its_capture_verifies(
    row: Row, tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    out = await run_row(row, tmp_path)
    results.add("fault_matrix", out, request)
    check(row, out)
