"""The project's documents hold together: links resolve, citations name real sections,
the version is written once, the license is the one declared, the extras are split.

These read the files of the repository; they start nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import kalshi_tape

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)
CITATION = re.compile(r"docs/(\w+)\.md(?: (sections? [\d.]+(?:(?:, | and | to |-)[\d.]*\d)*))?")
NOTEBOOK = re.compile(r"\b(PROTOCOL|PERFORMANCE|ARCHITECTURE|STYLE)\.md\b")
SOURCE_DIRS = ("schemas", "stream", "recorder", "replay", "kalshi_tape", "bench", "tests")


def slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rule) gives a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(path.read_text())}


def test_the_docs_cover_architecture_protocol_performance_and_operations() -> None:
    assert {p.name for p in DOCS} >= {
        "architecture.md",
        "protocol.md",
        "performance.md",
        "operations.md",
    }


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def _code() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    files = [p for p in files if not any(part.startswith(".") for part in p.parts)]
    return [*files, ROOT / "deploy" / "kalshi-tape.service", ROOT / "pyproject.toml"]


def test_every_citation_of_the_docs_names_a_section_that_exists() -> None:
    sections = {
        doc.stem: {m.group(1) for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)*) ", doc.read_text(),
                                                   re.MULTILINE)}
        for doc in DOCS
    }  # fmt: skip
    missing = []
    for path in [*_code(), *MARKDOWN]:
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            for name, cited in CITATION.findall(line):
                where = f"{path.relative_to(ROOT)}:{line_no}"
                if name not in sections:
                    missing.append(f"{where}: docs/{name}.md does not exist")
                elif not cited and path.suffix != ".md":  # code cites a section, always
                    missing.append(f"{where}: cites docs/{name}.md without a section")
                for number in re.findall(r"\d+(?:\.\d+)*", cited):
                    if number not in sections.get(name, ()):
                        missing.append(f"{where}: docs/{name}.md has no section {number}")
    assert missing == []


def test_nothing_in_the_project_names_the_teams_private_notes() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*_code(), *MARKDOWN]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if NOTEBOOK.search(line)
    ]
    assert found == []


def test_the_version_is_written_once_in_pyproject_and_read_from_the_package_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = project["version"]
    assert kalshi_tape.__version__ == version
    mentions = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "kalshi_tape").rglob("*.py")
        if re.search(rf"['\"]{re.escape(version)}['\"]", p.read_text())
    ]
    assert mentions == []
    out = subprocess.run([sys.executable, "-m", "kalshi_tape", "--version"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    assert out.strip() == f"kalshi-tape {version}"


def test_the_license_file_is_the_apache_license_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_linters_are_in_the_dev_extra_and_the_test_extra_runs_the_suite() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {k: {re.split(r"[<>=\[ ]", d)[0] for d in v} for k, v in extras.items()}
    assert {"ruff", "mypy"} <= names["dev"]
    assert not {"ruff", "mypy"} & names["test"]
    runner = {"pytest", "pytest-timeout", "pytest-xdist", "pytest-asyncio", "hypothesis"}
    assert runner <= names["test"]


PUBLIC_PACKAGES = (
    "schemas",
    "stream",
    "recorder",
    "recorder.link",
    "recorder.storage",
    "recorder.service",
    "replay",
    "replay.reading",
    "replay.sql",
    "replay.backtest",
    "replay.server",
)


def _readme_imports() -> list[str]:
    """Every import statement of the README's Python examples (fenced or indented)."""
    text = (ROOT / "README.md").read_text()
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"^(from [\w.]+ import [\w, ]+|import [\w., ]+( as \w+)?)$", stripped):
            found.append(stripped)
    return found


def test_the_readme_imports_work_in_a_fresh_interpreter() -> None:
    imports = _readme_imports()
    assert "from replay import ReplaySession" in imports  # the faces, not module paths
    assert "from recorder import Credentials, LiveSession" in imports
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(imports)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_exists_and_the_package_says_what_it_is(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    assert module.__doc__ and len(module.__doc__.split()) > 20
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert missing == []
    assert set(module.__all__) <= set(dir(module))


def test_importing_the_faces_loads_neither_duckdb_nor_dask_nor_websockets() -> None:
    code = (
        "import sys, recorder, replay, recorder.storage, replay.sql, replay.backtest\n"
        "print(sorted(m for m in ('duckdb', 'dask', 'distributed', 'websockets') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_the_examples_import_what_exists(example: Path) -> None:
    import ast

    tree = ast.parse(example.read_text())
    imports = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0)
    ]
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(imports)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
