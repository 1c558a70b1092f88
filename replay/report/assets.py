"""The report page's own style and script, inlined into every report.

The script draws each figure of the `report-figures` JSON block into the element of
the same id, draws the chosen market's figure from `report-markets` (and redraws it
with `Plotly.react` when `#market-select` changes: the data is in the page, nothing is
fetched), and makes each gap row's link (and each arbitration move's or all-down
interval's, in the Feeds section) move the timeline and the rates chart to its time,
marked by a line. When every chart has drawn it sets
`document.body.dataset.ready = "1"` and the `report-ready` performance mark.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCRIPT", "STYLE"]

STYLE: Final = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1300px;margin:0 auto;padding:12px 24px}
h1{font-size:20px;margin:8px 0 0}h2{font-size:17px;margin:0 0 8px}
.sub{color:#666;margin:2px 0 8px}
nav{padding:6px 0;border-bottom:1px solid #ddd}
nav a{margin-right:14px;color:#1f4e9c;text-decoration:none}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:12px 16px;
margin:14px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dt{color:#666}dd{margin:0}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;width:100%}
th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}
tbody tr:hover{background:#f5f9ff}
#gaps .goto,#feeds .goto{color:#1f4e9c}
#gaps tr.focused,#feeds tr.focused{background:#fff3cd}
.verdict{font-size:15px;padding:6px 10px;border-radius:4px;display:inline-block}
.verdict.ok{background:#e6f4ea;color:#1e6b33}.verdict.corrupt{background:#fde8e8;color:#9b1c1c}
li.problem{color:#9b1c1c}li.warning{color:#8a5a00}
.note{color:#666;font-size:12.5px}
.chart{width:100%;min-height:220px}
select{font-size:14px;padding:2px 4px}
.wide{overflow-x:auto;max-width:100%}
.tall{max-height:420px;overflow-y:auto}
"""

SCRIPT: Final = """
(function () {
  "use strict";
  var figs = JSON.parse(document.getElementById("report-figures").textContent);
  var markets = JSON.parse(document.getElementById("report-markets").textContent);
  var config = {responsive: true, displaylogo: false};
  var jobs = [];
  Object.keys(figs).forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { jobs.push(Plotly.newPlot(el, figs[id].data, figs[id].layout, config)); }
  });
  var select = document.getElementById("market-select");
  var bookChart = document.getElementById("market-chart");
  function drawMarket(name) {
    var fig = markets[name];
    if (!fig) { return Promise.resolve(); }
    return Plotly.react(bookChart, fig.data, fig.layout, config).then(function () {
      bookChart.dataset.market = name;
    });
  }
  if (select && select.value) { jobs.push(drawMarket(select.value)); }
  if (select) {
    select.addEventListener("change", function () { drawMarket(select.value); });
  }
  function focusAt(t) {
    ["timeline-chart", "rates-chart"].forEach(function (id) {
      var el = document.getElementById(id);
      if (!el || !el.layout) { return; }
      var range = el.layout.xaxis.range.map(function (v) {
        return typeof v === "number" ? v : new Date(v.replace(" ", "T") + "Z").getTime();
      });
      var half = Math.max(2000, (range[1] - range[0]) / 8);
      var shapes = (el.layout.shapes || []).filter(function (s) { return s.name !== "focus"; });
      shapes.push({type: "line", name: "focus", xref: "x", yref: "paper", x0: t, x1: t,
                   y0: 0, y1: 1, line: {color: "#d62728", width: 2, dash: "dash"}});
      Plotly.relayout(el, {"xaxis.range": [t - half, t + half], shapes: shapes});
      el.dataset.focus = String(t);
    });
  }
  document.querySelectorAll("#gaps tbody tr[data-t], #feeds tbody tr[data-t]")
      .forEach(function (row) {
    var link = row.querySelector("a.goto");
    if (!link) { return; }
    link.addEventListener("click", function (event) {
      event.preventDefault();
      document.querySelectorAll("#gaps tr.focused, #feeds tr.focused").forEach(function (r) {
        r.classList.remove("focused");
      });
      row.classList.add("focused");
      focusAt(Number(row.dataset.t));
      document.getElementById("timeline").scrollIntoView({block: "start"});
    });
  });
  Promise.all(jobs).then(function () {
    document.body.dataset.ready = "1";
    if (window.performance && performance.mark) { performance.mark("report-ready"); }
  }, function (err) {
    document.body.dataset.ready = "error";
    console.error("report: a chart failed to draw", err);
  });
})();
"""
