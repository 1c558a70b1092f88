"""Where a capture lives: a local directory or an object-store URI, and how to reach it.

This module owns the one translation every edge shares from a capture root as the
user wrote it (`data`, `s3://bucket/prefix`, `gs://...`) to a pyarrow filesystem and a
path on it, with the storage settings (endpoint, region, credentials) taken from the
standard AWS environment and overridden by flags:

    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)   --endpoint-url URL
    AWS_REGION (or AWS_DEFAULT_REGION)          --region REGION
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,   (environment or the AWS credential chain
    AWS_SESSION_TOKEN                            only: secrets never go on a command line)
                                                --anonymous (unsigned requests)

It also owns `add_storage_arguments` / `storage_from_args`, the flags every command that
reads or writes a capture takes, and `StorageError`'s one-line wording of a failure to
reach the storage. Building a filesystem sends no request: the first request is made by
whoever lists or opens a file. `s3://` goes to pyarrow's S3 filesystem; any other URI to
`pyarrow.fs.FileSystem.from_uri`, and a scheme pyarrow lacks to fsspec when it is
installed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from schemas.errors import ConfigError, StorageUnavailable

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = [
    "StorageError",
    "StorageOptions",
    "add_storage_arguments",
    "filesystem_for",
    "is_remote",
    "storage_from_args",
    "unreachable",
]

#: How long one connection attempt may take before pyarrow gives up on it (seconds).
_CONNECT_TIMEOUT_S: Final = 10.0


class StorageError(StorageUnavailable, OSError):
    """The storage of a capture root cannot be reached, or refuses the request.

    The message is one line: the root, what went wrong and what to check. The command
    line prints it and exits with `StorageUnavailable.exit_code` (4), as for a local
    disk that is gone; nothing is lost (a recorder keeps its journal). It is also an
    `OSError`, so code that handles a failed read or write handles this one too.
    """


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """Endpoint, region and credentials for object-store roots (unused for local ones).

    Credentials left None fall back to pyarrow's AWS credential chain (profiles,
    instance roles). Secrets are kept out of `repr`.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    anonymous: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> StorageOptions:
        """The options the standard AWS environment gives, with `overrides` (None: unset)."""
        env = os.environ if env is None else env
        options = cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(options, **given) if given else options


def is_remote(root: str | os.PathLike[str]) -> bool:
    """True for a URI other than `file://` (a root pyarrow or fsspec must open)."""
    text = os.fspath(root)
    return "://" in text and not text.startswith("file://")


def filesystem_for(
    root: str | os.PathLike[str], options: StorageOptions | None = None
) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) of a root given as a URI; `s3://` uses `options`.

    Raises:
        ConfigError: the URI names no filesystem pyarrow (or fsspec) knows.
    """
    import pyarrow.fs as pafs

    text = os.fspath(root)
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("s3", "s3a"):
        path = text.split("://", 1)[1].strip("/")
        if not path:
            raise ConfigError("ROOT", f"{text!r} names no bucket", "use s3://bucket/prefix")
        return _s3(options or StorageOptions.from_env()), path
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except ValueError:  # pyarrow knows no such scheme (ArrowInvalid)
        return _fsspec(text, scheme), text.split("://", 1)[1].rstrip("/")
    except OSError as exc:
        raise unreachable(text, exc) from None
    return fs, path.rstrip("/")


def _s3(options: StorageOptions) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    if options.endpoint_url:
        parts = urlsplit(options.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                "--endpoint-url",
                f"{options.endpoint_url!r} is not an http(s) URL",
                "e.g. http://127.0.0.1:9000 or https://s3.us-east-1.amazonaws.com",
            )
        kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        kwargs["scheme"] = parts.scheme
    if options.region:
        kwargs["region"] = options.region
    if options.anonymous:
        kwargs["anonymous"] = True
    elif options.access_key_id and options.secret_access_key:
        kwargs["access_key"] = options.access_key_id
        kwargs["secret_key"] = options.secret_access_key
        if options.session_token:
            kwargs["session_token"] = options.session_token
    return pafs.S3FileSystem(**kwargs)


def _fsspec(uri: str, scheme: str) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    try:
        import fsspec
    except ModuleNotFoundError:
        raise ConfigError(
            "ROOT", f"pyarrow has no filesystem for {scheme}:// roots", "install fsspec"
        ) from None
    try:
        impl = fsspec.filesystem(scheme)
    except (ImportError, ValueError) as exc:
        raise ConfigError("ROOT", f"no filesystem for {uri!r}: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(impl))


def unreachable(root: str | os.PathLike[str], exc: BaseException) -> StorageError:
    """A one-line `StorageError` for a failed request under `root`, saying what to check."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    upper = text.upper()
    if any(k in upper for k in ("ACCESS_DENIED", "INVALID_ACCESS_KEY", "SIGNATURE", "FORBIDDEN")):
        hint = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's permissions"
    elif any(k in upper for k in ("NETWORK_CONNECTION", "COULD NOT CONNECT", "TIMEOUT", "RESOLVE")):
        hint = "check --endpoint-url / AWS_ENDPOINT_URL and that the service is up"
    elif "NO_SUCH_BUCKET" in upper:
        hint = "create the bucket, or check the root's spelling"
    else:
        hint = "check the root, the endpoint and the credentials"
    return StorageError(f"cannot reach the storage of {os.fspath(root)}: {text} ({hint})")


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the object-storage flags to a subcommand that reads or writes a capture."""
    group = parser.add_argument_group("object storage (s3:// roots)")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default $AWS_ENDPOINT_URL)",
    )
    group.add_argument("--region", metavar="REGION", help="bucket region (default $AWS_REGION)")
    group.add_argument(
        "--anonymous",
        action="store_true",
        default=None,
        help="send unsigned requests (public buckets); credentials come from "
        "$AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY or the AWS credential chain",
    )


def storage_from_args(args: argparse.Namespace) -> StorageOptions:
    """The storage options of a command: its flags over the AWS environment."""
    return StorageOptions.from_env(
        endpoint_url=getattr(args, "endpoint_url", None),
        region=getattr(args, "region", None),
        anonymous=getattr(args, "anonymous", None),
    )
