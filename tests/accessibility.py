"""Debian's headless Chromium: a page as it renders (its DOM and a screenshot), and
axe-core's accessibility checks of a page as served.

axe-core comes from the npm registry (``.ci/run`` unpacks it into ``.cache/axe-core``, or set
``DETECTOR_AXE_JS``). The page's own Content-Security-Policy forbids scripts, so axe runs on
a file copy of the HTML it served, with axe added at the end of the body.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["ARTIFACTS", "audit", "render", "serious"]

REPO = Path(__file__).resolve().parents[1]
# Screenshots of the pages, kept for a reader of the test run (CI uploads the folder).
ARTIFACTS = REPO / "test-artifacts"
AXE = Path(os.environ.get("DETECTOR_AXE_JS") or REPO / ".cache/axe-core/axe.min.js")

# What a reader meets beyond axe's rules: the smallest chart label in CSS pixels, and cells
# of stacked (phone) tables that show no field name before their value.
_PROBE = """
<script>
axe.run(document, {resultTypes: ["violations"]}).then(function (result) {
  var labels = Array.from(document.querySelectorAll("svg text")).map(function (t) {
    return parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
  });
  var bare = Array.from(document.querySelectorAll("td")).filter(function (td) {
    var before = getComputedStyle(td, "::before").content;
    return getComputedStyle(td).display === "block" && !/[a-z]/i.test(before);
  });
  parent.postMessage(JSON.stringify({
    width: window.innerWidth,
    violations: result.violations.map(function (v) {
      return {id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.map(function (n) { return n.target.join(" "); })};
    }),
    smallest_chart_label: labels.length ? Math.min.apply(null, labels) : null,
    cells_without_field_name: bare.length
  }), "*");
});
</script>
"""
# Headless Chromium keeps windows at least 500 px wide: the page is laid out in a frame of
# the width asked for, and reports to the frame's parent.
_FRAME = """<!doctype html><html lang="en"><head><title>axe</title></head><body style="margin:0">
<iframe title="page" src="{src}" style="border:0;width:{width}px;height:900px"></iframe>
<script>
addEventListener("message", function (event) {{
  var out = document.createElement("pre");
  out.id = "axe-results";
  out.textContent = event.data;
  document.body.appendChild(out);
}});
</script></body></html>
"""


def _unavailable(problem: str) -> NoReturn:
    if os.environ.get("DETECTOR_REQUIRE_BROWSER") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def _chromium() -> str:
    browser = shutil.which("chromium")
    if browser is None:
        _unavailable("Debian's chromium is not installed (.ci/run installs it)")
    return browser


def _browser() -> str:
    browser = _chromium()
    if not AXE.is_file():
        _unavailable(f"axe-core is not at {AXE} (.ci/run fetches it from the npm registry)")
    return browser


def audit(page: str, directory: Path, width: int = 1200) -> dict[str, Any]:
    """axe-core's violations of ``page`` laid out ``width`` CSS pixels wide, with the smallest
    chart label and the count of stacked cells without a field name."""
    browser = _browser()
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"page-{width}.html"
    probe = f'<script src="{AXE.resolve().as_uri()}"></script>{_PROBE}'
    copy.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    frame = directory / f"frame-{width}.html"
    frame.write_text(_FRAME.format(src=copy.as_uri(), width=width), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--allow-file-access-from-files",
        f"--user-data-dir={directory / f'profile-{width}'}",
        f"--window-size={max(width, 500) + 100},1000",
        "--virtual-time-budget=60000",
        "--dump-dom",
        frame.as_uri(),
    ]
    dom = subprocess.run([browser, *flags], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="axe-results">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"axe did not report: {dom.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return report


def serious(report: dict[str, Any]) -> list[str]:
    """The critical and serious violations, one line each."""
    return [
        f"{v['impact']} {v['id']}: {v['help']} ({', '.join(v['nodes'][:3])})"
        for v in report["violations"]
        if v["impact"] in ("critical", "serious")
    ]


def render(url: str, screenshot: Path, profile: Path) -> tuple[str, str]:
    """The DOM of ``url`` as Chromium renders it and Chromium's log, with a 1200 px wide
    screenshot written to ``screenshot``; no browser download, no network but 127.0.0.1."""
    browser = _chromium()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    shot = subprocess.run(
        [browser, *flags, "--window-size=1200,1500", f"--screenshot={screenshot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dom.stdout, dom.stderr + shot.stderr
