"""kalshi-tape: record, replay and query the Kalshi WebSocket API.

This package is only the command-line glue; the work lives in `schemas`,
`stream`, `recorder` and `replay`. The version is written once, in
pyproject.toml, and read here from the installed package's metadata.
"""

import os
from importlib import metadata

# The commands read and write captures with Arrow's jemalloc pool, which gives freed
# memory back to the system far sooner than pyarrow's default: a replay's peak stays
# bounded (docs/performance.md section 4.18). Set before anything imports pyarrow; a
# pool the user chose in the environment is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

try:
    __version__ = metadata.version("kalshi-tape")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
