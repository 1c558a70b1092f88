"""What `kalshi-tape record` checks before it touches anything: storage, the port, the target.

This module owns the checks that let a capture job fail at once, in one line and
with its own exit status, instead of minutes later or with a traceback: the
capture root and the journal directory must be directories that this process may
create and write (`storage_ready`, which also creates them), the metrics port must
be free (`port_free`), and `describe_target` says which exchange, URL and key id a
run uses (the start line of every run, and what `record --check-config` prints).
`check_storage` is the dry form for `--check-config`: it creates nothing.
It knows nothing of the journal's format or of the connection.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from recorder.link.auth import Credentials
from recorder.link.live import resolve_url
from recorder.service.config import RecorderConfig
from schemas.errors import ConfigError, PortInUse, storage_error

__all__ = [
    "check_storage",
    "describe_target",
    "key_id_hint",
    "port_error",
    "port_free",
    "storage_ready",
]


def _nearest_existing(field: str, path: Path) -> Path:
    for part in (path, *path.parents):
        try:
            if part.exists():
                return part
        except OSError as exc:  # a parent we may not look into
            raise storage_error(exc, f"{field}: cannot create {path}") from None
    return Path("/")


def _check_kind(field: str, path: Path) -> Path:
    """The nearest existing ancestor of `path` (itself if it exists), which must be a dir."""
    existing = _nearest_existing(field, path)
    if not existing.is_dir():
        raise ConfigError(field, f"{existing} is not a directory",
                          "give a directory (it is created if missing)")  # fmt: skip
    return existing


def check_storage(field: str, path: Path) -> None:
    """Would a recorder be able to create and write `path`? Creates nothing.

    Raises:
        ConfigError: a file stands where a directory must be.
        PermissionDenied, StorageUnavailable: the place cannot be written.
    """
    existing = _check_kind(field, path)
    if not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
        raise storage_error(OSError(code, os.strerror(code)),
                            f"{field}: cannot write in {existing}")  # fmt: skip


def storage_ready(field: str, path: Path) -> None:
    """Create `path` if missing and prove it writable (a temporary file, removed at once).

    Raises:
        ConfigError: a file stands where a directory must be.
        PermissionDenied, StorageUnavailable: it cannot be created or written.
    """
    _check_kind(field, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, f"{field}: cannot create {path}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kalshi-tape-probe-"):
            pass
    except OSError as exc:
        raise storage_error(exc, f"{field}: cannot write in {path}") from None


def port_free(port: int, flag: str = "--metrics-port", host: str = "127.0.0.1") -> None:
    """Raise `PortInUse` unless `host:port` can be bound now (0 always can)."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise port_error(exc, port, flag, host) from None


def port_error(exc: OSError, port: int, flag: str, host: str = "127.0.0.1") -> PortInUse:
    """The one-line error for a port that could not be bound."""
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"{flag}: {host}:{port} is already in use by another process",
                         f"choose another port, or stop the process holding {port}")  # fmt: skip
    return PortInUse(f"{flag}: cannot listen on {host}:{port}: {exc.strerror or exc}")


def key_id_hint(key_id: str) -> str:
    """Enough of a key id to tell keys apart in a log, never the whole id (it is a secret)."""
    key_id = key_id.strip()
    return key_id[: min(8, max(1, len(key_id) // 3))] + "…"


def describe_target(config: RecorderConfig, credentials: Credentials | None) -> str:
    """`prod (wss://...) with key id a952bcbe…`: what a run connects to, as it will log it."""
    conn = config.connection
    if conn.environment == "sim" and not conn.url:
        where = "the simulated exchange (started on loopback)"
    else:
        url = resolve_url(conn.url or conn.environment)
        name = conn.environment if not conn.url else "the URL"
        where = f"{name} ({url})"
    who = "no key" if credentials is None else f"key id {key_id_hint(credentials.key_id)}"
    return f"{where} with {who}"
