"""How the project writes durations and sizes on command lines and in configs.

One spelling everywhere: durations as `250ms`, `30s`, `5m`, `2h`, `1.5d` or plain
seconds (`30`, `0.5`); sizes as `512MB`, `4GiB`, `25%` (of physical memory) or plain
bytes. Parsers raise `ValueError` with a message that shows the accepted forms;
the command-line layers turn it into their own usage error. Nothing here reads a
clock or a file but `physical_memory_bytes`, which asks the OS once.
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = ["parse_duration_s", "parse_size_bytes", "physical_memory_bytes"]

_DURATION: Final = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>ms|s|m|h|d)?$")
_UNIT_S: Final[dict[str | None, float]] = {
    "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0,
}  # fmt: skip
_SIZE: Final = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]*)?)\s*(?P<unit>[kmgt]i?b?|b|%)?$")
_UNIT_BYTES: Final[dict[str, int]] = {"b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_duration_s(text: str) -> float:
    """`'30s'`, `'5m'`, `'2h'`, `'1.5d'`, `'250ms'` or plain seconds, in seconds.

    Raises:
        ValueError: not a duration, or negative.
    """
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (like 250ms, 30s, 5m, 2h)")
    return float(m["n"]) * _UNIT_S[m["unit"]]


def physical_memory_bytes() -> int | None:
    """The machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def parse_size_bytes(text: str) -> int:
    """`'512MB'`, `'4GiB'`, `'1.5G'`, `'25%'` (of physical memory) or plain bytes.

    Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB,
    TiB) powers of 1024.

    Raises:
        ValueError: not a size, or a percentage where the OS does not report memory.
    """
    m = _SIZE.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not a size (like 512MB, 4GiB or 25%)")
    number, unit = float(m["n"]), m["unit"] or "b"
    if unit == "%":
        total = physical_memory_bytes()
        if total is None or not 0 < number <= 100:
            raise ValueError(f"{text!r}: give a share between 0% and 100% of memory, or a size")
        return int(total * number / 100)
    scale = _UNIT_BYTES[unit[0]]
    if "i" in unit:
        scale = 1024 ** {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[0]]
    return int(number * scale)
