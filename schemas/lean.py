"""Keep pandas out of processes that never use it.

pyarrow imports pandas, when it is installed, the first time it turns a Python object
into an Arrow array or scalar (an `int` handed to a compute function included), to ask
whether the object is a pandas one. kalshi-tape never hands pyarrow a pandas object, yet
that probe costs a process about 0.3 s and tens of MiB of RSS: measured, a recorder's peak
RSS 175 MiB with it and 114 MiB without, its recovery at start 0.31 s and 0.06 s; a
replay of 10 M frames peaks 29 MiB higher with it (docs/performance.md section 4.19).

`keep_pandas_out()` makes pandas unimportable in the calling process: its import raises
`ModuleNotFoundError`, which pyarrow takes as "pandas is not installed". Only processes
kalshi-tape owns call it (the recorder, its publisher child, the commands other than
`backtest`, whose strategies are the user's); a library user's process is left alone.
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["keep_pandas_out"]


class _NoPandas(importlib.abc.MetaPathFinder):
    """Finds pandas nowhere, so that its import fails at once."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"pandas is kept out of this process ({fullname})",
                                      name=fullname)  # fmt: skip


def keep_pandas_out() -> None:
    """Make pandas unimportable in this process, unless something already imported it."""
    if "pandas" in sys.modules or any(isinstance(f, _NoPandas) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NoPandas())
