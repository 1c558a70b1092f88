"""A capture seen at a glance: one self-contained HTML report (`kalshi-tape report`).

The report is one file that opens offline (plotly.js, the page's script and its
style are inlined; no CDN, no server). It shows the capture's header and `verify`
verdict, a timeline of every connection, frame rates with disconnects, gaps and
resyncs marked, receive latency against the exchange's timestamps, the table of
seq gaps, per-market quotes and trades from the research datasets, and storage.

* `gather_report(root, start=..., end=..., markets=...)` reads the capture (DuckDB
  SQL through `replay.sql`, quotes and trades through `replay.datasets.table`),
  aggregated to bounded sizes: a 10M-frame day gives a few hundred kB of data.
* `render_report(data)` turns that into the HTML text; `write_report` does both
  and writes the file.

The names below load on first use: `import replay` loads neither DuckDB nor plotly.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "ReportData": "replay.report.gather",
    "gather_report": "replay.report.gather",
    "render_report": "replay.report.page",
    "write_report": "replay.report.page",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
