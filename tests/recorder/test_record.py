"""`kalshi-tape record`: the main job, run as a real process against the simulated exchange."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.service.app import Shard
from recorder.service.config import load_config
from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from replay.sql.verify import verify_capture
from schemas.errors import ConfigError

pytestmark = pytest.mark.timeout(120)
RECORD = [sys.executable, "-m", "kalshi_tape", "record", "--no-progress"]


def run_record(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RECORD, *args], capture_output=True, text=True, timeout=timeout_s,
                          check=False)  # fmt: skip


def test_record_sim_writes_a_capture_that_verifies_clean(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = run_record("--sim", "--duration", "4s", "--root", str(root), "--sim-rate", "2000")
    assert proc.returncode == 0, proc.stderr
    report = verify_capture(root)
    assert not report.corrupt
    assert not report.warnings()
    channels = {f.channel for f in iter_frames(root, channels=None)}
    assert {"orderbook_delta", "ticker", "trade", "market_lifecycle_v2"} <= channels
    events = [f.type for f in iter_frames(root, channels=["_session"])]
    assert events[0] == "run_start" and events[-1] == "run_stop"
    assert {"attempt", "open", "close", "state"} <= set(events)
    journal = root / "_journal"
    assert not list(journal.glob("*.seg")) and not list(journal.glob("*.open"))
    status = json.loads((root / "_status.json").read_text())
    assert status["durable_idx"] > 100 and status["capture_dropped_frames"] == 0
    # the stop line's rate is the run's average, not the last window's (which has
    # decayed to nearly nothing once the connection is closed)
    line = r"stopped \(duration\): \[CLOSED\] ([\d,]+) frames \(([\d,]+)/s on average\)"
    stopped = re.search(line, proc.stderr)
    assert stopped, proc.stderr[-1500:]
    frames, rate = (int(g.replace(",", "")) for g in stopped.groups())
    assert 0.5 <= rate * 4 / frames <= 1.2


def test_sigterm_stops_cleanly_and_publishes_everything(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = subprocess.Popen([*RECORD, "--sim", "--root", str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    status = root / "_status.json"
    while time.monotonic() < deadline:
        if status.exists() and json.loads(status.read_text())["durable_idx"] > 200:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    last = json.loads(status.read_text())
    everything = sorted(Capture(root).channels)
    idx = [f.idx for f in iter_frames(root, channels=everything)]
    assert sorted(idx) == list(range(len(idx)))  # no hole, no duplicate: all published
    assert len(idx) > last["appended_idx"]
    assert [f.type for f in iter_frames(root, channels=["_session"])][-1] == "run_stop"
    assert (
        json.loads([f for f in iter_frames(root, channels=["_session"])][-1].raw)["reason"]
        == "SIGTERM"
    )
    assert not verify_capture(root).corrupt


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ("[storage]\ncommit_interval_ms = -5\n", [], "storage.commit_interval_ms"),
        ("[storage]\ncommit_intervl_ms = 5\n", [], "storage.commit_intervl_ms: unknown setting"),
        (
            "[channels]\nmarket_lifecycle_v2 = ['KX-A']\n",
            [],
            "channels.market_lifecycle_v2: market_lifecycle_v2 takes no market filter",
        ),
        (
            "[connection]\nenvironment = 'prod'\nkey_id = 'k'\nkey_file = 'k.pem'\n"
            "[channels]\norderbook_delta = 'all'\n",
            [],
            "channels.orderbook_delta",
        ),
        (
            "[channels]\nticker = 5\n",
            [],
            'channels.ticker: 5 is none of: "all", a list of strings, true or false',
        ),
        ("[jobs]\ncompaction = 'every hour'\n", ["--sim", "--duration", "1s"], "jobs.compaction"),
        ("[live]\nping_intervl_s = 3\n", [], "live.ping_intervl_s"),
        ("not toml = [", [], "--config"),
        ("", ["--sim", "--shard", "3/2"], "--shard"),
        ("", ["--channel", "tickers=all"], "--channel: unknown channel 'tickers'"),
        ("", ["--duration", "soon"], "argument --duration"),
    ],
)
def test_a_bad_config_or_flag_names_the_field_exits_2_and_prints_no_traceback(
    tmp_path: Path, config: str, args: list[str], message: str
) -> None:
    path = tmp_path / "record.toml"
    path.write_text(config)
    proc = run_record("--config", str(path), "--root", str(tmp_path / "d"), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_explicit_prod_without_credentials_is_refused_not_silently_simulated(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    proc = subprocess.run([*RECORD, "--env", "prod", "--root", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "connection.key_id: recording prod needs an API key id" in proc.stderr


def test_shards_split_market_lists_and_leave_unfiltered_channels_to_shard_zero() -> None:
    markets = [f"KX-{i}" for i in range(200)]
    chosen = {"orderbook_delta": markets, "ticker": None, "market_lifecycle_v2": None}
    shards = [Shard(k, 4).subscriptions(chosen) for k in range(4)]
    books = [set(s.get("orderbook_delta", [])) for s in shards]
    assert set().union(*books) == set(markets)
    assert sum(len(b) for b in books) == len(markets)  # each market in exactly one shard
    assert all(len(b) > 20 for b in books)
    assert [("ticker" in s) for s in shards] == [True, False, False, False]


def test_config_defaults_and_overrides_resolve() -> None:
    config = load_config(None, {"storage.root": "/x", "storage.commit_interval_ms": 20})
    assert config.storage.root == "/x" and config.storage.commit_interval_ms == 20
    assert config.storage.segment_max_mb == 64
    with pytest.raises(ConfigError, match=r"sim\.markets"):
        load_config(None, {"sim.markets": 0})
