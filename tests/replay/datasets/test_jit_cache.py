"""A cached kernel is compiled again when a module it calls into changes (numba itself
only looks at the kernel's own file): `replay.datasets.jit.forget_if_changed`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_DEP = """
from numba import njit

@njit(cache=True, inline="always")
def value():
    return {value}
"""
_USER = """
from numba import njit

import dep
from replay.datasets.jit import forget_if_changed

@njit(cache=True)
def kernel():
    return dep.value()

{check}
"""


def _run(folder: Path) -> str:
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{REPO}"}
    env.pop("NUMBA_CACHE_DIR", None)
    code = "import user; print(user.kernel())"
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def _build(folder: Path, check: bool) -> None:
    folder.mkdir()
    (folder / "dep.py").write_text(textwrap.dedent(_DEP.format(value=1)))
    line = 'forget_if_changed(__name__, kernel, ("dep",))' if check else ""
    (folder / "user.py").write_text(textwrap.dedent(_USER.format(check=line)))


def _change_dep(folder: Path) -> None:
    (folder / "dep.py").write_text(textwrap.dedent(_DEP.format(value=22)))


def test_a_kernel_is_compiled_again_when_a_module_it_calls_changes(tmp_path: Path) -> None:
    folder = tmp_path / "checked"
    _build(folder, check=True)
    assert _run(folder) == "1"
    assert _run(folder) == "1"  # from the cache
    assert list((folder / "__pycache__").glob("user.kernel-*.nbi"))
    _change_dep(folder)  # user.py untouched: numba alone would load the old kernel
    assert _run(folder) == "22"


def test_without_the_check_numba_loads_the_stale_kernel(tmp_path: Path) -> None:
    """What the check is for: the same steps without it give the old answer."""
    folder = tmp_path / "unchecked"
    _build(folder, check=False)
    assert _run(folder) == "1"
    _change_dep(folder)
    assert _run(folder) == "1"
