"""Kalshi API credentials and the signed headers of the WebSocket upgrade.

This module owns docs/protocol.md section 2 on the client side: loading the RSA
private key (PEM, PKCS#8 or PKCS#1, optionally encrypted with a passphrase read
from an environment variable), refusing a key file that group or others can
access, and signing `timestamp_ms + "GET" + path` with RSA-PSS (SHA-256, MGF1
SHA-256, 32-byte salt) afresh for every connection attempt. Key material and
signatures are never logged nor shown in a repr; the key id is registered with
the log filter. It knows nothing of sockets or reconnecting.
"""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from recorder.link.key_env import ENV_KEY_ID, ENV_PASSPHRASE, ENV_PRIVATE_KEY_PATH
from recorder.link.logfilter import install_redaction
from schemas.errors import ConfigError

__all__ = [
    "ENV_KEY_ID",
    "ENV_PASSPHRASE",
    "ENV_PRIVATE_KEY_PATH",
    "KEY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Credentials",
    "check_key_permissions",
    "load_private_key",
]

KEY_HEADER: Final = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER: Final = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER: Final = "KALSHI-ACCESS-SIGNATURE"
#: docs/protocol.md section 2: salt length = digest length (32 bytes), not the maximum.
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def check_key_permissions(path: Path, field: str = "private_key_path") -> None:
    """Refuse a key file that anyone but its owner can read, write or execute.

    Raises:
        ConfigError: naming the file, its mode, and the `chmod` that fixes it.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(field, f"{path} is not a regular file")
    if os.name == "posix" and mode & 0o077:
        raise ConfigError(
            field,
            f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            "a private key must be readable by its owner only",
            f"run: chmod 600 {path}",
        )


def load_private_key(
    path: Path, passphrase: bytes | None = None, field: str = "private_key_path"
) -> rsa.RSAPrivateKey:
    """Load an RSA private key from a PEM file (PKCS#8 or PKCS#1, plain or encrypted).

    Raises:
        ConfigError: permissions too open, unreadable file, wrong or missing
            passphrase, not PEM, or not an RSA key; the message names the field.
    """
    check_key_permissions(path, field)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise ConfigError(
                field,
                f"{path} is encrypted and no passphrase was given",
                f"set {ENV_PASSPHRASE} (or the variable named by passphrase_env)",
            ) from None
        raise ConfigError(field, f"{path} is not encrypted, but a passphrase was given") from None
    except ValueError:
        hint = "check the passphrase" if passphrase is not None else "expected a PEM RSA key"
        raise ConfigError(field, f"cannot load the private key in {path}", hint) from None
    except Exception:  # the backend's own errors: never echo key bytes
        raise ConfigError(field, f"cannot load the private key in {path}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(field, f"{path} holds a {type(key).__name__}, not an RSA key")
    return key


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key id and its RSA private key: signs the three upgrade headers.

    Build with `Credentials.from_file`, `from_env` or `from_config`. The repr shows
    the key id's first characters only.
    """

    key_id: str
    _key: rsa.RSAPrivateKey = field(repr=False)
    _clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000, repr=False)

    def __post_init__(self) -> None:
        if not self.key_id or not self.key_id.strip():
            raise ConfigError("key_id", "is empty", f"set {ENV_KEY_ID} or pass key_id")
        install_redaction().add_secret(self.key_id)

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id[:4]}…)"

    @classmethod
    def from_file(
        cls,
        key_id: str,
        private_key_path: str | os.PathLike[str],
        *,
        passphrase_env: str = ENV_PASSPHRASE,
        env: Mapping[str, str] | None = None,
    ) -> Credentials:
        """Load the key from a PEM file; a passphrase, if any, from `passphrase_env`."""
        environ = os.environ if env is None else env
        secret = environ.get(passphrase_env)
        path = Path(private_key_path).expanduser()
        key = load_private_key(path, secret.encode() if secret else None)
        return cls(key_id.strip(), key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """From KALSHI_API_KEY_ID, KALSHI_PRIVATE_KEY_PATH and KALSHI_PRIVATE_KEY_PASSPHRASE."""
        environ = os.environ if env is None else env
        key_id = environ.get(ENV_KEY_ID, "")
        path = environ.get(ENV_PRIVATE_KEY_PATH, "")
        if not key_id:
            raise ConfigError(ENV_KEY_ID, "is not set", "export your Kalshi API key id")
        if not path:
            raise ConfigError(ENV_PRIVATE_KEY_PATH, "is not set", "export the path of your PEM key")
        return cls.from_file(key_id, path, env=environ)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> Credentials:
        """From an `[auth]` table: `key_id`, `private_key_path`, optional `passphrase_env`.

        A missing `key_id` or `private_key_path` falls back to the environment.
        """
        environ = os.environ if env is None else env
        unknown = set(config) - {"key_id", "private_key_path", "passphrase_env"}
        if unknown:
            raise ConfigError(
                f"auth.{sorted(unknown)[0]}",
                "is not an auth setting",
                "use key_id, private_key_path, passphrase_env",
            )
        key_id = str(config.get("key_id") or environ.get(ENV_KEY_ID, ""))
        path = str(config.get("private_key_path") or environ.get(ENV_PRIVATE_KEY_PATH, ""))
        if not key_id:
            raise ConfigError("auth.key_id", "is not set", f"set it or export {ENV_KEY_ID}")
        if not path:
            raise ConfigError(
                "auth.private_key_path", "is not set", f"set it or export {ENV_PRIVATE_KEY_PATH}"
            )
        passphrase_env = str(config.get("passphrase_env") or ENV_PASSPHRASE)
        return cls.from_file(key_id, path, passphrase_env=passphrase_env, env=environ)

    def sign(self, timestamp_ms: int, path: str) -> str:
        """The base64 RSA-PSS signature of `timestamp_ms + "GET" + path`."""
        message = f"{timestamp_ms}GET{path}".encode()
        return base64.b64encode(self._key.sign(message, _PSS, hashes.SHA256())).decode()

    def headers(self, path: str) -> dict[str, str]:
        """Fresh headers for one upgrade request of `path` (the URL path, no query)."""
        stamp = self._clock_ms()
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: self.sign(stamp, path),
        }
