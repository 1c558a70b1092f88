"""Security, end to end: key files, secrets in logs, TLS, the SQL sandbox, partition paths.

* A private key readable by others is refused by `kalshi-tape record` (exit 2, the
  `chmod 600` fix, nothing recorded); unit level: tests/recorder/test_auth.py.
* A whole `kalshi-tape record` process logging at DEBUG (root logger, websockets
  included) against the simulated exchange requiring signed connections, through a
  reconnect: neither signature (taken from the exchange's own log of the headers it
  received), nor key id, nor passphrase, nor any PEM or long base64 text reaches its
  log, its status file or its capture. Secret here: the signature and the private key
  (docs/protocol.md section 2), and the passphrase; the key id too, since the log filter
  promises it (tests/recorder/test_logfilter.py is the in-process level).
* `wss://` verifies certificates by default: the recorder process behind a TLS front
  with a certificate from a local CA (trustme) refuses it, once, and records nothing;
  with the CA trusted (`SSL_CERT_FILE`) it records; a certificate for another host is
  refused even from a trusted CA. LiveSession level: tests/recorder/test_live_session.py.
* The SQL sandbox holds over a real recorder's capture kept under a root whose path is
  full of SQL metacharacters, and over hostile strings inside frames, on local disk and
  on S3 (a real S3-protocol server: the bucket's other keys stay out of reach and
  nothing is written to it); tests/replay/test_sql_sandbox.py covers the connection.
* Whatever a ticker, a type or an acked channel contains, every file of the real write
  path lands under `root/channel=<fixed list>/date=<date>/` and nowhere else.

It knows nothing of the recorder's insides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import serve

from kalshi_tape.cli import main
from recorder.errors import ReconnectGaveUp
from recorder.link.live import LiveSession
from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from schemas.channels import ALL_CHANNELS

from ..objectstore import S3Server
from ._procs import REPO, exchange, recording, wait_for, write_config
from .test_fuzz_frames import RUN, examples, record_through_the_journal

pytestmark = pytest.mark.timeout(180)
KEY_ID = "5f0c1e2d-3b4a-4c5d-9e8f-7a6b5c4d3e2f"
PASSPHRASE = "correct-horse-battery-staple-7351"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_keys(directory: Path, key: rsa.RSAPrivateKey, mode: int = 0o600) -> tuple[Path, Path]:
    """(an encrypted PKCS#8 private key file with `mode`, the public key file)."""
    private = directory / "kalshi.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    private.chmod(mode)
    public = directory / "kalshi.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "SSL_CERT"))}
    return {**env, "KALSHI_PRIVATE_KEY_PASSPHRASE": PASSPHRASE, **extra}


# ---------------------------------------------------------------- key file permissions


@pytest.mark.parametrize("via", ["flags", "environment"])
def test_a_key_file_readable_by_others_is_refused_before_anything_is_recorded(
    tmp_path: Path, key: rsa.RSAPrivateKey, via: str
) -> None:
    private, _ = write_keys(tmp_path, key, mode=0o644)
    root = tmp_path / "data"
    argv = [sys.executable, "-m", "kalshi_tape", "record", "--no-progress", "--duration", "1s",
            "--root", str(root)]  # fmt: skip
    env = clean_env()
    if via == "flags":
        argv += ["--url", "wss://localhost:9/trade-api/ws/v2", "--key-id", KEY_ID,
                 "--key-file", str(private)]  # fmt: skip
    else:
        argv += ["--env", "demo"]
        env |= {"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY_PATH": str(private)}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "mode 0644" in proc.stderr and f"chmod 600 {private}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not root.exists()  # refused before a journal or a connection existed


# ---------------------------------------------------------------- secrets never logged

#: Run `kalshi-tape record` with the root logger at DEBUG, every record to stderr.
DEBUG_RECORD = (
    "import logging, sys\n"
    "logging.basicConfig(level=1, stream=sys.stderr,  # DEBUG and the WebSocket client's lower\n"
    "                    format='%(asctime)s %(name)s %(levelname)s %(message)s')\n"
    "from kalshi_tape.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
#: Run the exchange keeping, in $KT_HEADER_LOG, the auth headers its websockets logs.
HEADER_EXCHANGE = (
    "import logging, os, sys\n"
    "class Keep(logging.Filter):\n"
    "    def filter(self, record):\n"
    "        return 'KALSHI-ACCESS' in record.getMessage()\n"
    "handler = logging.FileHandler(os.environ['KT_HEADER_LOG'])\n"
    "handler.addFilter(Keep())\n"
    "logging.getLogger().addHandler(handler)\n"
    "logging.getLogger().setLevel(logging.DEBUG)\n"
    "sys.argv = ['replay.server', *sys.argv[1:]]\n"
    "from replay.server.__main__ import main\n"
    "sys.exit(main())\n"
)
SIGNATURE_LINE = re.compile(r"KALSHI-ACCESS-SIGNATURE: (\S+)")


def test_a_debug_level_recorder_run_leaks_no_signature_key_or_passphrase(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    private, public = write_keys(tmp_path, key)
    headers = tmp_path / "exchange-headers.log"
    root = tmp_path / "data"
    auth = ("--auth", "required", "--public-key", f"{KEY_ID}={public}",
            "--fault", "close:1011@at=1.5s")  # fmt: skip
    with exchange(rate=300, extra=auth, entry=("-c", HEADER_EXCHANGE),
                  env=clean_env(KT_HEADER_LOG=str(headers))) as url:  # fmt: skip
        config = write_config(tmp_path / "record.toml", url, root,
                              connection={"key_id": KEY_ID, "key_file": str(private)})  # fmt: skip
        with recording(config, root / "_status.json", tmp_path / "record.log", env=clean_env(),
                       entry=("-c", DEBUG_RECORD)) as rec:  # fmt: skip
            reconnected = wait_for(lambda: (s := rec.status()) and s["reconnects"] >= 1 and s, 30)
            assert reconnected, rec.stderr()
            time.sleep(0.5)
            assert rec.stop() == 0, rec.stderr()
    log = rec.stderr()
    signatures = SIGNATURE_LINE.findall(headers.read_text())
    assert len(signatures) >= 2  # one per handshake: the reconnect signed afresh
    assert len(set(signatures)) == len(signatures)

    # The log really holds the handshakes, headers and all (so a leak would show)...
    assert log.count("KALSHI-ACCESS-SIGNATURE") >= 2, log[-3000:]
    assert "Send upgrade request: b'GET /trade-api/ws/v2 HTTP/1.1" in log  # the client's own
    captured = [f.raw for f in iter_frames(root, channels=sorted(Capture(root).channels))]
    assert len(captured) > 100
    places = {
        "log": log,
        "status": (root / "_status.json").read_text(),
        "capture": b"\n".join(captured).decode("utf-8", "replace"),
    }
    secrets = {"passphrase": PASSPHRASE, "key id": KEY_ID}
    secrets |= {f"signature {i}": s for i, s in enumerate(signatures)}
    secrets["encrypted key text"] = private.read_text().splitlines()[1]
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()  # fmt: skip
    secrets["key text"] = plain.splitlines()[1]
    for where, text in places.items():
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} is in the {where}"
        assert "PRIVATE KEY" not in text, where
        assert not re.search(r"[A-Za-z0-9+/=]{64,}", text), where  # no long base64 run


# ---------------------------------------------------------------- TLS verification


class TlsFront:
    """A TLS listener on loopback that pipes each connection to a plain TCP port."""

    def __init__(self, context: ssl.SSLContext, target_port: int) -> None:
        self.context, self.target_port = context, target_port
        self.port = 0
        self.handshakes = 0
        self._ready = threading.Event()
        self._server: asyncio.Server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # counted once the TLS handshake completed
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    async def _close(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> TlsFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


@contextlib.contextmanager
def tls_recording(
    tmp_path: Path, name: str, port: int, private: Path, env: dict[str, str]
) -> Iterator[Any]:
    root = tmp_path / name
    url = f"wss://localhost:{port}/trade-api/ws/v2"
    config = write_config(tmp_path / f"{name}.toml", url, root,
                          connection={"key_id": KEY_ID, "key_file": str(private)})  # fmt: skip
    with recording(config, root / "_status.json", tmp_path / f"{name}.log", env=env) as rec:
        yield rec, root


def test_the_recorder_verifies_wss_certificates_by_default(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    private, public = write_keys(tmp_path, key)
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    auth = ("--auth", "required", "--public-key", f"{KEY_ID}={public}")
    with exchange(rate=300, extra=auth) as url:
        plain_port = int(url.split(":")[2].split("/")[0])
        with TlsFront(server_context(ca, "localhost"), plain_port) as front:
            with tls_recording(tmp_path, "untrusted", front.port, private, clean_env()) as (
                rec,
                root,
            ):
                rec.proc.wait(30)  # the session gives up at once: the recorder stops
            untrusted = list(iter_frames(root, channels=["_session"]))
            assert front.handshakes == 0  # no TLS session was ever completed
            trusted_env = clean_env(SSL_CERT_FILE=str(ca_file))
            with tls_recording(tmp_path, "trusted", front.port, private, trusted_env) as (
                rec,
                root_ok,
            ):
                assert wait_for(lambda: (s := rec.status()) and s["durable_idx"] > 100, 30), (
                    rec.stderr()
                )
                assert rec.stop() == 0
    assert "Traceback" not in (tmp_path / "untrusted.log").read_text()
    types = [f.type for f in untrusted]
    errors = [json.loads(f.raw)["error"] for f in untrusted if f.type == "error"]
    assert types.count("attempt") == 1  # a bad certificate is not retried
    assert "open" not in types
    assert errors and "CERTIFICATE_VERIFY_FAILED" in errors[0]
    assert not [f for f in iter_frames(root, channels=sorted(Capture(root).channels))
                if f.dir == "in"]  # fmt: skip
    inbound = [f for f in iter_frames(root_ok, channels=["trade", "ticker"]) if f.dir == "in"]
    assert inbound  # the same server, once its CA is trusted


def test_a_recorder_that_can_never_connect_exits_non_zero_saying_why(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    private, public = write_keys(tmp_path, key)
    ca = trustme.CA()
    auth = ("--auth", "required", "--public-key", f"{KEY_ID}={public}")
    with exchange(rate=100, extra=auth) as url:
        front = TlsFront(server_context(ca, "localhost"), int(url.split(":")[2].split("/")[0]))
        with (
            front,
            tls_recording(tmp_path, "refused", front.port, private, clean_env()) as (
                rec,
                _,
            ),
        ):
            status = rec.proc.wait(30)
    assert status not in (0, None)
    assert "CERTIFICATE_VERIFY_FAILED" in rec.stderr()


async def test_a_certificate_for_another_host_is_refused_even_from_a_trusted_ca() -> None:
    ca = trustme.CA()

    async def handler(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=server_context(ca, "other.example")) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = ssl.create_default_context()
        ca.configure_trust(client)
        live = LiveSession(f"wss://localhost:{port}/trade-api/ws/v2", ssl=client,
                           close_timeout_s=0.2)  # fmt: skip
        with pytest.raises(ReconnectGaveUp, match="certificate"):
            await live.open()
        assert live.stats.attempts == 1


# ---------------------------------------------------------------- the SQL sandbox

HOSTILE_ROOT = "cap' OR '1'='1; COPY (SELECT 1) TO 'x.csv'; --\"é"
HOSTILE_TICKERS = ["'); COPY (SELECT 1) TO '/tmp/kt-pwned.csv'; --", "x\x00y", "../../etc"]


def record_hostile_trades(workdir: Path) -> Path:
    """A capture (recorded through the journal) of trades with hostile tickers; its root."""
    frames = [
        json.dumps({"type": "trade", "sid": 1, "seq": i + 1,
                    "msg": {"market_ticker": t, "trade_id": t, "yes_price_dollars": "0.5000",
                            "no_price_dollars": "0.5000", "count_fp": "1.00", "ts": 1}}).encode()
        for i, t in enumerate(HOSTILE_TICKERS)
    ]  # fmt: skip
    record_through_the_journal(frames, workdir)
    return workdir / "root"


def sandbox_holds(root: str, forbidden: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`query` reads the hostile tickers back intact, and refuses every `forbidden` SQL with
    one line (exit 2) that leaks no secret."""

    def query(sql: str) -> tuple[int, str, str]:
        status = main(["query", root, sql, "--format", "json"])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, err = query("SELECT market_ticker FROM frames WHERE dir = 'in' ORDER BY idx")
    assert status == 0, err
    assert [json.loads(line)["market_ticker"] for line in out.splitlines()] == HOSTILE_TICKERS
    for sql in [*forbidden, "SELECT * FROM read_text('/etc/passwd')",
                f"COPY (SELECT 1) TO '{root}/x.csv'", "INSTALL httpfs",
                "SELECT * FROM read_parquet('https://example.com/x.parquet')"]:  # fmt: skip
        status, out, err = query(sql)
        assert status == 2, (sql, out)
        assert err.startswith("kalshi-tape: error: ") and "Traceback" not in err
        assert "hunter2" not in out + err and "root:" not in out


def test_the_sql_sandbox_holds_over_a_recorded_capture_with_a_hostile_root_and_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / HOSTILE_ROOT
    workdir.mkdir()
    root = record_hostile_trades(workdir)
    secret = tmp_path / "secret.csv"
    secret.write_text("api,hunter2\n")
    before = {p for p in tmp_path.rglob("*")}
    forbidden = [f"SELECT * FROM read_csv('{secret}')",
                 f"SELECT * FROM read_text('{root}/../../secret.csv')"]  # fmt: skip
    sandbox_holds(str(root), forbidden, capsys)
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written anywhere
    assert not Path("/tmp/kt-pwned.csv").exists()


def test_the_sql_sandbox_holds_over_a_recorded_capture_on_s3_with_hostile_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    s3: S3Server,
) -> None:  # fmt: skip
    root = s3.upload(record_hostile_trades(tmp_path), s3.new_root("hostile", prefix="cap"))
    bucket = root.removeprefix("s3://").split("/")[0]
    with s3.fs.open_output_stream(f"{bucket}/secret.csv") as out:
        out.write(b"api,hunter2\n")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    before = s3.keys(f"s3://{bucket}")
    forbidden = [f"SELECT * FROM read_csv('s3://{bucket}/secret.csv')",
                 f"SELECT * FROM read_csv('{root}/../secret.csv')"]  # fmt: skip
    sandbox_holds(root, forbidden, capsys)
    assert s3.keys(f"s3://{bucket}") == before  # nothing written to the bucket


# ---------------------------------------------------------------- partition paths

NASTY_PARTS = ["../", "..", "/", "\\", "\x00", "a/../../b", "/etc/passwd", "C:\\Windows",
               "é🙂", "\u202e", "channel=trade", "date=2026-01-01", ".", "%2e%2e%2f", "\n",
               " ", "~", "$HOME", "*", "?", "'", '"']  # fmt: skip
hostile_names = st.one_of(
    st.lists(st.sampled_from(NASTY_PARTS) | st.text(max_size=8), min_size=1, max_size=8).map(
        "".join
    ),
    st.text(max_size=40),
    st.integers(200, 5000).map(lambda n: "x/" * n),
)


@st.composite
def hostile_frames(draw: st.DrawFn) -> list[bytes]:
    """Frames of known and unknown types whose tickers, types and acked channels are hostile."""
    frames: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 12))):
        name, sid = draw(hostile_names), 4 + i
        kind = draw(st.sampled_from(["ticker", "market", "type", "ack", "user_order"]))
        if kind == "ticker":
            frames.append({"type": "ticker", "sid": 3, "msg": {"market_ticker": name}})
        elif kind == "market":
            frames.append({"type": "trade", "sid": 1, "seq": i + 1, "msg": {"market_ticker": name}})
        elif kind == "type":
            frames.append({"type": name, "sid": 1, "msg": {"market_ticker": name}})
        elif kind == "user_order":
            frames.append({"type": "user_order", "sid": 2, "msg": {"ticker": name}})
        else:  # an ack names the channel; frames of an unknown type then ride its sid
            frames.append({"id": i, "type": "subscribed", "msg": {"channel": name, "sid": sid}})
            frames.append({"type": draw(hostile_names), "sid": sid, "msg": {"market_ticker": name}})
    ensure_ascii = draw(st.booleans())
    return [json.dumps(f, ensure_ascii=ensure_ascii).encode() for f in frames]


PARTITION_FILE = re.compile(
    r"^root/channel=(?P<channel>[a-z0-9_]+)/date=\d{4}-\d{2}-\d{2}/"
    + re.escape(RUN)
    + r"-\d{8}\.parquet$"
)
JOURNAL_FILE = re.compile(r"^journal/(LOCK|[^/]+\.seg)$")


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(hostile_frames())
@example([b'{"id":1,"type":"subscribed","msg":{"channel":"../../etc","sid":4}}',
          b'{"type":"zzz","sid":4,"msg":{"market_ticker":"../../../evil"}}'])  # fmt: skip
def test_no_ticker_type_or_acked_channel_puts_a_file_outside_the_partitions(
    frames: list[bytes],
) -> None:
    with tempfile.TemporaryDirectory() as outer:
        workdir = Path(outer) / "w"
        workdir.mkdir()
        record_through_the_journal(frames, workdir)
        everything = [p for p in Path(outer).rglob("*")]
        for path in everything:
            rel = path.relative_to(workdir).as_posix()  # raises if outside the workdir
            if path.is_dir():
                continue
            match = PARTITION_FILE.match(rel)
            assert match or JOURNAL_FILE.match(rel), rel
            if match:
                assert match["channel"] in ALL_CHANNELS
            assert path.resolve().is_relative_to(workdir.resolve())
        assert [p.name for p in (workdir / "journal").iterdir()] == ["LOCK"]  # all published
