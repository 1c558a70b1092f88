"""kalshi-tape: record, replay and query the Kalshi WebSocket API.

This package is only the command-line glue; the work lives in `schemas`,
`stream`, `recorder` and `replay`. The version is written once, in
pyproject.toml, and read here from the installed package's metadata.
"""

from importlib import metadata

try:
    __version__ = metadata.version("kalshi-tape")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
