"""Two real recorders, two outages, one clock moved: `kalshi-tape merge` puts them together.

One simulated exchange (its own process) streams to two `kalshi-tape record` processes,
each writing its own capture root, as two hosts would. Each is killed with SIGKILL once
and started again (a second run, which first publishes the journal the killed one
left), on this timeline (seconds):

    A  run 1 |=========x            x = kill -9         run 2 |===============| SIGTERM
    B  run 1 |==============x                                 run 2 |=========| SIGTERM
                            <- both down: the gap ->

Both recorders run on this host, so their clocks are one clock; B's is then moved 250 ms
ahead by rewriting every `recv_ns` of B's files (the files are otherwise untouched), as
a host whose clock runs ahead would have stamped them. `merge` must find the shift,
keep every record of both with its feed, and report as the one gap the time between
B's last record before its kill and A's second run's first connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kalshi_tape.cli import main
from replay.merge.api import offset_between
from replay.reading.capture import Capture
from replay.reading.layout import list_capture_files
from replay.reading.session import ReplaySession
from replay.sql.verify import verify_capture
from stream.book import BookSnapshot

pytestmark = pytest.mark.timeout(300)

SHIFT_NS = 250_000_000
#: How far the median of B - A over the trades both received may be from zero when one
#: host records both: each trade is written to both sockets by the same pump tick, so
#: their receive times differ only by when each recorder's process is scheduled to read
#: it (well under a millisecond on an idle machine, a few on a busy one); the median
#: discards the frames one process read late while the other ran.
SAME_HOST_NS = 25_000_000


def _start_exchange() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay.server", "--open", "--port", "0", "--sim-rate", "300",
         "--sim-markets", "6", "--sim-seed", "11", "--settle-every", "0",
         "--switch", "orderbook_without_tickers=all"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("ws://"), url
    return proc, url


def _config(path: Path, url: str, root: Path) -> Path:
    path.write_text(
        f'[connection]\nurl = "{url}"\n'
        '[channels]\norderbook_delta = "all"\nticker = "all"\ntrade = "all"\n'
        f'[storage]\nroot = "{root}"\ncommit_interval_ms = 20\n'
        "segment_max_mb = 0.25\ncheckpoint_interval_s = 1\n"
        '[jobs]\ncompaction = ""\n[health]\nstatus_interval_s = 0.05\n'
    )
    return path


class Host:
    """One recorder host: its config and its current `kalshi-tape record` process."""

    def __init__(self, tmp: Path, name: str, url: str) -> None:
        self.root = tmp / name
        self.config = _config(tmp / f"{name}.toml", url, self.root)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_ns = 0

    def start(self) -> None:
        self.started_ns = time.time_ns()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kalshi_tape", "record", "--config", str(self.config),
             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # recording: its status names it and a durable idx
            status = self._status()
            if status and status.get("pid") == self.proc.pid and status["durable_idx"] > 0:
                return
            assert self.proc.poll() is None, "the recorder exited at its start"
            time.sleep(0.02)
        raise AssertionError("the recorder never reported a durable record")

    def _status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / "_status.json").read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> int:
        """SIGKILL; the wall-clock time it was sent."""
        assert self.proc is not None
        when = time.time_ns()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return when

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0


def _shift_clock(root: Path, by_ns: int) -> None:
    """Every recv_ns of the capture moved by `by_ns`, in place (no row crosses midnight:
    checked, so every file stays in its date partition)."""
    for f in list_capture_files(root).files:
        table = pq.read_table(f.path)
        recv = pc.add(table.column("recv_ns"), by_ns)
        days = pc.unique(pc.divide(recv, 86_400 * 10**9)).to_pylist()
        assert len(days) == 1, "the test ran across midnight UTC: run it again"
        table = table.set_column(table.schema.get_field_index("recv_ns"), "recv_ns", recv)
        pq.write_table(table, f.path, compression="zstd")


def _rows(root: Path) -> dict[tuple[str, int], tuple[int, int | None, bytes, int]]:
    """(run_id, idx) -> (recv_ns, feed, raw, mono_ns) over every record of the capture."""
    out = {}
    for f in list_capture_files(root).files:
        t = pq.read_table(f.path)
        feeds = t.column("feed").to_pylist() if "feed" in t.column_names else [None] * len(t)
        for run, idx, recv, feed, raw, mono in zip(
            t.column("run_id").to_pylist(), t.column("idx").to_pylist(),
            t.column("recv_ns").to_pylist(), feeds, t.column("raw").to_pylist(),
            t.column("mono_ns").to_pylist(), strict=True,
        ):  # fmt: skip
            assert (run, idx) not in out
            out[(run, idx)] = (recv, feed, raw, mono)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("two-hosts")
    exchange, url = _start_exchange()
    a, b = Host(tmp, "a", url), Host(tmp, "b", url)
    truth = Host(tmp, "truth", url)  # never killed: the exchange's books at every clock
    try:
        truth.start()
        a.start()
        b.start()
        time.sleep(2.0)
        killed_a = a.kill()
        time.sleep(0.8)
        killed_b = b.kill()
        time.sleep(1.2)  # both down
        restart_a = time.time_ns()
        a.start()
        time.sleep(0.8)
        b.start()
        time.sleep(2.0)
        a.stop()
        b.stop()
        truth.stop()
    finally:
        for host in (a, b, truth):
            if host.proc is not None and host.proc.poll() is None:
                host.proc.kill()
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(30)
    same_host = offset_between(a.root, b.root)
    before = {"a": _rows(a.root), "b": _rows(b.root)}
    _shift_clock(b.root, SHIFT_NS)
    return {"tmp": tmp, "a": a.root, "b": b.root, "truth": truth.root,
            "same_host": same_host, "rows": before,
            "killed_a": killed_a, "killed_b": killed_b, "restart_a": restart_a}  # fmt: skip


@pytest.fixture(scope="module")
def merged(recorded: dict[str, Any]) -> dict[str, Any]:
    to = recorded["tmp"] / "merged"
    report = recorded["tmp"] / "report.json"
    status = main([
        "merge", str(recorded["a"]), str(recorded["b"]), "--to", str(to),
        "--report", str(report), "--format", "json",
    ])  # fmt: skip
    assert status == 0
    return {"root": to, "report": json.loads(report.read_text())}


def test_the_offset_found_is_the_shift_applied(
    recorded: dict[str, Any], merged: dict[str, Any]
) -> None:
    same_host = recorded["same_host"]
    assert same_host.matches >= 20, same_host  # both recorded most trades of the overlap
    assert abs(same_host.median_ns) < SAME_HOST_NS, same_host
    offset = merged["report"]["offset"]
    assert offset["source"] == "trades"
    assert offset["matches"] == same_host.matches
    # Every difference moved by the same 250 ms: the median moves by exactly that.
    assert offset["offset_ns"] == same_host.median_ns + SHIFT_NS
    assert abs(offset["offset_ns"] - SHIFT_NS) < SAME_HOST_NS
    assert offset["p5_ns"] <= offset["offset_ns"] <= offset["p95_ns"]


def test_every_record_of_both_is_in_the_merged_capture_with_its_feed(
    recorded: dict[str, Any], merged: dict[str, Any]
) -> None:
    out = _rows(merged["root"])
    a, b = recorded["rows"]["a"], recorded["rows"]["b"]
    assert len({run for run, _ in a} | {run for run, _ in b}) == 4  # two runs each
    assert len(out) == len(a) + len(b)
    offset = merged["report"]["offset"]["offset_ns"]
    for key, (recv, _, raw, mono) in a.items():
        assert out[key] == (recv, 0, raw, mono)
    # B's recv_ns: as B's host stamped them (recorded + 250 ms), moved back by the offset.
    for key, (recv, _, raw, mono) in b.items():
        assert out[key] == (recv + SHIFT_NS - offset, 1, raw, mono)
    feeds = Counter(feed for _, feed, _, _ in out.values())
    assert feeds == {0: len(a), 1: len(b)}


def test_the_merged_capture_opens_with_the_readers(
    recorded: dict[str, Any], merged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capture = Capture(merged["root"])
    assert len(capture.runs) == 4
    verified = verify_capture(merged["root"])
    assert not verified.corrupt, verified.problems()
    assert verified.feeds == [0, 1]
    assert verified.misfiled == []
    assert main(["verify", str(merged["root"])]) == 0
    capsys.readouterr()


def test_the_gap_is_the_time_both_were_down(
    recorded: dict[str, Any], merged: dict[str, Any]
) -> None:
    report = merged["report"]
    a, b = report["sources"]
    assert (a["feed"], b["feed"]) == (0, 1)
    # Each killed run's connection ends at its last record; the others at their close.
    assert [c["closed"] for c in a["connections"]] == [False, True]
    assert [c["closed"] for c in b["connections"]] == [False, True]
    (gap,) = report["gaps"]
    b_run1 = b["connections"][0]
    a_run2 = a["connections"][1]
    assert gap["start_ns"] == b_run1["end_ns"]  # B's last record before its kill
    assert gap["end_ns"] == a_run2["start_ns"]  # A's second run connected
    # On the wall clock of the test: the gap is the outage we made. B's last record is
    # one the recorder made durable before the kill; how long before depends on the
    # machine's load (it commits every 20 ms, but the simulated exchange shares the
    # machine: 0.47 s was seen on a loaded CI run), so the bound is each run's length
    # before its kill (2 s for A, 2.8 s for B), not a latency. A's second run connects
    # after it was started.
    assert recorded["killed_b"] - 2_800_000_000 <= gap["start_ns"] <= recorded["killed_b"]
    assert recorded["restart_a"] <= gap["end_ns"]
    assert gap["end_ns"] - gap["start_ns"] >= 1.0e9  # both were down 1.2 s, plus A's start
    # A's own outage (from its kill to its restart) is covered by B.
    a_run1 = a["connections"][0]
    assert recorded["killed_a"] - 2_000_000_000 <= a_run1["end_ns"] <= recorded["killed_a"]
    assert report["covered"][0]["start_ns"] == min(a_run1["start_ns"], b_run1["start_ns"])


def test_the_text_report_names_the_offset_and_the_gap(
    recorded: dict[str, Any], merged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    again = recorded["tmp"] / "merged-text"
    assert main(["merge", str(recorded["a"]), str(recorded["b"]), "--to", str(again)]) == 0
    out, err = capsys.readouterr()
    offset = merged["report"]["offset"]["offset_ns"]
    assert f"B's clock offset: {offset / 1e6:+.3f} ms" in out
    assert "gaps (covered by neither): 1," in out
    assert err.startswith("merge: ") and "1 gap(s)" in err
    assert sorted(p.relative_to(again) for p in again.rglob("*.parquet")) == sorted(
        p.relative_to(merged["root"]) for p in merged["root"].rglob("*.parquet")
    )


# ---------------------------------------------------------------- the proof, merged


async def _replay(root: Path) -> tuple[dict[str, list[BookSnapshot]], list[str]]:
    """Every market's books and every trade id a `ReplaySession` delivers."""
    markets = sorted(Capture(root).markets("orderbook_delta"))
    books: dict[str, list[BookSnapshot]] = {m: [] for m in markets}
    trade_ids: list[str] = []
    async with ReplaySession(root) as session:
        subs = {m: await session.orderbook(m, maxsize=10**7) for m in markets}
        trades = await session.subscribe_trade(raw=True, maxsize=10**7)

        async def read_book(market: str) -> None:
            async for book in subs[market]:
                books[market].append(book)

        async def read_trades() -> None:
            async for frame in trades:
                trade_ids.append(json.loads(frame.raw)["msg"]["trade_id"])

        await asyncio.gather(read_trades(), *(read_book(m) for m in markets))
    return books, trade_ids


