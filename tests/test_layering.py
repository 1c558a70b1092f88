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


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file: a type-only or a
    function-level import ties two modules as much as a top-level one)."""
    paths = [p for package in (*PACKAGES, "kalshi_tape") for p in _sources(package)]
    modules = {_module_of(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        edges = graph.setdefault(_module_of(path), set())
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                names = [n if n in modules else node.module for n in names]
            edges.update(n for n in names if n in modules)
    for module, edges in graph.items():
        edges.discard(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


#: Inside `recorder` and `replay` (docs/architecture.md section 2): the other
#: sub-packages each sub-package's modules may import. The link and the storage pipeline
#: know nothing of each other or of the service that runs them; capture reading knows
#: nothing of SQL, backtests or the server, which all read through it.
SUBPACKAGE_MAY_IMPORT = {
    "recorder.link": set(),
    "recorder.storage": set(),
    "recorder.service": {"recorder.link", "recorder.storage"},
    "replay.reading": set(),
    "replay.sql": {"replay.reading"},
    "replay.backtest": {"replay.reading"},
    "replay.server": {"replay.reading"},
    "replay.datasets": {"replay.reading", "replay.backtest"},
    "replay.report": {"replay.reading", "replay.sql", "replay.datasets", "replay.merge"},
    "replay.merge": {"replay.reading"},
}
#: Modules of a package that every sub-package may import (its exceptions and such).
SHARED_MODULES = {"recorder.errors", "recorder.orphans", "replay.errors"}
#: The command-line shared helpers, for command-line modules only.
CLI_SHARED = "replay.cli_common"


def _subpackage(module: str) -> str | None:
    found = (p for p in SUBPACKAGE_MAY_IMPORT if module == p or module.startswith(p + "."))
    return next(found, None)


def _subpackage_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        own = _subpackage(module)
        if own is None:
            continue
        is_cli = module.endswith((".cli", "_cli", ".command", ".__main__"))
        for target in sorted(edges):
            top = own.split(".")[0]
            if not target.startswith(top + ".") or target in SHARED_MODULES:
                continue
            if target == CLI_SHARED and is_cli:
                continue
            theirs = _subpackage(target)
            if theirs != own and theirs not in SUBPACKAGE_MAY_IMPORT[own]:
                found.append(f"{module} imports {target}")
    return found


def test_sub_packages_import_only_the_sub_packages_below_them() -> None:
    assert _subpackage_violations(_import_graph()) == []


def test_the_sub_package_check_catches_a_violation() -> None:
    graph = {
        "recorder.storage.journal": {"recorder.link.sink", "recorder.errors"},
        "recorder.service.app": {"recorder.link.live", "recorder.storage.journal"},
        "replay.reading.session": {"replay.sql.connection"},
        "replay.sql.verify": {"replay.cli_common"},
        "replay.sql.cli": {"replay.cli_common", "replay.reading.layout"},
    }
    assert _subpackage_violations(graph) == [
        "recorder.storage.journal imports recorder.link.sink",
        "replay.reading.session imports replay.sql.connection",
        "replay.sql.verify imports replay.cli_common",
    ]
