"""`kalshi-tape report` on a 1-day, 10M-frame capture: build time, page weight, load time;
and the plotting libraries (plotly, Bokeh, Vega-Altair) compared on the same charts.

The capture is `bench_sql`'s generator (70% orderbook deltas, 20% tickers, 8% trades,
2% snapshots over 500 markets, every message with `ts_ms`) spread over one UTC day,
cached under `bench/out/` (git-ignored). Measured in one process run:

* build: `gather_report` (SQL over the capture, verify, the quotes and trades datasets)
  plus `render_report`, as `kalshi-tape report` does; target under a minute;
* load: Debian's Chromium (headless, through Playwright, `/usr/bin/chromium`) opens the
  file, time from navigation start to the `report-ready` mark (every chart drawn);
  median of `--loads` loads; target under 3 s;
* the same charts (timeline, rates with markers, latency histogram and series, one
  market's quotes, trades and invalid intervals, storage) from the same data, each
  library's JS inlined: time to build the page from the data, page bytes and time to
  drawn. Bokeh is drawn when `embed_items` resolves, Vega when `vegaEmbed` resolves
  (its view has run), plotly when every `Plotly.newPlot` has resolved.

    python bench/bench_report.py                    # readable
    python bench/bench_report.py --json             # for bench/run.py
    python bench/bench_report.py --frames 1000000   # a smaller capture (cached apart)
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_sql
from _report_pages import altair_page, bokeh_page
from common import Metric, emit

from replay.report import gather_report, render_report

HERE = Path(__file__).resolve().parent
DAY_NS = 86_400_000_000_000
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
READY = {
    "plotly": "document.body.dataset.ready === '1'",
    "bokeh": "window.Bokeh && Bokeh.documents.length > 0 && window.__bokehDrawn === true",
    "altair": "window.__vegaDrawn === true",
}


def capture(frames: int) -> Path:
    """The cached 1-day capture of this size, generated on first use."""
    root = HERE / "out" / f"report_capture_{frames}"
    done = HERE / "out" / f"report_capture_{frames}.done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        # One frame every (1 day - 1 s) / frames: the run_stop lands on the same UTC day.
        bench_sql.STEP_NS = (DAY_NS - 1_000_000_000) // frames
        bench_sql.generate(root, frames)
        done.write_text("ok\n")
    return root


def load_ms(browser, path: Path, ready: str, loads: int) -> float:
    """Median ms from navigation start until `ready` holds, over `loads` fresh pages."""
    times = []
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_function(ready, polling="raf", timeout=60_000)
        times.append(page.evaluate("performance.now()"))
        page.close()
        if errors:
            raise SystemExit(f"{path.name}: {errors[0]}")
    return statistics.median(times)


def one_market(data):
    """The data with only the first market: the comparison pages draw one book chart."""
    slim = copy.copy(data)
    first = data.markets["chosen"][:1]
    slim.markets = dict(
        data.markets, chosen=first, data={m: data.markets["data"][m] for m in first}
    )
    return slim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = capture(args.frames)
    t0 = time.perf_counter()
    data = gather_report(root)
    t1 = time.perf_counter()
    page = render_report(data)
    t2 = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="bench-report-"))
    report = out / "report.html"
    report.write_text(page)
    slim = one_market(data)
    pages, build_s = {}, {}
    for name, make in (("plotly", render_report), ("bokeh", bokeh_page), ("altair", altair_page)):
        t = time.perf_counter()
        pages[name] = make(slim)
        build_s[name] = time.perf_counter() - t
    from playwright.sync_api import sync_playwright

    metrics = [
        Metric("build: gather + render", t2 - t0, "s", False, target="< 60 s"),
        Metric("build: gather (SQL, verify, datasets)", t1 - t0, "s", False),
        Metric("report page weight", len(page.encode()) / 1e6, "MB", False),
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        metrics.append(Metric("report load to report-ready (Chromium)",
                              load_ms(browser, report, READY["plotly"], args.loads), "ms", False,
                              target="< 3000 ms"))  # fmt: skip
        for name, html in pages.items():
            path = out / f"{name}.html"
            path.write_text(html)
            metrics.append(Metric(f"{name}: same charts, page build", build_s[name] * 1e3, "ms",
                                  False))  # fmt: skip
            metrics.append(Metric(f"{name}: same charts, page weight", len(html.encode()) / 1e6,
                                  "MB", False))  # fmt: skip
            metrics.append(Metric(f"{name}: same charts, load to drawn",
                                  load_ms(browser, path, READY[name], args.loads), "ms", False,
                                  baseline="plotly: same charts, load to drawn"))  # fmt: skip
        browser.close()
    shutil.rmtree(out, ignore_errors=True)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in data.timings_s.items())
    emit(
        metrics,
        notes=(
            f"{data.header['frames']:,} frames over one UTC day, {data.header['markets']} "
            f"markets, {len(data.markets['chosen'])} in the market picker "
            f"(quotes from {data.markets.get('source', '?')}); gather: {steps}. Loads: "
            f"median of {args.loads} in headless Chromium on this 2-core machine."
        ),
    )


if __name__ == "__main__":
    main()
