"""Captures on object storage, end to end, against a real S3-protocol server on loopback.

Every process here is a real `kalshi-tape` (or the recorder's own code in-process),
talking HTTP to moto in server mode (`tests/objectstore.py`): record -> publish ->
compaction -> replay -> query -> verify on an `s3://` root; one clear line and exit 4
when the endpoint does not answer or refuses the credentials, with the recorder's
journal kept; and a storage outage in the middle of a run, after which the recorder
publishes everything it kept, in order, and the capture verifies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalshi_tape.cli import main
from recorder.storage.compaction import compact
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import sealed_segments
from recorder.storage.recovery import recover
from replay.reading.bulk import iter_batches, iter_frames
from replay.sql.verify import verify_capture
from schemas.channels import ALL_CHANNELS
from schemas.record import parse_file_name
from schemas.storage import StorageError

from ..objectstore import S3Server
from ..recorder.helpers import RUN_A, append_frames
from ..reliability._procs import REPO, read_status
from ..reliability.proxy import FaultProxy

pytestmark = pytest.mark.timeout(300)
KT = [sys.executable, "-m", "kalshi_tape"]


def kt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KT, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=90, check=False)  # fmt: skip


def sim_config(path: Path, root: str, journal: Path, status: Path, **storage: Any) -> Path:
    """A recorder config: the simulated exchange (5 markets), a segment a second."""
    settings = {"root": root, "journal_dir": str(journal), "segment_max_age_s": 1.0,
                "commit_interval_ms": 20, "checkpoint_interval_s": 1, **storage}  # fmt: skip
    lines = ["[connection]", 'environment = "sim"', "[sim]", "markets = 5", "rate = 400",
             "[jobs]", 'compaction = ""', "[health]", f"status_file = {json.dumps(str(status))}",
             "status_interval_s = 0.1", "[storage]"]  # fmt: skip
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def s3_refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3 server that checks credentials: it refuses every key."""
    server = S3Server.start(tmp_path_factory.mktemp("moto-auth") / "moto.log", auth=True)
    yield server
    server.stop()


# ------------------------------------------------------------------ the journal's place


