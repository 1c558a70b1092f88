"""The output formats of `kalshi-tape query`, by name.

Names only, so that the command line checks `--format` without loading pyarrow;
`replay.sql.output` writes them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FORMATS", "FORMAT_ALIASES"]

FORMATS: Final[tuple[str, ...]] = ("table", "csv", "jsonl", "parquet")
#: Older names of a format, still accepted: `json` wrote JSON lines before it was `jsonl`.
FORMAT_ALIASES: Final[dict[str, str]] = {"json": "jsonl"}
