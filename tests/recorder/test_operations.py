"""`kalshi-tape record` as an always-on job: an explicit exchange, a real log, metrics, clean stops.

Real processes against the simulated exchange on loopback; the metrics endpoint is
scraped over HTTP and parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

import kalshi_tape
from kalshi_tape.cli import main
from recorder.service.metrics import STATUS_METRICS
from tests.reliability._procs import REPO, exchange, free_port

pytestmark = pytest.mark.timeout(120)
RECORD = [sys.executable, "-m", "kalshi_tape", "record", "--no-progress"]
KEY_ID = "0d9b7e5c-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) +\S+: ")


def no_kalshi_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}, **extra}


def run(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RECORD, *args], capture_output=True, text=True, timeout=timeout_s,
                          env=no_kalshi_env(), cwd=REPO, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a private key file, mode 0600, unencrypted; its public key)."""
    where = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = where / "kalshi.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    private.chmod(0o600)
    public = where / "kalshi.pub.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    return private, public


# ---------------------------------------------------------------- 1. the exchange is explicit


@pytest.mark.parametrize("config", ["", "[connection]\nenvironment = 'prod'\n"])
def test_without_sim_and_without_credentials_record_exits_2_naming_the_setting_and_the_fix(
    tmp_path: Path, config: str
) -> None:
    path = tmp_path / "record.toml"
    path.write_text(config + "[channels]\nticker = 'all'\n")
    root = tmp_path / "data"
    proc = run("--config", str(path), "--root", str(root), "--duration", "2s")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("kalshi-tape: error: connection.key_id: recording prod needs an API")
    assert all(fix in line for fix in ("--key-id", "$KALSHI_API_KEY_ID", "[connection]", "--sim"))
    assert len(line.splitlines()) == 1 and not root.exists()  # nothing simulated, nothing made


