"""kalshi-tape: record, replay and query the Kalshi WebSocket API.

This package is only the command-line glue; the work lives in `schemas`,
`stream`, `recorder` and `replay`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
