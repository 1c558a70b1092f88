"""A file that appears whole or not at all: what every output of the historical edge is.

This module owns one rule: results (a query's CSV, a replay's JSONL, a report, an
export) are written under a temporary name in the target's directory and renamed over
it when complete, so a failure or an interrupt leaves no file and never a half-written
one. The finished file gets the mode any new file gets under the process's umask
(0644 under 022), not the temporary file's private 0600. It knows nothing of formats.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_file"]


def _new_file_mode() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then put it back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` when the block completes.

    Raises:
        OSError: the temporary file cannot be made or written (the caller names it).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
