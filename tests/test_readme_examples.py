"""The README's and docs' examples run as written, and print what a person wants to read.

A code block is runnable when the line before its fence is `<!-- runnable -->`. Python
blocks run in a fresh interpreter, shell blocks in bash (`-e -o pipefail`), both with
the repository as the working directory, so `examples/sample` and `.venv/bin/kalshi-tape`
mean what they mean to a reader of a fresh clone. A runnable block must not write files
(give it a `-o` under a temporary directory if it has to). The installs a block needs are
the extras the `test` extra includes (`readers`: Polars, Dask's DataFrames).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^<!-- runnable -->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: What a person does not want to read: Python's reprs of our values.
REPRS = ("Level(", "Decimal(", "LevelUnits(", "object at 0x")


def runnable_blocks() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((f"{doc.name}:{line}", match.group(1), match.group(2)))
    return found


BLOCKS = runnable_blocks()


def test_the_readme_marks_its_examples_runnable() -> None:
    readme = [b for b in BLOCKS if b[0].startswith("README.md")]
    assert {lang for _, lang, _ in readme} >= {"python", "sh"}
    assert len(readme) >= 4


@pytest.mark.parametrize(("where", "lang", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_a_runnable_example_runs_as_written_and_prints_values_not_reprs(
    where: str, lang: str, code: str
) -> None:
    if lang == "python":
        argv = [sys.executable, "-c", code]
    elif lang in ("sh", "bash"):
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        pytest.fail(f"{where}: a runnable block must be python or sh, not {lang}")
    before = sorted(p.name for p in ROOT.iterdir())
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{where}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{where} printed nothing"
    assert "Traceback" not in proc.stderr, proc.stderr
    for text in REPRS:
        assert text not in proc.stdout, f"{where} prints a repr ({text}...)"
    assert sorted(p.name for p in ROOT.iterdir()) == before, f"{where} left files behind"
