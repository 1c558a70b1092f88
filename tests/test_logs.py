"""`kalshi_tape.logs`: levels, the two formats, each warning once, redaction on the way out.

Each case runs in a fresh interpreter: the logging configuration is process-wide, and
pytest's own log capture would otherwise own the root logger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging, sys
from kalshi_tape.logs import configure_logging
assert configure_logging(sys.argv[1], sys.argv[2])
log = logging.getLogger("kalshi_tape.recorder")
log.debug("a debug line")
log.info("an info line", extra={"run_id": "R1", "frames": 7})
for _ in range(3):
    log.warning("setting x clamped")
log.warning("another warning")
logging.getLogger("kalshi_tape.recorder.ws").warning(
    "> KALSHI-ACCESS-SIGNATURE: c2lnbmF0dXJlc2lnbmF0dXJl")
logging.getLogger("apscheduler.scheduler").info("Added job")
"""


def run(level: str, fmt: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, level, fmt], capture_output=True,
                          text=True, timeout=30, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.stdout == ""  # stdout stays for results
    return proc.stderr.strip().splitlines()


def test_text_lines_carry_a_utc_timestamp_the_level_and_the_logger() -> None:
    lines = run("info", "text")
    assert lines[0].endswith(" INFO    recorder: an info line")
    assert lines[0][:24].endswith("Z") and lines[0][10] == "T"
    assert not any("a debug line" in line for line in lines)
    assert not any("Added job" in line for line in lines)  # library chatter is debug-only


def test_each_distinct_warning_is_written_once() -> None:
    lines = run("info", "text")
    assert sum("setting x clamped" in line for line in lines) == 1
    assert sum("another warning" in line for line in lines) == 1


def test_the_level_flag_hides_what_is_below_it() -> None:
    lines = run("warning", "text")
    assert not any(" INFO " in line for line in lines)
    assert any(" WARNING " in line for line in lines)
    assert any("a debug line" in line for line in run("debug", "text"))


def test_json_is_one_object_per_line_with_the_extra_fields() -> None:
    records = [json.loads(line) for line in run("info", "json")]
    info = records[0]
    assert info["level"] == "INFO" and info["logger"] == "kalshi_tape.recorder"
    assert info["message"] == "an info line" and info["run_id"] == "R1" and info["frames"] == 7
    assert info["time"].endswith("Z")


def test_credentials_are_redacted_whichever_logger_carries_them() -> None:
    lines = run("info", "text")
    signed = [line for line in lines if "KALSHI-ACCESS-SIGNATURE" in line]
    assert signed and "c2lnbmF0dXJl" not in signed[0] and "[redacted]" in signed[0]


def test_a_command_error_is_a_json_record_when_the_log_is_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    proc = subprocess.run([sys.executable, "-m", "kalshi_tape", "record", "--log-format", "json",
                           "--root", str(tmp_path / "d")], capture_output=True, text=True,
                          timeout=30, check=False, cwd=ROOT, env=env)  # fmt: skip
    assert proc.returncode == 2
    record = json.loads(proc.stderr.strip().splitlines()[-1])
    assert record["level"] == "ERROR" and record["exit_code"] == 2
    assert record["message"].startswith("connection.key_id: recording prod needs an API key id")
