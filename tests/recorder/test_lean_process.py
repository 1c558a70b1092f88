"""The recorder's processes stay lean: none of them imports pandas.

pyarrow imports pandas, when it is installed, the first time it builds an array or a
scalar from Python objects (to ask whether the object is a pandas one). The recorder
never hands pyarrow a pandas object, yet that probe cost each of its processes 0.3 s and
about 58 MiB of RSS (measured: peak RSS of `record --sim` 175 MiB with the probe, 118 MiB
without). The test extra installs pandas (through Dask's dataframe extra), so the probe
would fire here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def test_no_recorder_process_imports_pandas_though_it_is_installed(tmp_path: Path) -> None:
    assert importlib.util.find_spec("pandas"), "the test extra installs pandas"
    root = tmp_path / "data"
    # -X importtime reaches the spawned publisher too (multiprocessing passes the flag on);
    # the short segments make the child publish during the run, and the leftover is
    # published by the recorder itself at close.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kalshi_tape", "record", "--no-progress",
         "--sim", "--duration", "3s", "--sim-rate", "2000", "--root", str(root)],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "pyarrow.parquet" in imported  # the publishing processes were watched
    # a refused attempt is listed too (as "pandas", in microseconds); pandas itself
    # would bring its submodules
    assert not [name for name in imported if name.startswith("pandas.")]