def _invalid(books: list[BookSnapshot], start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """Spans of [start_ns, end_ns) in which the latest book delivered was not valid."""
    spans, since, valid = [], start_ns, False
    for book in books:
        at = min(max(book.recv_ns, start_ns), end_ns)
        if book.valid and not valid:
            spans.append((since, at))
        elif not book.valid and valid:
            since = at
        valid = book.valid
    if not valid:
        spans.append((since, end_ns))
    return [(s, e) for s, e in spans if e > s]


def _complement(spans: list[tuple[int, int]], start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    out, at = [], start_ns
    for s, e in sorted(spans):
        if s > at:
            out.append((at, min(s, end_ns)))
        at = max(at, e)
    if at < end_ns:
        out.append((at, end_ns))
    return [(s, e) for s, e in out if e > s]


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    a, b = _union(a), _union(b)
    return sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def test_the_merged_tape_is_true_where_valid_and_invalid_only_while_both_were_down(
    recorded: dict[str, Any], merged: dict[str, Any]
) -> None:
    truth_books, _ = asyncio.run(_replay(recorded["truth"]))
    truth = {
        (m, b.clock): (dict(b.yes), dict(b.no)) for m, bs in truth_books.items() for b in bs
        if b.valid
    }  # fmt: skip
    books, trade_ids = asyncio.run(_replay(merged["root"]))
    # Every valid book of the merged tape is the exchange's book at its clock.
    checked = 0
    for market, delivered in books.items():
        for book in delivered:
            if book.valid:
                assert (dict(book.yes), dict(book.no)) == truth[(market, book.clock)], book
                checked += 1
    assert checked > 500
    # Trades: every one either host received, once.
    received: set[str] = set()
    for root in (recorded["a"], recorded["b"]):
        for f in list_capture_files(root).files:
            if "channel=trade" in str(f.path):
                for raw in pq.read_table(f.path, columns=["raw"]).column("raw").to_pylist():
                    received.add(json.loads(raw)["msg"]["trade_id"])
    assert len(trade_ids) == len(set(trade_ids)), "a trade was delivered twice"
    assert set(trade_ids) == received
    # Invalid only while both were broken: a host is broken while it had no connection
    # (the coverage report), from a connection's open to its first valid book, and while
    # its own book of the market was invalid (its own replay).
    report = merged["report"]
    start_ns = report["covered"][0]["start_ns"]
    end_ns = report["covered"][-1]["end_ns"]
    alone = [asyncio.run(_replay(recorded[name]))[0] for name in ("a", "b")]
    shift = [0, report["offset"]["offset_ns"]]  # B's own replay is on B's clock
    gap_ns = sum(g["end_ns"] - g["start_ns"] for g in report["gaps"])
    for market, delivered in books.items():
        broken = []
        for source, host_books, moved in zip(report["sources"], alone, shift, strict=True):
            up = [(c["start_ns"], c["end_ns"]) for c in source["connections"]]
            mine = host_books[market]
            own = [(s - moved, e - moved) for s, e in _invalid(
                mine, start_ns + moved, end_ns + moved)]  # fmt: skip
            for opened, _ in up:  # until the connection's first book
                first = next((b.recv_ns - moved for b in mine
                              if b.valid and b.recv_ns - moved >= opened), end_ns)  # fmt: skip
                own.append((opened, first))
            broken.append(_complement(up, start_ns, end_ns) + own)
        invalid = _invalid(delivered, start_ns, end_ns)
        both = _intersect(*broken)
        assert sum(e - s for s, e in invalid) <= both, (market, invalid, both)
        assert both >= gap_ns  # the outage we made is in it
