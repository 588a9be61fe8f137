"""The backtest's report.html opened in a real headless browser (issue 7 acceptance): every plot renders.

test_backtest.py decodes each inline PNG itself; only a browser shows that the page as a whole loads
(markup, data URIs, styles) the way a risk analyst would open it. Headless Chromium loads a copy of a
real report (a broker-backed A/B backtest of the tiny model, through test_backtest.py's fixtures) with a
probe script appended that, after the load event, writes each figure's decoded image size into the DOM;
`--dump-dom` returns that DOM. A screenshot of the whole page is saved in the test's tmp dir and its path
printed (`pytest -s` shows it; docs/img/backtest_report.png is one). A copy with one corrupted image
shows the probe reports a broken plot, so the check can fail.

Without a Chromium binary the test is skipped with the reason: `.ci/run` installs Debian's
`chromium-headless-shell` when it runs as root with apt-get (browser CDNs are not reachable from CI).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stream.backtest import ModelSpec, run_backtest
from tests.stream.model_fixtures import perturbed_copy, tiny_model
from tests.stream.test_backtest import EXPECTED_PLOTS, History, _config, history

__all__ = ["history", "tiny_model"]  # the fixtures, imported for pytest

BROWSERS = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
    "google-chrome",
)
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
WIDTH = 1200
MAX_HEIGHT = 16_000  # a cap on the screenshot, far above the report's few thousand pixels

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason=f"no headless Chromium on PATH (tried {', '.join(BROWSERS)}): "
        "`apt-get install chromium-headless-shell` (Debian), as .ci/run does when run as root",
    ),
]

# After `load`, every <img> has decoded or failed: naturalWidth is 0 for a broken one.
PROBE = """<script>
addEventListener('load', () => {
  const figures = {};
  for (const f of document.querySelectorAll('figure')) {
    const img = f.querySelector('img');
    figures[f.id] = img && img.complete ? [img.naturalWidth, img.naturalHeight] : [0, 0];
  }
  const pre = document.createElement('pre');
  pre.id = 'browser-probe';
  pre.textContent = JSON.stringify({
    figures,
    images: document.images.length,
    height: document.documentElement.scrollHeight,
  });
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",  # never the user's own profile
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _probe(page: Path, profile: Path) -> dict[str, Any]:
    """Loads `page` + PROBE in headless Chromium; the probe's JSON from the rendered DOM."""
    probed = page.with_name(f"probed-{page.name}")
    probed.write_text(page.read_text("utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    # The virtual time budget lets the page finish loading before the DOM is dumped.
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), profile=profile).stdout
    found = re.search(r'<pre id="browser-probe">(.*?)</pre>', dom, re.S)
    assert found, f"probe did not run; DOM tail: {dom[-500:]!r}"
    return json.loads(html.unescape(found.group(1)))


def test_report_opens_in_a_headless_browser_with_every_plot(
    history: History, tiny_model, tmp_path: Path
) -> None:
    from matplotlib.image import imread

    model, _ = tiny_model
    challenger = perturbed_copy(model, tmp_path / "challenger" / "model")  # A/B of two distinct artefacts
    out = tmp_path / "report"
    config = replace(
        _config(history, model, out),
        alert_rate=0.02,
        models=(ModelSpec("champion", model), ModelSpec("challenger", challenger)),
    )
    summary = run_backtest(config, history.settings, progress=False)
    versions = {label: m["model_version"] for label, m in summary["models"].items()}
    assert versions["champion"] != versions["challenger"]
    assert set(summary["plots"]) == EXPECTED_PLOTS
    page = out / "report.html"

    seen = _probe(page, tmp_path / "profile")
    assert set(seen["figures"]) == EXPECTED_PLOTS and seen["images"] == len(EXPECTED_PLOTS)
    for name, (width, height) in seen["figures"].items():
        assert width > 100 and height > 100, f"{name} did not render: {width}x{height}"

    shot = tmp_path / "report.png"
    height = min(int(seen["height"]), MAX_HEIGHT)
    _chromium(
        f"--window-size={WIDTH},{height}",
        f"--screenshot={shot}",
        page.as_uri(),
        profile=tmp_path / "profile",
    )
    image = imread(shot)
    assert image.shape[:2] == (height, WIDTH) and image.std() > 0.05, image.shape  # not a blank page
    print(f"\nbacktest report screenshot ({WIDTH}x{height}, {BROWSER}): {shot}")

    # The probe is not vacuous: a copy whose first plot carries a corrupt PNG reports it as broken.
    broken = out / "broken.html"
    first = next(iter(summary["plots"]))
    text = page.read_text("utf-8")
    start = text.index("base64,", text.index(f"<figure id='{first}'>")) + len("base64,")
    end = text.index("'", start)
    broken.write_text(text[:start] + "bm90IGEgcG5n" + text[end:], "utf-8")  # base64 of "not a png"
    bad = _probe(broken, tmp_path / "profile")
    assert bad["figures"][first] == [0, 0]
    assert all(w > 100 for name, (w, _) in bad["figures"].items() if name != first)
