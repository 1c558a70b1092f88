"""The import direction of docs/architecture.md section 2: schemas <- stream <- {recorder, replay}.

`stream` is pure: it imports no I/O library and reads no clock; time arrives on
its inputs. These tests read the source (every import statement, every clock
call) and also import `stream` in a fresh interpreter to see what it loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIRD_PARTY_IO = {"websockets", "pyarrow", "duckdb", "apscheduler"}
# asyncio itself imports socket and subprocess, so these are checked in the source only.
IO_LIBRARIES = THIRD_PARTY_IO | {"socket", "ssl", "subprocess"}
PACKAGES = ("schemas", "stream", "recorder", "replay")
BANNED = {
    "schemas": {
        "stream",
        "recorder",
        "replay",
        "kalshi_tape",
        "websockets",
        "duckdb",
        "apscheduler",
    },
    "stream": {"recorder", "replay", "kalshi_tape"} | IO_LIBRARIES,
    "recorder": {"replay", "kalshi_tape"},
    "replay": {"recorder", "kalshi_tape"},
}
CLOCK_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "perf_counter_ns"),
    ("time", "sleep"),
    ("asyncio", "sleep"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("loop", "time"),
}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _sources(package)
        for line, name in _imports(path)
        if name.split(".")[0] in BANNED[package]
    ]
    assert violations == []


def test_stream_reads_no_clock() -> None:
    violations = []
    for path in _sources("stream"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if (name, node.func.attr) in CLOCK_CALLS:
                    violations.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {name}.{node.func.attr}"
                    )
    assert violations == []


def test_importing_stream_loads_no_io_library() -> None:
    code = (
        "import sys, stream, schemas;"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {THIRD_PARTY_IO!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_layering_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom replay.server import x\n")
    assert (2, "replay.server") in _imports(bad)
