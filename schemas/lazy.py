"""Lazy package faces: a package's public names, each imported on first use.

`recorder` and `replay` export their API from `__init__` (`from replay import
ReplaySession`), but importing a package must not load what its public names
need: a publisher child process that imports `recorder.storage.root.publisher` must not
pay for the live client's WebSocket and crypto libraries, and `record` must not
load DuckDB. `lazy_exports` gives a package the module-level `__getattr__` and
`__dir__` of PEP 562 over a table of name -> defining module, so `__all__`,
`dir()` and `from package import Name` work as for eager imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of the package whose globals are `namespace` and
    whose public `name` lives in the module `exports[name]` (imported, and the name
    cached in `namespace`, on first use). In the package's `__init__`::

        __getattr__, __dir__ = lazy_exports(globals(), {"Name": "package.module"})

    A name that is the package's own sub-package (`{"sql": "replay.sql"}`) gives the
    sub-package itself, so `import replay; replay.sql.connect(...)` works too.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(module)
        value = loaded if module == f"{package}.{name}" else getattr(loaded, name)
        namespace[name] = value  # later lookups find it without this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
