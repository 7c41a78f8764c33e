"""The report as a person sees it: rendered by headless Chromium, screenshotted, plots and table checked.

Two Chromium runs on the same page: one dumps the DOM after a probe script (added to a copy of the
page, the report itself has no scripts) has measured every image as the browser decoded it
(drawn to a canvas: size and pixel spread) and where the layout put each image and the table;
the other takes a screenshot of the unmodified report, and each of those rectangles is cropped out
of the screenshot and must show something (not one flat colour).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from report_fixtures import write_tree

from reporting.inputs import discover
from reporting.render import render_report

MODELS, BOARDS = ["tfc_w1a1", "sfc_w1a1"], ["Pynq-Z1", "ZCU104"]
WIDTH = 1400
PROBE = """
<pre id="probe"></pre>
<script>
window.addEventListener("load", () => {
  const abs = (el) => { const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; };
  const images = [...document.images].map((img) => {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < d.length; i += 4 * 7) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; n++; }
    const mean = sum / n;
    return {alt: img.alt, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            std: Math.sqrt(Math.max(sq / n - mean * mean, 0)), rect: abs(img)};
  });
  const table = document.getElementById("summary-table");
  const rows = table ? [...table.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)) : [];
  document.getElementById("probe").textContent = JSON.stringify({
    images, rows, table: table ? abs(table) : null, height: document.documentElement.scrollHeight});
});
</script>
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is needed for the report's browser test: apt-get install chromium (make test does)")
    return path


def run_chromium(args: list[str], user_dir: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={user_dir}",
             "--virtual-time-budget=10000"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=180)


def look_at(html: Path, work: Path) -> tuple[dict, np.ndarray]:
    """What the probe measured on a copy of ``html`` and the screenshot pixels (H, W, 3) of ``html`` itself."""
    probed = work / "probe.html"
    probed.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    # Same width as the screenshot, so the probe's rectangles are where the screenshot shows them.
    dom = run_chromium(["--dump-dom", f"--window-size={WIDTH},3000", probed.as_uri()], work / "chrome-dom")
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match and match.group(1), f"the probe did not run in Chromium:\n{dom.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    shot = work / "screenshot.png"
    height = int(min(probe["height"], 20000))
    run = run_chromium([f"--screenshot={shot}", f"--window-size={WIDTH},{height}", html.as_uri()], work / "chrome-shot")
    assert shot.is_file(), f"Chromium wrote no screenshot:\n{run.stderr[-2000:]}"
    return probe, mpimg.imread(shot)[..., :3]


def blank_plots(probe: dict, pixels: np.ndarray) -> list[str]:
    """Images that are flat as decoded, or flat / without dark pixels where the screenshot shows them."""
    blank = []
    for img in probe["images"]:
        r = img["rect"]
        crop = pixels[int(r["y"]) + 2 : int(r["y"] + r["h"]) - 2, int(r["x"]) + 2 : int(r["x"] + r["w"]) - 2]
        if img["std"] <= 5 or not crop.size or crop.std() <= 0.03 or (crop.mean(axis=2) < 0.5).mean() <= 0.002:
            blank.append(img["alt"])
    return blank


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, np.ndarray]:
    """The synthetic report as Chromium shows it: the probe's measurements and the screenshot's pixels."""
    root = tmp_path_factory.mktemp("browser")
    write_tree(root, MODELS, BOARDS)
    html = root / "results" / "report.html"
    render_report(discover(root, MODELS, BOARDS), MODELS, BOARDS, html, root / "results" / "summary.csv",
                  root / "results" / "plots", progress=False)
    return look_at(html, root)


def test_a_blank_plot_is_caught(tmp_path: Path) -> None:
    """The checks below can fail: a page with a white image and a drawn one flags exactly the white one."""
    import base64
    import io

    import matplotlib.pyplot as plt

    def png(pixels: np.ndarray) -> str:
        buf = io.BytesIO()
        plt.imsave(buf, pixels, format="png")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    drawn = np.ones((200, 400, 3))
    drawn[50:150, 100:300] = 0.0
    page = tmp_path / "page.html"
    page.write_text(f'<html><body><img src="{png(np.ones((200, 400, 3)))}" alt="white">'
                    f'<img src="{png(drawn)}" alt="drawn"></body></html>')
    probe, pixels = look_at(page, tmp_path)
    assert blank_plots(probe, pixels) == ["white"]


def test_screenshot_is_a_page_not_a_blank(rendered) -> None:
    probe, pixels = rendered
    assert pixels.shape[1] == WIDTH and pixels.shape[0] >= min(probe["height"], 20000) - 2
    assert pixels.std() > 0.05


def test_every_plot_decodes_in_the_browser(rendered) -> None:
    probe, _ = rendered
    # pareto, latency, the xnor bench's speed and roofline figures (its fixture JSON has no rows: placeholders)
    expected = 2 + 2 + 2 * len(MODELS) + len(MODELS) * len(BOARDS)
    assert len(probe["images"]) == expected
    for img in probe["images"]:
        assert img["complete"] and img["natural"][0] > 100 and img["natural"][1] > 50, img
        assert img["std"] > 5, f"{img['alt']} decodes to a flat image"
        assert img["rect"]["w"] > 100 and img["rect"]["h"] > 50, f"{img['alt']} is not laid out visibly"


def test_plots_are_visible_in_the_screenshot(rendered) -> None:
    """Each image's rectangle, cropped from the screenshot of the real page, shows a drawing."""
    probe, pixels = rendered
    assert blank_plots(probe, pixels) == []


def test_table_is_filled(rendered) -> None:
    probe, pixels = rendered
    rows = probe["rows"]
    assert len(rows) == len(MODELS) * len(BOARDS)
    assert [(r[0], r[1]) for r in rows] == [(m, b) for m in MODELS for b in BOARDS]
    for row in rows:
        filled = [c for c in row if c.strip() and c != "n/a"]
        assert len(filled) >= len(row) - 2, row  # this synthetic run has every stage: at most the odd n/a
    t = probe["table"]
    crop = pixels[int(t["y"]) : int(t["y"] + t["h"]), int(t["x"]) : int(min(t["x"] + t["w"], pixels.shape[1]))]
    assert crop.std() > 0.05 and (crop.mean(axis=2) < 0.5).mean() > 0.01, "the table is not visible in the screenshot"
