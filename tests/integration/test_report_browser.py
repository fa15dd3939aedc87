"""The HTML report of a whole week in a real browser: headless Chromium at 1280 px.

Chromium is not installed by ``.ci/run`` (``scripts/setup``), so this test skips when it is
absent, also under ``CI=true``; ``apt-get install chromium`` to run it. The screenshot in
``docs/images/report-1280.png`` was taken by this test: ``MIGRATION_WATCH_SCREENSHOT=<path>``
copies it there. The layout probe and the screenshot run as two browsers at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from migration_watch.report import build_report, render_html
from migration_watch.state import SqliteStateStore
from tests.report_story import story_week
from tests.support import Receiver
from tests.unit.test_verdict import CONFIG, END, SETTINGS, T0

WIDTH = 1280
#: Measures the laid-out page and writes it into the DOM that --dump-dom prints.
_PROBE = """<script>(function () {
  var right = 0, widest = "";
  document.querySelectorAll("body *").forEach(function (el) {
    var box = el.getBoundingClientRect();
    if (box.right > right) { right = box.right; widest = el.tagName + "." + el.className; }
  });
  var out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    innerWidth: window.innerWidth, right: right, widest: widest,
    charts: document.querySelectorAll("svg.chart").length
  });
  document.body.appendChild(out);
})();</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium); .ci/run does not install it")


def _start(browser: str, profile: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},1000",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(process: subprocess.Popen[str]) -> str:
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err[-2000:]
    return out


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture
def week_html(tmp_path: Path) -> Path:
    receiver = Receiver().start()
    store = SqliteStateStore(tmp_path / "state.db", wall=lambda: T0)
    try:
        story_week(store, receiver)
        data = build_report(store, config=CONFIG, now=END, settings=SETTINGS)
    finally:
        store.close()
        receiver.stop()
    path = tmp_path / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def test_the_week_report_fits_1280_px_in_chromium(week_html: Path, tmp_path: Path) -> None:
    browser = _chromium()
    html = week_html.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    shot = tmp_path / "report.png"
    layout_run = _start(browser, tmp_path / "profile-1", "--dump-dom", probe.as_uri())
    shot_run = _start(
        browser,
        tmp_path / "profile-2",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        week_html.as_uri(),
    )
    try:
        dom = _wait(layout_run)
        _wait(shot_run)
    finally:
        for process in (layout_run, shot_run):
            if process.poll() is None:
                process.kill()
                process.communicate()
    found = re.search(r'<pre id="layout-probe">([^<]*)</pre>', dom)
    assert found is not None, dom[-2000:]
    layout: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"'))
    assert layout["innerWidth"] == WIDTH
    # nothing wider than the window: no horizontal scrolling at 1280 px
    assert layout["scrollWidth"] <= layout["clientWidth"] <= WIDTH, layout
    assert layout["right"] <= layout["clientWidth"], layout
    # the timeline, two missing-rows charts, the ratio, the latency and two log charts drawn
    assert layout["charts"] == 7, layout

    width, height = _png_size(shot)
    assert (width, height) == (WIDTH, 1000)
    assert shot.stat().st_size > 40_000  # a page was drawn, not a blank window
    target = os.environ.get("MIGRATION_WATCH_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
