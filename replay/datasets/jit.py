"""numba's on-disk cache, kept honest about the modules a kernel calls into; `borrow`,
an array passed to helper functions without reference counting; and `load_u64` and
`store_u64`, eight bytes of an array in one load or store (the scanner's strings, the
market names' hashes, the copy of trade ids).

numba keys a cached function on its own source file only (its docs say so: changes to
the functions it calls are not detected). `kernel.run` compiled against one
`ladders.py` would be loaded unchanged after `ladders.py` changed, with its functions
inlined as they were: in an editable install updated by `git pull`, where only the
changed files get new times, a kernel could read the books in a layout they no longer
have. `forget_if_changed(module, deps)`, called at the end of each module whose kernels
call another module's, drops that module's cached kernels when the sources of those
modules changed since they were compiled (a digest kept beside the cache).

numba counts references to an array it got from Python: every call of a compiled
function that is not inlined increments and decrements the count of each array it
passes, with atomic instructions (numba's NRT_incref/NRT_decref), about 20 ns a pair.
The frame scanner calls its JSON primitives several times a frame with the frame's
bytes, the kernel its quote function with seven arrays a delta: profiled, those atomic
operations were a quarter of the scan's time. `borrow(a)` is `a` without an owner
(no meminfo), whose counting is a test of a null pointer; valid while `a` is, so only
inside the function that borrowed it (docs/performance.md section 6.3).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["borrow", "forget_if_changed", "is_cached", "load_u64", "store_u64"]


@intrinsic
def load_u64(typingctx: Any, array: Any, at: Any) -> Any:
    """The eight bytes of a uint8 `array` from index `at` as one little-endian uint64 (an
    unaligned load). The caller checks `at + 8 <= len(array)`."""
    if not (isinstance(array, types.Array) and array.dtype == types.uint8
            and isinstance(at, types.Integer)):  # fmt: skip
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(array)(context, builder, value=args[0]).data
        at_ = context.cast(builder, args[1], signature.args[1], types.intp)
        where = builder.bitcast(builder.gep(data, [at_]), ir.IntType(64).as_pointer())
        return builder.load(where, align=1)

    return types.uint64(array, at), codegen


@intrinsic
def store_u64(typingctx: Any, array: Any, at: Any, value: Any) -> Any:
    """Store `value` as eight little-endian bytes of a uint8 `array` from index `at` (an
    unaligned store). The caller checks `at + 8 <= len(array)`."""
    if not (isinstance(array, types.Array) and array.dtype == types.uint8
            and isinstance(at, types.Integer) and isinstance(value, types.Integer)):  # fmt: skip
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(array)(context, builder, value=args[0]).data
        at_ = context.cast(builder, args[1], signature.args[1], types.intp)
        word = context.cast(builder, args[2], signature.args[2], types.uint64)
        where = builder.bitcast(builder.gep(data, [at_]), ir.IntType(64).as_pointer())
        builder.store(word, where, align=1)
        return context.get_dummy_value()

    return types.void(array, at, value), codegen


@intrinsic
def borrow(typingctx: Any, array: Any) -> Any:
    """`array` as a view with no owner: passing it to a compiled function costs no
    reference counting. Use it only while `array` itself is alive (in the caller)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        source = context.make_array(array)(context, builder, value=args[0])
        view = context.make_array(array)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, name, getattr(source, name))
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return array(array), codegen


def is_cached(dispatcher: object) -> bool:
    """Whether numba's cache holds `dispatcher` compiled from its present source, so that
    its first call loads it instead of compiling it. Where numba's cache cannot tell
    (caching off, an index it cannot read), True: the answer only decides a notice."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is None:
        return True
    try:
        return bool(cache_file._load_index())  # {} when absent, stale or of another numba
    except Exception:  # numba's private index: any failure means "cannot tell"
        return True


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
