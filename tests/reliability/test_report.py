"""`report.py`: it renders the results tables and rewrites only the README's marked section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .report import END, START, render, rewrite_readme


def _results(directory: Path) -> Path:
    directory.mkdir()
    row = {
        "case": "gap", "kind": "gap", "title": "a seq skipped", "events": "gap x2 in `gaps`",
        "marks_ok": True, "reconnects": 0, "gaps": {"gap": 2}, "resyncs": 2, "unrecovered": 0,
        "verifies": True, "frames": 1234, "byte_exact": True, "lost": 0, "running": True,
        "books_equal": [True, True], "recover_s": [0.004, 0.012], "flowing": [True, True],
        "outcome": "passed",
    }  # fmt: skip
    (directory / "fault_matrix.json").write_text(json.dumps({"rows": [row]}))
    return directory


def test_the_matrix_renders_one_row_per_case_with_its_outcomes(tmp_path: Path) -> None:
    markdown = render(_results(tmp_path / "results"))
    line = next(x for x in markdown.splitlines() if x.startswith("| `gap`"))
    assert "1,234 frames byte-exact" in line and "gap 2, resyncs 2" in line
    assert "✓ 2/2" in line and "4 ms - 12 ms" in line


def test_only_the_marked_section_of_the_readme_is_rewritten(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    rewrite_readme(readme, "new table\n")
    assert readme.read_text() == f"# title\n\nbefore\n{START}\nnew table\n{END}\nafter\n"
    rewrite_readme(readme, "newer\n")  # idempotent shape: markers stay, once each
    assert readme.read_text().count(START) == 1 and "new table" not in readme.read_text()


def test_a_readme_without_the_markers_is_left_alone_with_a_clear_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n")
    with pytest.raises(SystemExit, match="add the markers"):
        rewrite_readme(readme, "table\n")
    assert readme.read_text() == "# title\n"


def test_a_crash_loop_renders_its_counts_and_recovery_times(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    row = {
        "case": "the whole recorder", "cycles": 25, "durable": 120456, "lost": 0, "doubled": 0,
        "unreadable": 0, "not_sent": 0, "verifies": True, "recovery_s_median": 0.031,
        "recovery_s_max": 1.5, "outcome": "passed",
    }  # fmt: skip
    (results / "crash.json").write_text(json.dumps({"rows": [row]}))
    line = next(x for x in render(results).splitlines() if x.startswith("| the whole"))
    assert line == (
        "| the whole recorder; capture verifies ✓ | 25 | 120,456 | 0 | 0 | 0 | 31 ms / 1.50 s | ✓ |"
    )
