"""Run every benchmark several times and rewrite bench/RESULTS.md.

    python bench/run.py                 # all bench_*.py, 5 runs each
    python bench/run.py engine -n 3     # only bench_engine.py, 3 runs

Each run is a fresh process (`python bench/bench_<name>.py --json`). Reported per
metric: the median over runs, min-max, and for metrics with a baseline the median
of the per-run ratios (value and baseline from the same run, so the ratio holds on
a noisy shared machine where absolute figures drift). Sections of scripts not run
this time are kept as they were.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LIBRARIES = ("msgspec", "pydantic", "pyarrow", "duckdb", "websockets", "cryptography")


def _cell(text: str) -> str:
    """A Markdown table cell: a `|` inside a name would start another column."""
    return text.replace("|", "\\|")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; " + ", ".join(versions)
    )


def run_once(script: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(script), "--json"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script.name} failed:\n{proc.stderr[-4000:]}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(last)


def fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return f"{v:.3f}"


def section(name: str, runs: list[dict]) -> str:
    by_name: dict[str, list[dict]] = {}
    for r in runs:
        for m in r["metrics"]:
            by_name.setdefault(m["name"], []).append(m)
    lines = [
        f"## {name}",
        "",
        f"{len(runs)} runs, {dt.date.today().isoformat()}. {machine()}",
        "",
        "| metric | median | min - max | unit | target | ratio to baseline (median) |",
        "|---|---:|---:|---|---|---:|",
    ]
    for metric, ms in by_name.items():
        vals = [m["value"] for m in ms]
        first = ms[0]
        ratio = ""
        if first.get("baseline"):
            ratios = []
            for r in runs:
                cur = {m["name"]: m["value"] for m in r["metrics"]}
                if cur.get(first["baseline"]):
                    ratios.append(cur[metric] / cur[first["baseline"]])
            if ratios:
                ratio = f"{statistics.median(ratios):.2f} of {first['baseline']}"
        cells = [metric, fmt(statistics.median(vals)), f"{fmt(min(vals))} - {fmt(max(vals))}",
                 first["unit"], first.get("target") or "", ratio]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    notes = {r.get("notes", "") for r in runs} - {""}
    if notes:
        lines += ["", *sorted(notes)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("-n", "--runs", type=int, default=5)
    args = ap.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
        if not scripts:
            ap.error(f"no benchmark named {args.names}")
    sections: dict[str, str] = {}
    if RESULTS.exists():
        for block in re.split(r"(?m)^(?=## )", RESULTS.read_text()):
            if block.startswith("## "):
                sections[block.split("\n", 1)[0][3:].strip()] = block.rstrip() + "\n"
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        runs = []
        for i in range(args.runs):
            print(f"{name}: run {i + 1}/{args.runs}", file=sys.stderr)
            runs.append(run_once(script))
        sections[name] = section(name, runs)
    header = (
        "# Benchmark results\n\n"
        "Written by `python bench/run.py`; do not edit by hand. Medians of several fresh-process\n"
        "runs. The machine is shared and noisy: read the ratio column (a figure and its baseline\n"
        "measured in the same run), not absolute figures across sections or days.\n\n"
    )
    RESULTS.write_text(header + "\n".join(sections[k] for k in sorted(sections)))
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
