"""Backtests on Dask: shards, edges, seeded books, equality with one process, failures.

The capture spans three days and four UTC dates (tests/replay/multiday.py), with
checkpoints, segments and a reconnect, so day shards start from seeded books. The
strategies are in tests/replay/backtest_strategies.py. Every distributed run uses
the session's real local cluster (two worker processes, `dask_client`).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kalshi_tape.cli import main
from replay import backtest
from replay.backtest.shards import Shard, market_groups_of, parse_width, plan_shards
from replay.reading.session import ReplaySession
from replay.sql.connection import connect
from schemas.errors import ConfigError

from ..objectstore import S3Server
from . import backtest_strategies as strategies
from .multiday import MARKETS, MultiDay, build_multiday_capture
from .rebuild import rebuilt

pytestmark = pytest.mark.timeout(120)
DAY_NS = 86_400 * 10**9
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> MultiDay:
    return build_multiday_capture(tmp_path_factory.mktemp("multiday") / "capture")


@pytest.fixture(scope="module")
def full(capture: MultiDay) -> dict[str, Any]:
    """The single-process reference: one replay of the whole capture, not sharded."""
    whole = Shard(0, 0, capture.end_ns + 1)
    return backtest.run_shard(strategies.digest, capture.root, whole).value  # type: ignore[no-any-return]


def book_at(full: dict[str, Any], market: str, instant_ns: int) -> tuple[Any, ...] | None:
    """The book a full replay had delivered for `market` by `instant_ns`."""
    before = [view for recv_ns, view in full["updates"].get(market, []) if recv_ns < instant_ns]
    return before[-1] if before else None


# ------------------------------------------------------------------ planning


def test_shards_cut_the_range_on_utc_days_and_cover_it_exactly_once() -> None:
    start = 1_795_244_476_000_000_000  # 2026-11-21T07:01:16Z
    shards = plan_shards(start, start + 3 * DAY_NS, parse_width("1d"))
    assert [s.label for s in shards] == [
        "2026-11-21T07:01:16Z .. 2026-11-22T00:00:00Z",
        "2026-11-22T00:00:00Z .. 2026-11-23T00:00:00Z",
        "2026-11-23T00:00:00Z .. 2026-11-24T00:00:00Z",
        "2026-11-24T00:00:00Z .. 2026-11-24T07:01:16Z",
    ]
    assert all(a.end_ns == b.start_ns for a, b in itertools.pairwise(shards))
    grouped = plan_shards(start, start + DAY_NS, parse_width("12h"), [["A"], ["B", "C"]])
    assert [(s.index, s.group, s.markets) for s in grouped] == [
        (0, 0, ("A",)), (1, 1, ("B", "C")), (2, 0, ("A",)), (3, 1, ("B", "C")),
        (4, 0, ("A",)), (5, 1, ("B", "C")),
    ]  # fmt: skip
    for bad in ("0d", "-1h", "soon", ""):
        with pytest.raises(ConfigError, match="not a shard width"):
            parse_width(bad)


# ------------------------------------------------------------------ correctness


def test_shard_edges_lose_and_duplicate_nothing_and_books_at_each_start_are_the_full_replays(
    capture: MultiDay, full: dict[str, Any]
) -> None:
    result = backtest.run(strategies.digest, capture.root, workers=0)
    shards = result.shards
    assert result.ok and len(shards) == 4  # four UTC dates
    joined = [f for s in shards for f in s.value["frames"]]
    assert joined == full["frames"]  # every frame in exactly one shard, in the same order
    ((stored,),) = (
        connect(capture.root)
        .execute("SELECT count(*) FROM frames WHERE channel IN ('orderbook_delta', 'trade')")
        .fetchall()
    )
    assert len(joined) == stored  # every data frame the capture holds
    for s in shards[1:]:
        seeded = s.value["at_start"]
        assert sorted(seeded) == list(MARKETS)
        for market, view in seeded.items():
            assert view == book_at(full, market, s.shard.start_ns), (s.shard.label, market)
            assert view[0], "a valid book"
        # seeded from the checkpoint before the start (every 3 h: 12 steps of 4 frames),
        # not replayed from the capture's start
        assert len(s.value["frames"]) < s.records < len(s.value["frames"]) + 60
    for s in shards:
        for market, updates in s.value["updates"].items():
            assert updates == [u for u in full["updates"][market]
                               if s.shard.start_ns <= u[0] < s.shard.end_ns]  # fmt: skip


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_distributed_result_equals_the_single_process_result(
    capture: MultiDay, full: dict[str, Any], dask_client: Any, s3: S3Server, where: str
) -> None:
    root: str | Path = capture.root
    if where == "s3":
        root = s3.upload(capture.root, s3.new_root("backtest"))
    inline = backtest.run(strategies.digest, capture.root, workers=0)
    spread = backtest.run(strategies.digest, root, client=dask_client, storage=s3.options)
    assert [s.value for s in spread.shards] == [s.value for s in inline.shards]
    assert spread.value == inline.value  # the default reducer: the list, in time order
    assert len({s.worker for s in spread.shards}) == 2  # both worker processes took shards
    assert [f for v in spread.value for f in v["frames"]] == full["frames"]


def test_snapshots_begin_each_shard_with_its_books_so_raw_frames_rebuild_them(
    capture: MultiDay, dask_client: Any
) -> None:
    """`snapshots=True` (on Dask workers): each day shard's raw book frames begin with a
    snapshot of every book at its start, then the full replay's frames of that shard;
    the books rebuilt from a shard's frames alone are, after each of its recorded frames,
    the ones rebuilt from the whole capture."""
    whole = backtest.run_shard(strategies.raw_books, capture.root, Shard(0, 0, capture.end_ns + 1))
    one_pass = rebuilt(whole.value)
    result = backtest.run(strategies.raw_books, capture.root, client=dask_client, snapshots=True)
    assert result.ok and len(result.shards) == 4
    seen = 0
    for s in result.shards:
        frames = s.value
        head = [f for f in frames if f["recv_ns"] < s.shard.start_ns]
        markets = sorted(f["msg"]["market_ticker"] for f in head)
        assert markets == (list(MARKETS) if s.shard.index else []), s.shard.label
        assert all(f["type"] == "orderbook_snapshot" for f in head)
        tail = frames[len(head) :]
        assert tail == whole.value[seen : seen + len(tail)], s.shard.label
        assert rebuilt(frames)[len(head) :] == one_pass[seen : seen + len(tail)], s.shard.label
        seen += len(tail)
    assert seen == len(whole.value) > 100


def test_a_worker_killed_mid_shard_still_gives_the_same_result(
    capture: MultiDay, full: dict[str, Any], dask_client: Any, tmp_path: Path
) -> None:
    marker = str(tmp_path / "paused")
    strategy = functools.partial(strategies.pausing_digest, marker=marker, pause_shard=1)
    got: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: got.update(result=backtest.run(strategy, capture.root, client=dask_client))
    )
    runner.start()
    deadline = time.monotonic() + 60
    while not os.path.exists(marker):
        assert time.monotonic() < deadline and runner.is_alive(), "shard 1 never started"
        time.sleep(0.05)
    pid = int(Path(marker).read_text())
    Path(marker + ".killed").write_text("")  # the retry goes through
    os.kill(pid, signal.SIGKILL)
    runner.join(90)
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    result = got["result"]
    assert result.ok
    # the paused shard was retried elsewhere (the killed worker may have returned other
    # shards before it took this one, so only this shard's worker is known)
    (paused,) = [s for s in result.shards if s.shard.index == 1]
    assert int(paused.worker.rsplit(":", 1)[1]) != pid
    assert [f for v in result.value for f in v["frames"]] == full["frames"]
    inline = backtest.run(strategies.digest, capture.root, workers=0)
    assert [s.value for s in result.shards] == [s.value for s in inline.shards]


def test_a_failing_shard_is_reported_with_its_time_range_and_traceback_and_others_finish(
    capture: MultiDay, dask_client: Any
) -> None:
    result = backtest.run(strategies.fails_on_the_second_day, capture.root, client=dask_client)
    (failed,) = result.failed
    assert failed.shard.label == "2026-11-22T00:00:00Z .. 2026-11-23T00:00:00Z"
    assert "ValueError: strategy bug after 5 trades" in (failed.error or "")
    assert "fails_on_the_second_day" in (failed.error or "")
    ok = [s for s in result.shards if s.ok]
    assert len(ok) == 3 and result.value == [s.value for s in ok] and all(ok[0].value for _ in ok)


def test_a_class_strategy_over_market_groups_counts_what_sql_counts(
    capture: MultiDay, dask_client: Any
) -> None:
    groups = [["KX-A", "KX-C"], ["KX-B"]]
    result = backtest.run(strategies.TradeCounter, capture.root, shard="12h", client=dask_client,
                          market_groups=groups, reducer=strategies.add_counts)  # fmt: skip
    assert result.ok and len(result.shards) == 2 * 7  # seven half-days, two groups
    for s in result.shards:  # a shard sees the markets of its group only
        assert set(s.value) <= set(groups[s.shard.group])
    rows = (
        connect(capture.root)
        .execute("SELECT market_ticker, count(*) FROM trades GROUP BY 1")
        .fetchall()
    )
    assert result.value == dict(rows)
    split = market_groups_of([f"M{i}" for i in range(50)], 4)
    assert sorted(m for g in split for m in g) == sorted(f"M{i}" for i in range(50))
    assert len(split) == 4 and split == market_groups_of(reversed([f"M{i}" for i in range(50)]), 4)


# ------------------------------------------------------------------ the command


def kt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kalshi_tape", "backtest", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env=env)  # fmt: skip


def test_the_readme_example_runs_on_a_local_cluster_and_matches_one_process(tmp_path: Path) -> None:
    spread = kt("examples/mid_bars.py:mid_bars", "examples/sample", "--reducer",
                "examples/mid_bars.py:combine", "--shard", "15s", "--workers", "2",
                "-o", str(tmp_path / "spread.json"))  # fmt: skip
    assert spread.returncode == 0, spread.stderr
    assert "5 shards (0 failed)" in spread.stderr and "on 2 worker process(es)" in spread.stderr
    example = backtest.load_callable(f"{REPO}/examples/mid_bars.py:mid_bars")
    combine = backtest.load_callable(f"{REPO}/examples/mid_bars.py:combine")
    inline = backtest.run(example, REPO / "examples/sample", shard="15s", workers=0,
                          reducer=combine)  # fmt: skip
    result = json.loads(json.dumps(inline.value, default=str))
    assert json.loads((tmp_path / "spread.json").read_text()) == result
    assert result["markets"] == 9 and result["bars"] >= 9 and result["signal"]["calls"] > 0


def test_the_command_reports_a_failing_shard_and_exits_1_on_a_cluster_by_address(
    capture: MultiDay, dask_client: Any
) -> None:
    spec = f"{REPO}/tests/replay/backtest_strategies.py:fails_on_the_second_day"
    proc = kt(spec, str(capture.root), "--scheduler", dask_client.scheduler.address)
    assert proc.returncode == 1
    assert "4 shards (1 failed)" in proc.stderr
    assert "shard 2026-11-22T00:00:00Z .. 2026-11-23T00:00:00Z failed:" in proc.stderr
    assert "ValueError: strategy bug after 5 trades" in proc.stderr
    assert len(json.loads(proc.stdout)) == 3  # the three shards that finished


def test_the_command_passes_snapshots_to_every_shard(
    capture: MultiDay, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{REPO}/tests/replay/backtest_strategies.py:raw_books"
    starts = []
    for extra in ([], ["--snapshots"]):
        assert main(["backtest", spec, str(capture.root), "--workers", "0", *extra]) == 0
        shards = json.loads(capsys.readouterr().out)
        starts.append([[f["type"] for f in frames[:3]] for frames in shards[1:]])
    assert starts[0] == [["orderbook_delta"] * 3] * 3  # each shard from its first delta
    assert starts[1] == [["orderbook_snapshot"] * 3] * 3  # a snapshot of each of 3 markets


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["examples/mid_bars.py:nope", "examples/sample"], "has no 'nope'"),
        (["examples/mid_bars.py", "examples/sample"], "is not module:name"),
        (["no/such/file.py:f", "examples/sample"], "no such file"),
        (["examples/mid_bars.py:mid_bars", "examples/sample", "--shard", "soon"], "--shard"),
        (["examples/mid_bars.py:mid_bars", "examples/sample", "--workers", "-1"], "--workers"),
        (["examples/mid_bars.py:mid_bars", "no/such/root"], "does not exist"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(REPO)
    try:
        status = main(["backtest", *args, "--workers", "0"] if "--workers" not in args
                      else ["backtest", *args])  # fmt: skip
    except SystemExit as exc:  # argparse: usage, then exit 2
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    assert status == 2, err
    assert says in err and "Traceback" not in err


def test_replay_sessions_take_an_already_built_capture_index(capture: MultiDay) -> None:
    from replay.reading.capture import Capture

    index = Capture(capture.root)
    assert ReplaySession(index).capture is index
