"""A real S3-protocol server on loopback for the tests: moto in server mode, as a process.

`S3Server.start()` runs `python -m moto.server` on a free loopback port (moto comes with
the test extra) and waits until it answers HTTP. Tests talk to it over HTTP exactly as
they would to S3: through pyarrow's S3 filesystem, DuckDB, Polars, Dask, or a
`kalshi-tape` process given the standard AWS environment (`env()`). Each test takes a
bucket of its own (`new_root`), so one server serves the whole session.

`auth=True` starts a server that checks credentials (moto's IAM mode from its first
request on): any key is refused, which is how a test meets wrong credentials.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from schemas.storage import StorageOptions

__all__ = ["S3Server"]

ACCESS_KEY = "kalshi-tape-test"
SECRET_KEY = "kalshi-tape-test-secret"
REGION = "us-east-1"
_buckets = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """A moto server process and what a client needs to reach it."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    auth: bool = False
    _fs: pafs.S3FileSystem | None = field(default=None, repr=False)

    @classmethod
    def start(cls, log: Path, *, auth: bool = False, timeout_s: float = 30.0) -> S3Server:
        port = _free_port()
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if auth else dict(os.environ)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        server = cls(port, process, log, auth)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=1):
                    return server
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The process environment that points the AWS clients at this server."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **base,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            **extra,
        }

    @property
    def options(self) -> StorageOptions:
        """The storage options of `env()`, for in-process calls."""
        return StorageOptions(self.endpoint_url, REGION, ACCESS_KEY, SECRET_KEY)

    @property
    def fs(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem on this server that may create buckets (test set-up)."""
        if self._fs is None:
            self._fs = pafs.S3FileSystem(
                endpoint_override=self.endpoint_url, access_key=ACCESS_KEY,
                secret_key=SECRET_KEY, region=REGION, allow_bucket_creation=True,
            )  # fmt: skip
        return self._fs

    def new_bucket(self, hint: str = "t") -> str:
        """Create a bucket no other test uses; return its name."""
        name = f"{hint[:40].lower().replace('_', '-')}-{next(_buckets)}-{os.getpid()}"
        self.fs.create_dir(name)
        return name

    def new_root(self, hint: str = "t", prefix: str = "capture") -> str:
        """A fresh `s3://bucket/prefix` root (the prefix holds nothing yet)."""
        return f"s3://{self.new_bucket(hint)}/{prefix}"

    def upload(self, local: Path, root: str) -> str:
        """Copy a local capture root to `root` (an `s3://` URI); return `root`."""
        pafs.copy_files(str(local), root.removeprefix("s3://"), destination_filesystem=self.fs)
        return root

    def keys(self, root: str) -> list[str]:
        """Every object key under `root`, relative to it, sorted."""
        base = root.removeprefix("s3://")
        with contextlib.suppress(FileNotFoundError):
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
            return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File)
        return []
