"""The always-on monitoring next to the systemd unit: the Grafana dashboard and the alert rules.

`deploy/prometheus/alerts.yml` must pass `promtool check rules` and its own unit tests
(`deploy/prometheus/alerts.test.yml`, `promtool test rules`); `deploy/grafana/kalshi-tape.json`
must be a Grafana dashboard that imports anywhere (a `DS_PROMETHEUS` input). Every metric
either names (found by a small PromQL tokenizer) must be exported by a real running
`kalshi-tape record --sim --metrics-port`, scraped over HTTP: a dashboard or a rule over a
metric the recorder does not export would stay empty, or silent, forever.

promtool comes with Debian's `prometheus` package (`.ci/run` installs it); where it is
missing the promtool test is skipped, except under CI (`$CI` set), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.reliability._procs import REPO, free_port

pytestmark = pytest.mark.timeout(120)
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "kalshi-tape.json"
#: Metrics the recorder exports start so; others (Prometheus' own `up`) are not its to export.
OURS = ("kalshi_tape_", "process_", "python_")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![\w$:.])[A-Za-z_:][A-Za-z0-9_:]*")
_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The recorder's metric names a PromQL expression reads (string literals, label values
    and `$variables` left out)."""
    bare = _STRING.sub('""', expr)
    return {name for name in _IDENT.findall(bare) if name.startswith(OURS)}


def test_the_tokenizer_finds_metrics_and_skips_labels_strings_and_variables() -> None:
    expr = ('sum by (channel) (rate(kalshi_tape_frames_total{instance=~"$instance", '
            'channel!~"kalshi_tape_x.*"}[$__rate_interval])) / on (job) '
            "process_cpu_seconds_total and up{job='process_y'} > 0 "
            "or histogram_quantile(0.9, kalshi_tape_lag_seconds_bucket)")  # fmt: skip
    assert metric_names(expr) == {"kalshi_tape_frames_total", "process_cpu_seconds_total",
                                  "kalshi_tape_lag_seconds_bucket"}  # fmt: skip


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _strings(node: Any, keys: tuple[str, ...]) -> Iterator[str]:
    """Every string under one of `keys`, anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, keys)


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_exprs() -> list[str]:
    """Every panel query and template-variable query of the dashboard."""
    return list(_strings(dashboard(), ("expr", "definition", "query")))


def named_metrics() -> dict[str, set[str]]:
    """metric name -> where it is named (alert names, panel titles)."""
    where: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            where.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            where.setdefault(name, set()).add("dashboard")
    return where


# ---------------------------------------------------------------- the rules


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not found: apt-get install prometheus (Debian's package brings it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules())} rules found" in check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_each_rule_has_a_severity_a_summary_and_a_description_and_the_issue_is_covered() -> None:
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names))
    for rule in found:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    by_name = {r["alert"]: r for r in found}
    # recorder down; no frames while subscribed; durable lag; a reconnect storm; journal and
    # publish errors; publishing that keeps failing.
    wanted = {
        "KalshiTapeDown": {"up"},
        "KalshiTapeNoFrames": {"kalshi_tape_last_frame_age_seconds", "kalshi_tape_session_state"},
        "KalshiTapeDurableLag": {"kalshi_tape_durable_lag_seconds"},
        "KalshiTapeReconnectStorm": {"kalshi_tape_reconnects_total"},
        "KalshiTapeJournalErrors": {"kalshi_tape_journal_errors_total"},
        "KalshiTapePublishErrors": {"kalshi_tape_publish_errors_total"},
        "KalshiTapePublishFailing": {"kalshi_tape_publish_failing_seconds"},
    }
    for alert, metrics in wanted.items():
        assert alert in by_name, alert
        expr = by_name[alert]["expr"]
        assert all(m in expr for m in metrics), (alert, expr)
    for alert in ("KalshiTapeDown", "KalshiTapeNoFrames", "KalshiTapeDurableLag",
                  "KalshiTapePublishFailing"):  # fmt: skip
        assert by_name[alert].get("for"), alert  # a blip does not page


# ---------------------------------------------------------------- the dashboard


def test_the_dashboard_imports_anywhere_and_shows_what_the_issue_asks() -> None:
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41 and d["uid"] and d["title"]
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    shown = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert {
        "kalshi_tape_session_state", "kalshi_tape_frames_per_second",
        "kalshi_tape_durable_lag_seconds", "kalshi_tape_journal_backlog_bytes",
        "kalshi_tape_reconnects_total", "kalshi_tape_gaps_total", "kalshi_tape_resyncs_total",
        "kalshi_tape_publish_errors_total", "kalshi_tape_publish_backlog_bytes",
        "process_resident_memory_bytes", "process_cpu_seconds_total",
    } <= shown  # fmt: skip


# ---------------------------------------------------------------- a running recorder


def scrape(port: int) -> dict[str, str]:
    """sample name -> its family's type; empty while the endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            body = reply.read().decode()
    except OSError:
        return {}
    return {s.name: f.type for f in text_string_to_metric_families(body) for s in f.samples}


def exported(name: str, samples: dict[str, str]) -> bool:
    if name in samples:
        return True
    base = name.removesuffix(next((s for s in _SUFFIXES if name.endswith(s)), ""))
    return base != name and any(
        s.startswith(base) and kind in ("histogram", "summary") for s, kind in samples.items()
    )


def test_every_metric_the_dashboard_and_the_rules_name_is_exported_by_a_running_recorder(
    tmp_path: Path,
) -> None:
    named = named_metrics()
    assert len(named) >= 15
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kalshi_tape", "record", "--sim", "--no-progress", "--root",
         str(tmp_path / "data"), "--metrics-port", str(port), "--duration", "60s"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples: dict[str, str] = {}
    missing = set(named)
    try:
        deadline = time.monotonic() + 40
        while missing and time.monotonic() < deadline:  # per-channel rates need 2 snapshots
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.5)
            samples = scrape(port)
            missing = {name for name in named if not exported(name, samples)}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert {name: sorted(named[name]) for name in missing} == {}, sorted(samples)
