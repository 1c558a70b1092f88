"""Subcommands owned by the historical edge: serve, replay, query, verify, inspect, backtest,
export, report, derive, merge.

Each lives in its own module with a `register(subparsers)` function; this module
only collects them for `kalshi_tape.cli`. Those modules import their command's work
(the capture reader, DuckDB, the server...) in its handler, never at the top.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register"]

_MODULES = (
    "replay.server.command",
    "replay.reading.cli",
    "replay.sql.cli",
    "replay.backtest.cli",
    "replay.datasets.cli",
    "replay.datasets.export_cli",
    "replay.report.cli",
    "replay.merge.cli",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
