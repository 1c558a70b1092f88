"""Exceptions of the `replay` package.

    ReplayError          base of what replay raises to a user
    └── NotInCapture     a subscription or filter asks for data the capture does not hold
                         (the message lists what it holds)

Bad paths and arguments are `schemas.errors.ConfigError` (the command line prints
them and exits 2); so is `NotInCapture`, being a request the capture cannot meet.
"""

from __future__ import annotations

from schemas.errors import ConfigError

__all__ = ["NotInCapture", "ReplayError"]


class ReplayError(Exception):
    """Base class of replay's own errors."""


class NotInCapture(ReplayError, ConfigError):
    """A subscription or filter names data the capture does not hold."""

    def __init__(self, message: str) -> None:
        ConfigError.__init__(self, "subscription", message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])
