"""`kalshi-tape serve --from ROOT`: the replay server as a parent process starts it."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from replay.server.command import build_tape, register
from schemas.errors import ConfigError

from .capture_helpers import SERVER_1011, trades_capture

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(60)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


async def test_the_url_comes_first_and_a_client_gets_the_capture_until_the_recorded_close(
    tmp_path: Path,
) -> None:
    trades_capture(tmp_path, [(25, SERVER_1011), (5, None)])
    cmd = [sys.executable, "-m", "kalshi_tape", "serve", "--open", "--from", str(tmp_path),
           "--speed", "max", "--reproduce-disconnects"]  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 - the server under test, read line by line
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/trade-api/ws/v2")
        ids: list[str] = []
        async with websockets.connect(url) as ws:
            command = {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}
            await ws.send(json.dumps(command))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "trade":
                        ids.append(frame["msg"]["trade_id"])
                        assert frame["seq"] == len(ids)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert ids == [f"T{i}" for i in range(1, 26)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.stderr is not None
    assert "speed max, recorded disconnects reproduced" in proc.stderr.read()


@pytest.mark.parametrize(
    ("argv", "flag", "words"),
    [
        (("--from", "{missing}"), "--from", "does not exist"),
        (("--from", "{root}", "--speed", "fast"), "--speed", "'fast' is not a positive number"),
        (("--from", "{root}", "--channel", "fill"), "--channel", "(it holds trade)"),
        (("--from", "{root}", "--market", "KX-Z"), "--market", "for ['KX-Z']"),
        (("--from", "{root}", "--start", "soon"), "--start", "'soon' is not a time"),
        (("--speed", "2"), "--speed", "give a capture ROOT"),
        (("--reproduce-disconnects",), "--reproduce-disconnects", "give a capture ROOT"),
    ],
)
def test_bad_capture_flags_exit_2_naming_the_flag_without_a_traceback(
    tmp_path: Path, argv: tuple[str, ...], flag: str, words: str
) -> None:
    root = tmp_path / "capture"
    trades_capture(root, [(3, None)])
    args = [a.format(root=root, missing=tmp_path / "nope") for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "kalshi_tape", "serve", "--open", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"kalshi-tape: error: {flag}: ") and words in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_capture_flags_become_the_tape(tmp_path: Path) -> None:
    trades_capture(tmp_path, [(3, None)])
    tape = build_tape(_parse("--open", "--from", str(tmp_path), "--speed", "max", "--market",
                             "KX-T", "--channel", "trade", "--reproduce-disconnects"))  # fmt: skip
    assert tape is not None and tape.speed is None and not tape.paced
    assert tape.channels == ("trade",) and tape.market_tickers() == ["KX-T"]
    assert tape.reproduces_disconnects
    paced = build_tape(_parse("--open", "--from", str(tmp_path), "--speed", "2.5"))
    assert paced is not None and paced.speed == 2.5 and paced.paced
    assert build_tape(_parse("--open")) is None
    with pytest.raises(ConfigError, match="--speed"):
        build_tape(_parse("--open", "--from", str(tmp_path), "--speed", "0"))
