"""`kalshi-tape --help` and a usage error load no heavy library.

Every `kalshi-tape` process builds the whole parser (every command's flags) before it
runs one command; the test suite alone starts the command about 150 times. Building
the parser and parsing the arguments therefore need only the standard library and
light project modules: each command imports pyarrow, DuckDB, numba, the WebSocket
and crypto libraries, pydantic... in its handler, when it runs. Measured on this
change, `kalshi-tape --help` took 0.85 to 1 s and 110 MiB of peak RSS when the parser
loaded them all, 0.15 to 0.18 s and 21 MiB without.

The probe runs in a fresh interpreter (what is already imported in this one says
nothing): `kalshi_tape.cli.main` with `--help`, each command's `--help`, and a usage
error of each command (an unknown flag after its positionals, and a bad value for a
flag checked while parsing), then lists the heavy modules loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: Libraries only a command's work may load (top-level package names).
HEAVY = ("cryptography", "dask", "duckdb", "numba", "numpy", "pandas", "picows",
         "plotly", "pyarrow", "pydantic", "websockets")  # fmt: skip
#: Flags whose values are checked while parsing (argument types), with a bad value each.
BAD_VALUES = [
    ["record", "--duration", "soon"],
    ["record", "--segment-size", "big"],
    ["serve", "--settle-every", "often"],
    ["query", "ROOT", "SELECT 1", "--format", "xml"],
    ["query", "ROOT", "SELECT 1", "--memory-limit", "lots"],
    ["backtest", "mod:fn", "ROOT", "--slice", "0"],
    ["backtest", "mod:fn", "ROOT", "--market-groups", "none"],
]

PROBE = """
import argparse, contextlib, io, json, sys
from kalshi_tape.cli import build_parser, main

HEAVY = set(sys.argv[1].split(","))
sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
runs = [["--help"]]
for name, command in sub.choices.items():
    positionals = [
        a.choices and next(iter(a.choices)) or a.metavar or "x"
        for a in command._actions
        if not a.option_strings and a.nargs != "?"
    ]
    runs += [[name, "--help"], [name, *positionals, "--no-such-flag"]]
runs += json.loads(sys.argv[2])
report = []
for argv in runs:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    heavy = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
    report.append({"argv": argv, "status": status, "stderr": err.getvalue(), "heavy": heavy})
print(json.dumps(report))
"""


def probe(preload: str = "") -> list[dict[str, Any]]:
    """What each run of the probe gave: its argv, exit status, stderr and heavy modules."""
    code = f"{preload}\n{PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", code, ",".join(HEAVY), json.dumps(BAD_VALUES)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    report: list[dict[str, Any]] = json.loads(done.stdout)
    return report


def test_help_and_usage_errors_load_no_heavy_library() -> None:
    report = probe()
    commands = {run["argv"][0] for run in report}
    assert {"record", "serve", "replay", "query", "derive", "export", "merge"} <= commands
    for run in report:
        argv = run["argv"]
        assert run["heavy"] == [], f"{argv} loaded {run['heavy']}"
        if "--help" in argv:
            assert run["status"] == 0, argv
        else:  # one line, the command's usage error, status 2
            assert run["status"] == 2, (argv, run["stderr"])
            lines = run["stderr"].splitlines()
            assert len(lines) == 1 and ": error: " in lines[0], (argv, lines)


def test_the_probe_sees_a_heavy_library() -> None:
    """The check above would fail if a parser loaded one (here: loaded beforehand)."""
    report = probe(preload="import numpy")
    assert all(run["heavy"] == ["numpy"] for run in report)