def test_a_key_id_without_a_key_file_names_the_key_file_setting(tmp_path: Path) -> None:
    proc = run("--env", "demo", "--key-id", KEY_ID, "--root", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert "connection.key_file: recording demo needs the API key's private key file" in proc.stderr
    assert "--key-file PEM" in proc.stderr and "$KALSHI_PRIVATE_KEY_PATH" in proc.stderr


@pytest.mark.parametrize("via", ["--key-file", "connection.key_file", "$KALSHI_PRIVATE_KEY_PATH"])
def test_a_key_file_error_names_the_setting_the_user_wrote(
    tmp_path: Path, via: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.pem"
    config = tmp_path / "record.toml"
    config.write_text(f"[connection]\nkey_id = '{KEY_ID}'\n[channels]\nticker = 'all'\n")
    for name in [k for k in os.environ if k.startswith("KALSHI_")]:
        monkeypatch.delenv(name)
    argv = ["record", "--config", str(config), "--root", str(tmp_path / "d"), "--check-config"]
    if via == "--key-file":
        argv += ["--key-file", str(missing)]
    elif via == "connection.key_file":
        config.write_text(f"[connection]\nkey_id = '{KEY_ID}'\nkey_file = '{missing}'\n"
                          "[channels]\nticker = 'all'\n")  # fmt: skip
    else:
        monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(missing))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"kalshi-tape: error: {via}: cannot read {missing}" in err
    assert "private_key_path" not in err


def test_check_config_validates_credentials_storage_and_port_without_connecting(
    tmp_path: Path, key_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, _ = key_files
    config = tmp_path / "record.toml"
    config.write_text(f"[connection]\nenvironment = 'prod'\nkey_id = '{KEY_ID}'\n"
                      f"key_file = '{private}'\n[channels]\nticker = 'all'\n"
                      f"[storage]\nroot = '{tmp_path / 'data'}'\n")  # fmt: skip
    started = time.monotonic()
    assert main(["record", "--config", str(config), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert time.monotonic() - started < 5  # no connection was tried (the machine has no route)
    assert "config OK: would record prod (wss://external-api-ws.kalshi.com/trade-api/ws/v2)" in out
    assert f"key id {KEY_ID[:8]}…" in out and KEY_ID not in out
    assert not (tmp_path / "data").exists()  # checked, not created
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["record", "--config", str(config), "--check-config",
                     "--metrics-port", str(port)]) == 3  # fmt: skip
    assert f"127.0.0.1:{port} is already in use" in capsys.readouterr().err


# ---------------------------------------------------------------- 2. the log


def test_no_progress_still_logs_start_periodic_and_stop_lines_and_each_warning_once(
    tmp_path: Path,
) -> None:
    config = tmp_path / "record.toml"
    config.write_text("[live]\nping_interval_s = 1000\n")  # clamped to 300: one warning
    proc = run("--sim", "--config", str(config), "--root", str(tmp_path / "d"),
               "--duration", "1.6s", "--log-interval", "0.5s")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(STAMPED.match(line) for line in lines), lines
    start = [line for line in lines if " recorder: recording " in line]
    assert re.search(r"INFO +recorder: recording sim at ws://127\.0\.0\.1:\d+/trade-api/ws/v2 "
                     r"with no key: run \S+, shard 0/1, into ", start[0])  # fmt: skip
    periodic = [line for line in lines if re.search(r"recorder: \[STREAMING\] [\d,]+ frames", line)]
    assert len(periodic) >= 2
    assert re.search(r"INFO +recorder: stopped \(duration\): \[CLOSED\] [\d,]+ frames", lines[-1])
    clamped = [line for line in lines if "live.ping_interval_s = 1000" in line]
    assert len(clamped) == 1 and " WARNING " in clamped[0]


def test_json_logs_are_one_object_per_line_and_the_start_names_exchange_url_and_key_id(
    tmp_path: Path, key_files: tuple[Path, Path]
) -> None:
    private, public = key_files
    auth = ("--auth", "required", "--public-key", f"{KEY_ID}={public}")
    with exchange(rate=500, extra=auth) as url:
        proc = run("--url", url, "--key-id", KEY_ID, "--key-file", str(private),
                   "--channel", "ticker", "--root", str(tmp_path / "d"), "--duration", "1s",
                   "--log-format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.strip().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    start = records[0]
    assert start["logger"] == "kalshi_tape.recorder" and start["level"] == "INFO"
    assert start["exchange"] == "url" and start["url"] == url
    assert f"at {url} with key id {KEY_ID[:8]}…" in start["message"]
    assert KEY_ID not in proc.stderr  # the whole key id is a secret: never logged
    assert any(r["message"].startswith("connection 1 open to ") for r in records)
    assert records[-1]["message"].startswith("stopped (duration)")
    assert records[-1]["frames"] > 0


# ---------------------------------------------------------------- 3. metrics


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


def test_the_metrics_endpoint_parses_as_prometheus_and_carries_every_status_field(
    tmp_path: Path,
) -> None:
    port = free_port()
    root = tmp_path / "d"
    one_close = "close:1011@at=0.5s,conn=1"  # one reconnect, then streaming to the end
    proc = subprocess.Popen([*RECORD, "--sim", "--root", str(root), "--duration", "20s",
                             "--metrics-port", str(port), "--sim-fault", one_close,
                             "--segment-age", "0.5s"], cwd=REPO, env=no_kalshi_env(),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.3)
        body = scrape(port)
        families = {
            f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(body)
        }
        reconnects = families.get("kalshi_tape_reconnects", [])
        published = families.get("kalshi_tape_published_files", [])
        streaming = ("kalshi_tape_session_state", {"state": "STREAMING"}, 1.0)
        if (
            reconnects
            and published
            and published[0][2] > 0
            and streaming in families.get("kalshi_tape_session_state", [])
        ):
            break
    status = json.loads((root / "_status.json").read_text())
    proc.send_signal(signal.SIGTERM)  # a clean stop: exit 0
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err

    def value(family: str, **labels: str) -> float:
        matches = [v for _, got, v in families[family] if labels.items() <= got.items()]
        assert len(matches) == 1, (family, labels, families.get(family))
        return matches[0]

    # Every numeric or state field of status.json has its metric, and the scrape has it.
    fields = {k for k, v in status.items() if isinstance(v, int | float | dict | list)}
    fields.add("state")
    assert fields - set(STATUS_METRICS) == set()
    for name in set(STATUS_METRICS.values()):
        family = "kalshi_tape_" + name.removesuffix("_total")
        assert family in families, family
    assert value("kalshi_tape_reconnects", reason="server_closed") >= 1
    assert sum(v for _, _, v in families["kalshi_tape_session_state"]) == 1
    assert value("kalshi_tape_session_state", state="STREAMING") == 1
    assert value("kalshi_tape_connection_age_seconds", role="active") > 0
    assert value("kalshi_tape_frames", channel="orderbook_delta") > 100
    assert value("kalshi_tape_published_files") > 0
    assert 0 <= value("kalshi_tape_last_publish_age_seconds") < 5
    assert 0 <= value("kalshi_tape_last_durable_age_seconds") < 1
    assert value("kalshi_tape_build_info", version=kalshi_tape.__version__) == 1
    assert value("kalshi_tape_run_info", exchange="sim", run_id=status["run_id"]) == 1
    assert value("process_resident_memory_bytes") > 10 << 20
    assert "python_info" in families


def test_a_metrics_port_in_use_is_one_line_exit_3_and_nothing_is_created(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = run("--sim", "--root", str(root), "--duration", "2s", "--metrics-port", str(port))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == (
        f"kalshi-tape: error: --metrics-port: 127.0.0.1:{port} is already in use by another "
        f"process (choose another port, or stop the process holding {port})\n"
    )
    assert not root.exists()


# ---------------------------------------------------------------- 4. storage errors


def test_storage_that_cannot_be_reached_is_one_line_and_exit_4() -> None:
    # /proc refuses new entries: a mount that is not what the config expects.
    proc = run("--sim", "--root", "/proc/kalshi-tape-no-such-mount/data", "--duration", "1s")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith(
        "kalshi-tape: error: --root: cannot create /proc/kalshi-tape-no-such-mount/data: "
    )
    assert len(proc.stderr.splitlines()) == 1


#: As root, the recorder runs without the capabilities that let root write anywhere.
AS_OWNER_ONLY = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def test_storage_the_user_may_not_write_is_one_line_and_exit_6(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    prefix = AS_OWNER_ONLY if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv (util-linux) to drop the override of modes")
    try:
        proc = subprocess.run([*prefix, *RECORD, "--sim", "--root", str(locked / "data"),
                               "--duration", "1s"], capture_output=True, text=True, timeout=60,
                              env=no_kalshi_env(), cwd=REPO, check=False)  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr == (
        f"kalshi-tape: error: --root: cannot create {locked}/data: Permission denied "
        "(run as a user who may write there, or choose another path)\n"
    )


def test_a_second_recorder_on_a_journal_in_use_is_one_line_and_exit_4(tmp_path: Path) -> None:
    root = tmp_path / "d"
    first = subprocess.Popen([*RECORD, "--sim", "--root", str(root), "--duration", "20s"],
                             cwd=REPO, env=no_kalshi_env(), stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (root / "_status.json").exists():
            time.sleep(0.1)
        second = run("--sim", "--root", str(root), "--duration", "1s")
    finally:
        first.terminate()
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err  # the first one never noticed
    assert second.returncode == 4, second.stderr
    assert second.stderr.startswith(f"kalshi-tape: error: journal directory {root}/_journal is "
                                    "in use by another recorder (held by pid ")  # fmt: skip
    assert len(second.stderr.splitlines()) == 1
