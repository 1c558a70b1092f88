"""The systemd unit in deploy/: its commands are real `kalshi-tape record` command lines, and
its ExecStartPre (`record --check-config`) passes a good config and stops a bad one.

The unit's commands run as real processes, with the paths of a test's config; systemd
itself is not needed.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kalshi_tape.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "kalshi-tape.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def command(key: str) -> list[str]:
    return shlex.split(unit()["Service"][key])


def test_the_unit_checks_the_config_before_each_start_and_records_the_same_config() -> None:
    pre, start = command("ExecStartPre"), command("ExecStart")
    assert pre[0] == start[0] and pre[0].endswith("/bin/kalshi-tape")
    assert pre[1] == start[1] == "record"
    assert "--check-config" in pre and "--check-config" not in start
    config_of = {tuple(c): c[c.index("--config") + 1] for c in (pre, start)}
    assert len(set(config_of.values())) == 1  # both read the same config file
    for argv in (pre, start):
        args = build_parser().parse_args(argv[1:])  # real flags of `record`
        assert args.command_name == "record"
    assert build_parser().parse_args(start[1:]).progress is False  # a log, not a live table
    service = unit()["Service"]
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert "2" in service["RestartPreventExitStatus"].split()


def test_the_readme_installs_the_unit_from_deploy() -> None:
    assert "deploy/kalshi-tape.service" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("config", "status", "says"),
    [
        ("[connection]\nenvironment = 'sim'\n", 0, "config OK: would record the simulated"),
        ("[connection]\nenvironment = 'prod'\n[channels]\nticker = 'all'\n", 2,
         "connection.key_id: recording prod needs an API key id"),
        ("[storage]\ncommit_interval_ms = -1\n", 2, "storage.commit_interval_ms"),
    ],
)  # fmt: skip
def test_exec_start_pre_passes_a_good_config_and_stops_a_bad_one_without_connecting(
    tmp_path: Path, config: str, status: int, says: str
) -> None:
    path = tmp_path / "record.toml"
    root = tmp_path / "var" / "data"
    path.write_text(config + ("" if "[storage]" in config else "[storage]\n")
                    + f"root = '{root}'\n")  # fmt: skip
    argv = command("ExecStartPre")
    argv[argv.index("--config") + 1] = str(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    proc = subprocess.run([sys.executable, "-m", "kalshi_tape", *argv[1:]], capture_output=True,
                          text=True, timeout=30, env=env, cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == status, proc.stderr
    assert says in proc.stdout + proc.stderr
    assert not root.exists()  # checked, not created