def test_an_s3_root_without_a_journal_dir_journals_under_the_state_directory_not_the_cwd(
    tmp_path: Path, s3: S3Server,
) -> None:  # fmt: skip
    root = s3.new_root("journal-default")
    cwd, state = tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    env = {**s3.env(), "XDG_STATE_HOME": str(state)}
    rec = subprocess.run(
        [*KT, "record", "--sim", "--root", root, "--duration", "1s", "--no-progress"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert list(cwd.iterdir()) == []  # nothing left where the command was run
    journal = state / "kalshi-tape" / "journal" / "s3" / Path(*root[5:].split("/"))
    assert journal.is_dir() and not any(p.suffix == ".seg" for p in journal.iterdir())
    assert s3.keys(root)  # and the capture reached the bucket


# ------------------------------------------------------------------ the whole path


def test_record_publish_compact_replay_query_and_verify_on_an_s3_root(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    root = s3.new_root("e2e")
    config = sim_config(tmp_path / "record.toml", root, tmp_path / "journal", tmp_path / "s.json")
    env = s3.env()
    rec = kt("record", "--config", str(config), "--duration", "2s", "--no-progress", env=env)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    keys = s3.keys(root)
    assert keys and all(parse_file_name(k.rsplit("/", 1)[1]) for k in keys)  # data only
    assert not any(p.suffix == ".seg" for p in (tmp_path / "journal").iterdir())  # all out

    partitions = sorted({k.rsplit("/", 1)[0] for k in keys})
    split = [p for p in partitions if sum(k.startswith(p + "/") for k in keys) > 1]
    assert split, "several segments were published per partition"
    for partition in split:
        compact(root, partition, storage=s3.options, min_age_s=0, delete_grace_s=0)
    assert len(s3.keys(root)) == len(partitions)  # one compacted file per partition

    for name, value in env.items():  # the reading commands run in this process
        monkeypatch.setenv(name, value)

    def command(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    report = json.loads(command("verify", root, "--json"))
    assert not report["corrupt"] and report["warnings"] == []
    assert report["runs"][0]["clean_stop"] and report["runs"][0]["missing"] == 0
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # --endpoint-url instead of the environment's
    sql = "SELECT count(*) FILTER (WHERE type = 'trade' AND dir = 'in') AS t, count(*) AS n "
    sql += "FROM frames"
    counts = json.loads(command("query", root, sql, "--format", "json", "--endpoint-url",
                                s3.endpoint_url))  # fmt: skip
    assert counts["n"] == sum(r["frames"] for r in report["runs"]) > 500
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    replay = command("replay", root, "--channel", "trade", "--format", "jsonl")
    assert len(replay.splitlines()) == counts["t"] > 0
    inspect = json.loads(command("inspect", root, "--json"))
    assert inspect["root"] == root and inspect["frames"] == counts["n"]
    assert sum(1 for _ in iter_frames(root, channels=["trade"], storage=s3.options)) == counts["t"]


# ------------------------------------------------------------------ storage that fails


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("kalshi-tape: error: cannot reach the storage of s3://"), err
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "{root}"],  # verify and inspect list the root alike
        ["query", "{root}", "SELECT 1"],
        ["replay", "{root}"],
        ["serve", "--open", "--from", "{root}"],
        ["record", "--sim", "--root", "{root}", "--journal-dir", "{journal}"],
    ],
    ids=lambda c: c[0],
)
def test_an_endpoint_that_does_not_answer_is_one_line_and_exit_4(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, dead_port: int,
) -> None:  # fmt: skip
    for name, value in s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{dead_port}").items():
        monkeypatch.setenv(name, value)
    argv = [a.format(root="s3://bucket/capture", journal=tmp_path / "j") for a in command]
    assert main(argv) == StorageError.exit_code == 4
    line = one_error_line(capsys.readouterr().err)
    assert "check --endpoint-url / AWS_ENDPOINT_URL" in line


def test_refused_credentials_are_one_line_and_the_journal_waits_for_storage_that_accepts(
    tmp_path: Path, s3: S3Server, s3_refusing: S3Server, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    journal = tmp_path / "journal"
    with JournalWriter(journal, RUN_A, segment_max_bytes=4096) as writer:  # a previous run's
        append_frames(writer, 0, 200)
    kept = sorted(p.name for p in sealed_segments(journal))
    assert kept
    root = s3.new_root("creds")
    for name, value in s3_refusing.env().items():
        monkeypatch.setenv(name, value)
    for argv in (["inspect", root], ["record", "--sim", "--root", root, "--journal-dir",
                                     str(journal), "--no-progress"]):  # fmt: skip
        assert main(argv) == 4
        line = one_error_line(capsys.readouterr().err)
        assert "ACCESS_DENIED" in line and "check AWS_ACCESS_KEY_ID" in line
    assert sorted(p.name for p in sealed_segments(journal)) == kept  # nothing lost or moved
    # What the next start does first, against storage that accepts the credentials:
    recover(journal, root, storage=s3.options)
    assert sealed_segments(journal) == []
    (run,) = verify_capture(root, storage=s3.options).runs
    assert run.run_id == RUN_A and run.frames == 200 and run.missing == 0


async def test_a_storage_outage_mid_run_keeps_segments_in_the_journal_then_publishes_them(
    tmp_path: Path, s3: S3Server, dead_port: int
) -> None:
    root = s3.new_root("outage")
    journal, status_path = tmp_path / "journal", tmp_path / "status.json"
    config = sim_config(tmp_path / "record.toml", root, journal, status_path)
    dead = ("127.0.0.1", dead_port)

    def status() -> dict[str, Any]:
        return read_status(status_path) or {}

    async def until(check: Any, what: str, timeout_s: float = 90) -> None:  # against hanging
        deadline = time.monotonic() + timeout_s
        while not check():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"timed out waiting until {what}: {status()}"
            await asyncio.sleep(0.1)

    log = tmp_path / "record.log"
    async with FaultProxy("127.0.0.1", s3.port) as proxy:
        with log.open("w") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the loop runs the proxy
                [*KT, "record", "--config", str(config), "--no-progress",
                 "--endpoint-url", f"http://127.0.0.1:{proxy.port}"],
                cwd=REPO, env=s3.env(), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await until(lambda: status().get("durable_idx", -1) > 0, "the recorder records")
            proxy.upstream = dead  # every new connection is refused from here ...
            proxy.reset()  # ... and the open ones are cut
            published = status()["files_published"]
            await until(
                lambda: len(sealed_segments(journal)) >= 2 and status().get("last_error"),
                "segments wait in the journal and the publisher reports why",
            )
            assert status()["files_published"] <= published + 8  # what was in flight
            proxy.upstream = ("127.0.0.1", s3.port)  # the storage is back
            await until(  # the kept segments went out: the publisher keeps up again
                lambda: not status().get("last_error") and len(sealed_segments(journal)) <= 1,
                "the publisher catches up",
            )
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, log.read_text()
    assert os.listdir(journal) == ["LOCK"]
    # Every record of the run is on S3, once: idx 1..last without a hole (read with pyarrow:
    # `verify` over this many small files through DuckDB is slower, and the test above
    # already runs it on S3), and the run ended cleanly.
    batches = iter_batches(root, channels=ALL_CHANNELS, columns=["idx", "type"],
                           storage=s3.options)  # fmt: skip
    rows = [row for b in batches for row in zip(*b.to_pydict().values(), strict=True)]
    assert sorted(idx for idx, _ in rows) == list(range(len(rows)))  # idx from 0
    assert rows[-1][1] == "run_stop" and status()["durable_idx"] <= len(rows)
