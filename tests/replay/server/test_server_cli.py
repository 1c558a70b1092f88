"""`kalshi-tape serve` and `python -m replay.server` as a parent process uses them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets

from replay.server.command import build_config, register
from schemas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def serve(*args: str, module: str = "kalshi_tape") -> Iterator[tuple[subprocess.Popen[str], str]]:
    cmd = [sys.executable, "-m", module, *(["serve"] if module == "kalshi_tape" else []), *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        yield proc, first
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _parse(*argv: str) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize("module", ["kalshi_tape", "replay.server"])
async def test_the_first_stdout_line_is_the_url_and_sigterm_stops_cleanly(
    module: str, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.ndjson"
    with serve("--open", "--rate", "300", "--seed", "3", "--truth", str(truth), module=module) as (
        proc,
        url,
    ):
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/trade-api/ws/v2")
        async with websockets.connect(url) as ws:
            await ws.send(
                json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}})
            )
            ack = json.loads(await ws.recv())
            assert ack == {"id": 1, "type": "subscribed", "msg": {"channel": "trade", "sid": 1}}
            data = json.loads(await ws.recv())
            assert data["type"] == "trade" and data["seq"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    kinds = [json.loads(line)["kind"] for line in truth.read_text().splitlines()]
    assert {"conn", "sent", "book"} <= set(kinds)


def test_a_bad_flag_value_exits_2_naming_the_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kalshi_tape", "serve", "--open", "--fault", "gap@p=7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--fault gap@p=7" in proc.stderr and proc.stdout == ""


def test_required_auth_without_a_key_names_the_flag_to_pass() -> None:
    with pytest.raises(ConfigError, match="--public-key"):
        build_config(_parse())  # type: ignore[arg-type]


def test_flags_become_the_config(tmp_path: Path, public_pem: str) -> None:
    pem = tmp_path / "key.pub.pem"
    pem.write_text(public_pem)
    args = _parse(
        "--public-key",
        f"*={pem}",
        "--markets",
        "7",
        "--rate",
        "50000",
        "--fault",
        "close:1011@every=5s",
        "--fault",
        "stall:3s@after=1000",
        "--switch",
        "empty_side=empty_list",
        "--switch",
        "first_seq=0",
        "--switch",
        "ping_payload=hb",
        "--mix",
        "delta=0.9",
    )
    config = build_config(args)  # type: ignore[arg-type]
    assert config.markets == 7 and config.rate_fps == 50_000 and config.auth == "required"
    assert set(config.public_keys) == {"*"}
    assert [f.kind.value for f in config.faults] == ["close", "stall"]
    assert config.switches.empty_side == "empty_list" and config.switches.first_seq == 0
    assert config.switches.ping_payload == b"hb" and config.mix["delta"] == 0.9


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--open", "--switch", "nope=1"), "--switch"),
        (("--open", "--switch", "first_seq=x"), "--switch"),
        (("--open", "--switch", "wire=binary"), "switches.wire"),
        (("--open", "--mix", "delta"), "--mix"),
        (("--open", "--mix", "teleport=1"), "--mix"),
        (("--open", "--markets", "0"), "--sim-markets"),
        (("--public-key", "k=/nonexistent.pem"), "--public-key"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_field(argv: tuple[str, ...], flag: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(_parse(*argv))  # type: ignore[arg-type]
    assert info.value.field.startswith(flag)
