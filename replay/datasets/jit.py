"""numba's on-disk cache, kept honest about the modules a kernel calls into.

numba keys a cached function on its own source file only (its docs say so: changes to
the functions it calls are not detected). `kernel.run` compiled against one
`ladders.py` would be loaded unchanged after `ladders.py` changed, with its functions
inlined as they were: in an editable install updated by `git pull`, where only the
changed files get new times, a kernel could read the books in a layout they no longer
have. `forget_if_changed(module, deps)`, called at the end of each module whose kernels
call another module's, drops that module's cached kernels when the sources of those
modules changed since they were compiled (a digest kept beside the cache).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

__all__ = ["forget_if_changed"]


def forget_if_changed(module: str, dispatcher: object, deps: tuple[str, ...]) -> None:
    """Drop `module`'s cached kernels if the source of any of `deps` (module names)
    changed since they were compiled. `dispatcher` is one of `module`'s cached kernels
    (it tells where numba keeps the cache)."""
    cache = getattr(dispatcher, "_cache", None)
    folder = getattr(cache, "_cache_path", None)
    if folder is None:  # caching unavailable (numba keeps nothing on disk)
        return
    digest = hashlib.sha256()
    for name in deps:
        digest.update(Path(sys.modules[name].__file__ or "").read_bytes())
    stamp = Path(folder) / f"{module.rsplit('.', 1)[-1]}.deps"
    try:
        if stamp.read_text() == digest.hexdigest():
            return
    except OSError:
        pass
    try:
        for old in Path(folder).glob(f"{module.rsplit('.', 1)[-1]}.*.nb[ic]"):
            old.unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only cache: numba cannot write there either
        return
