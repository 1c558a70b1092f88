"""The environment variables that name a Kalshi API key, read by `auth`.

Names only, no crypto library: `kalshi-tape record --help` shows them without
loading `cryptography`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENV_KEY_ID", "ENV_PASSPHRASE", "ENV_PRIVATE_KEY_PATH"]

ENV_KEY_ID: Final = "KALSHI_API_KEY_ID"
ENV_PRIVATE_KEY_PATH: Final = "KALSHI_PRIVATE_KEY_PATH"
ENV_PASSPHRASE: Final = "KALSHI_PRIVATE_KEY_PASSPHRASE"
