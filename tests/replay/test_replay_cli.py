"""`kalshi-tape replay`: what it prints, its filters, and its errors."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kalshi_tape.cli import main
from schemas.events import Opened

from .capture_factory import RunBuilder, dumps, subscribe, subscribed, trade
from .rebuild import rebuilt
from .test_replay_session import busy_market, record_live


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("capture")
    live = asyncio.run(record_live(root, busy_market))
    return root, live


def test_jsonl_holds_every_delivered_message_with_the_frame_bytes_intact(
    capture: tuple[Path, dict], tmp_path: Path
) -> None:
    root, live = capture
    out = tmp_path / "trades.jsonl"
    assert (
        main(["replay", str(root), "--channel", "trade", "--format", "jsonl", "-o", str(out)]) == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(live["trades"])
    assert [(r["frame"]["msg"]["trade_id"], r["seq"], r["conn"]) for r in lines][:2] == [
        ("t0", 1, 1),
        ("t1", 2, 1),
    ]
    assert lines[0]["recv_time"].startswith("2026-11-21T")


def test_the_table_interleaves_channels_in_arrival_order(
    capture: tuple[Path, dict], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    root, live = capture
    assert main(["replay", str(root), "--no-progress"]) == 0
    rows = capsysbinary.readouterr().out.decode().splitlines()
    channels = [row.split()[1] for row in rows]
    assert channels.count("trade") == len(live["trades"])
    assert channels.count("orderbook_delta") == len(live["deltas"])
    times = [row.split()[0] for row in rows]
    assert times == sorted(times)  # one stream in arrival order, not channel after channel
    assert set(channels[:12]) == {"orderbook_delta", "trade"}


def test_the_market_filter_keeps_one_market(
    capture: tuple[Path, dict], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    root, _ = capture
    assert main(["replay", str(root), "--channel", "trade", "--market", "KX-B"]) == 0
    rows = capsysbinary.readouterr().out.decode().splitlines()
    assert rows and all(row.split()[3] == "KX-B" for row in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--channel", "fill"], "--channel: the capture holds no fill data"),
        (["--from", "yesterday"], "--from: 'yesterday' is not a time"),
        (["--speed", "0"], "--speed: '0' is not a positive number"),
    ],
)
def test_bad_arguments_print_one_clear_line_and_exit_2(
    capture: tuple[Path, dict], argv: list[str], message: str
) -> None:
    root, _ = capture
    proc = subprocess.run(
        [sys.executable, "-m", "kalshi_tape", "replay", str(root), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_jsonl_is_valid_utf8_for_every_frame_and_raw_gives_the_exact_bytes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "capture"
    run = RunBuilder(root)
    run.event(Opened(url="wss://x", standby=False), 1)
    run.send(subscribe(1, ["trade"]))
    run.receive(subscribed(1, "trade", 1))
    frames = []
    for seq in range(1, 5):
        frame = dumps(trade(1, seq, "KX-T", "0.5000", "0.5000", "1.00"))
        if seq == 2:  # a field the engine skips holds bytes that are not UTF-8
            frame = frame[:-1] + b',"note":"\xff\xfe\xfd"}'
        frames.append(frame)
        run.receive(frame, binary=seq == 3)
    run.write()

    out = tmp_path / "trades.jsonl"
    args = ["replay", str(root), "--channel", "trade", "--no-progress"]
    assert main([*args, "--format", "jsonl", "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4]
    assert "frame" not in lines[1]  # not UTF-8: base64 of the exact bytes instead
    assert base64.b64decode(lines[1]["frame_base64"]) == frames[1]
    assert [json.dumps(r["frame"], separators=(",", ":")).encode() for r in lines[::2]] == [
        frames[0],
        frames[2],
    ]
    assert [r["binary"] for r in lines] == [False, False, True, False]

    raw = tmp_path / "trades.raw"
    assert main([*args, "--format", "raw", "-o", str(raw)]) == 0
    assert raw.read_bytes() == b"".join(frame + b"\n" for frame in frames)


def test_snapshots_at_the_start_make_the_books_rebuildable_from_the_output(
    tmp_path: Path,
) -> None:
    """`--start T --snapshots`: the output begins with a snapshot of every book held at T
    (the nine markets the sample's book subscription covers), then what a replay from the
    capture's start prints from T on; books rebuilt from that output alone are, after
    every frame, those rebuilt from the whole capture."""
    sample = Path(__file__).parents[2] / "examples" / "sample"
    start = "2026-11-21T09:31:00Z"
    outputs = {}
    for name, extra in (("full", []), ("seek", ["--start", start, "--snapshots"])):
        out = tmp_path / f"{name}.jsonl"
        args = ["replay", str(sample), "--channel", "orderbook_delta", "--format", "jsonl"]
        assert main([*args, "-o", str(out), *extra]) == 0
        outputs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    full, seek = outputs["full"], outputs["seek"]
    head = [line for line in seek if line["recv_time"] < "2026-11-21T09:31:00"]
    assert {line["type"] for line in head} == {"orderbook_snapshot"}
    markets = [line["frame"]["msg"]["market_ticker"] for line in head]
    assert len(set(markets)) == len(markets) == 9
    tail = seek[len(head) :]
    skipped = len(full) - len(tail)
    assert skipped > 0 and full[skipped:] == tail
    assert full[skipped - 1]["recv_time"] < "2026-11-21T09:31:00" <= tail[0]["recv_time"]
    books = rebuilt([line["frame"] for line in seek])[len(head) - 1 :]
    assert books == rebuilt([line["frame"] for line in full])[skipped - 1 :]
