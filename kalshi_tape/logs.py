"""How `kalshi-tape` logs: the standard `logging` module, configured once by the command line.

This module owns the log's shape. Every subcommand takes `--log-level`
(debug, info, warning, error) and `--log-format` (`text`: one line per record with
a UTC timestamp, the level and the logger; `json`: one JSON object per line, for
journald, Loki and the like). Records go to stderr (stdout stays for results: a
URL, a table, JSONL). A warning with the same text is written once per process
(a clamped setting is checked at load and again at connect; saying it twice
helps nobody). Libraries (Dask distributed, websockets, ...) write WARNING and
above only, unless `--log-level debug`. Every record passes the credential filter
(`recorder.link.logfilter`) on its way out, whichever logger it came from.

A program that configured logging itself before calling `kalshi_tape.cli.main`
keeps its configuration: nothing is added or changed then.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
from typing import IO, Any, Final

__all__ = [
    "LEVELS",
    "JsonFormatter",
    "OnceFilter",
    "TextFormatter",
    "add_logging_arguments",
    "configure_logging",
    "json_logging_active",
]

LEVELS: Final = ("debug", "info", "warning", "error")
#: The attributes every LogRecord has; anything else was passed with `extra=` and is
#: written as a field of its own in the JSON form.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_NAME: Final = "kalshi-tape"
#: Libraries whose INFO records are for their own developers: WARNING and above only,
#: unless `--log-level debug`.
_LIBRARIES: Final = (
    "websockets", "apscheduler", "distributed", "dask", "bokeh", "tornado", "fsspec",
    "botocore", "urllib3", "asyncio",
)  # fmt: skip


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--log-level` and `--log-format` to a subcommand's parser."""
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", choices=LEVELS, default="info",
                       help="least severe records written to stderr (default info)")  # fmt: skip
    group.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="text lines, or one JSON object per line (default text)")  # fmt: skip


def _iso(created: float) -> str:
    stamp = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-11-21T09:31:00.123Z INFO    recorder: message` (UTC, milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        name = record.name.removeprefix("kalshi_tape.")
        line = f"{_iso(record.created)} {record.levelname:<7} {name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class OnceFilter(logging.Filter):
    """Lets each distinct warning (logger and text) through once; other levels pass."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (a live progress table redirects it)."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed = value


def configure_logging(
    level: str = "info", fmt: str = "text", stream: IO[str] | None = None
) -> bool:
    """Send every record at `level` or above to stderr (or `stream`) in `fmt`.

    Returns False, changing nothing, when the root logger already has a handler
    of someone else's (a program embedding the command configured logging itself).
    Calling it again replaces the previous configuration of this module.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
    if root.handlers and not ours:
        return False
    for handler in ours:
        root.removeHandler(handler)
    handler = _StderrHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(OnceFilter())
    try:  # redaction on the way out too: a child logger's records skip its parents' filters
        from recorder.link.logfilter import install_redaction

        handler.addFilter(install_redaction())
    except ModuleNotFoundError:  # pragma: no cover - a build without the recorder
        pass
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # Libraries' chatter (websockets logs every frame at DEBUG, APScheduler each job at
    # INFO, Dask distributed its scheduler, nannies and workers at INFO) only when debug
    # was asked for.
    quiet = logging.DEBUG if level == "debug" else max(logging.WARNING, root.level)
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    # Dask distributed sets its loggers' levels from its config when it is imported (in
    # this process and in each worker process): say it there too, unless the user did.
    os.environ.setdefault(
        "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", logging.getLevelName(quiet).lower()
    )
    return True


def json_logging_active() -> bool:
    """True when this module configured JSON output (errors then go out as JSON too)."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == _HANDLER_NAME:
            return isinstance(handler.formatter, JsonFormatter)
    return False
