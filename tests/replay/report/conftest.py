"""Fixtures of the report tests: the known capture, its report, and a real Chromium.

`chromium` is Debian's `/usr/bin/chromium` driven by Playwright's Python API (no
browser download: `playwright install` is never run). Without that binary the
browser tests skip, saying how to install it, except under CI (the `CI` environment
variable set), where a missing browser fails them: CI must run them.

The capture, its report and the browser are built once for the package (no test
writes to them). Opening the report takes seconds (the page inlines plotly.js), so
tests that only read the page share one (`shared`); a test that clicks,
selects or takes a full-page screenshot (which resizes the window, and plotly's
responsive charts redraw) opens its own (`opened`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .report_capture import ExpectedReport, build_report_capture

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def expected(tmp_path_factory: pytest.TempPathFactory) -> ExpectedReport:
    return build_report_capture(tmp_path_factory.mktemp("capture"))


@pytest.fixture(scope="package")
def report_html(expected: ExpectedReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from replay.report import gather_report, write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(gather_report(expected.root), out)
    return out


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = (f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` "
                   "(Debian's package; the browser tests drive it with Playwright)")  # fmt: skip
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the browser tests")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


#: Playwright's bound on each step of a page (load, selectors, clicks), for busy machines.
PAGE_TIMEOUT_MS = 90_000


class OpenedReport:
    """A report open in a page: its console errors, failed or outside requests."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # How soon a page is drawn is measured by bench/, not bounded here: on a busy
        # machine Chromium may take its time; what a test checks is what is drawn.
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']")

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:  # the report must need no network: record and refuse
            self.outside.append(url)
            route.abort()

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def screenshot(self, directory: Path, name: str) -> Path:
        path = directory / name
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def opened(report_html: Path, chromium: Any) -> Iterator[OpenedReport]:
    """The report, built before the browser starts: Playwright's sync API runs an event
    loop in this thread, and the datasets' engine may need to start one of its own."""
    report = OpenedReport(chromium, report_html)
    yield report
    report.page.close()


@pytest.fixture(scope="package")
def shared(report_html: Path, chromium: Any) -> Iterator[OpenedReport]:
    """The report opened once, shared by the tests that only read the page: no click,
    no selection, no full-page screenshot (those take `opened`, a page of their own)."""
    report = OpenedReport(chromium, report_html)
    yield report
    report.page.close()
