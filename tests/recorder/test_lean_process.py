"""kalshi-tape's own processes stay lean: none of them imports pandas.

pyarrow imports pandas, when it is installed, the first time it turns a Python object
into an array or scalar (to ask whether the object is a pandas one). kalshi-tape never
hands pyarrow a pandas object, yet that probe cost each process 0.3 s and tens of MiB
of RSS (docs/performance.md section 4.19). The test extra installs pandas (through
Dask's dataframe extra), so the probe would fire here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
KALSHI_TAPE = [sys.executable, "-X", "importtime", "-m", "kalshi_tape"]


def imported_by(*args: str) -> set[str]:
    """The modules `kalshi-tape ARGS` imported, in every process it started (-X importtime
    reaches the spawned publisher: multiprocessing passes the flag on)."""
    proc = subprocess.run([*KALSHI_TAPE, *args], capture_output=True, text=True, timeout=90,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}  # fmt: skip


def pandas_loaded(modules: set[str]) -> bool:
    # a refused attempt is listed too (as "pandas", in microseconds); pandas itself
    # brings its submodules
    return any(name.startswith("pandas.") for name in modules)


def test_record_and_replay_import_no_pandas_though_it_is_installed(tmp_path: Path) -> None:
    assert importlib.util.find_spec("pandas"), "the test extra installs pandas"
    root = tmp_path / "data"
    recorded = imported_by("record", "--no-progress", "--sim", "--duration", "3s",
                           "--sim-rate", "2000", "--root", str(root))  # fmt: skip
    assert "pyarrow.parquet" in recorded  # the publishing processes were watched
    assert not pandas_loaded(recorded)
    replayed = imported_by("replay", str(root), "--format", "jsonl")
    assert "replay.reading.capture" in replayed
    assert not pandas_loaded(replayed)


def test_kept_out_pandas_leaves_pyarrow_working() -> None:
    code = (
        "import sys, pyarrow as pa, pyarrow.compute as pc\n"
        "from schemas.lean import keep_pandas_out\n"
        "keep_pandas_out()\n"
        "assert pc.sum(pc.add(pa.array([1, 2, 3]), 1)).as_py() == 9\n"
        "assert 'pandas' not in sys.modules\n"
        "try:\n"
        "    import pandas\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert "pandas is kept out of this process" in done.stdout
