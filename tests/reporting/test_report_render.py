"""render_report end to end on synthetic stage outputs: files, embedded images, table, failure modes."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import write_dse, write_tree

from reporting.inputs import ReportInputError, discover
from reporting.layout import plot_files
from reporting.render import render_report

MODELS, BOARDS = ["tfc_w1a1", "sfc_w1a1"], ["Pynq-Z1", "ZCU104"]


def _render(root: Path, full: bool = True) -> dict:
    write_tree(root, MODELS, BOARDS, full=full)
    out = root / "results"
    return render_report(discover(root, MODELS, BOARDS), MODELS, BOARDS, out / "report.html", out / "summary.csv",
                         out / "plots", progress=False)


def test_report_embeds_every_plot_and_the_table(tmp_path: Path) -> None:
    _render(tmp_path)
    html = (tmp_path / "results/report.html").read_text()
    expected = plot_files(tmp_path / "results/plots", MODELS, BOARDS)
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(expected) == 2 + 2 + 2 * len(MODELS) + len(MODELS) * len(BOARDS)
    on_disk = {Path(p).read_bytes() for p in expected.values()}
    assert {base64.b64decode(e) for e in embedded} == on_disk  # the page shows exactly the saved PNGs
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("id=\"summary-table\"")[1].split("<tbody>")[1].split("</tbody>")[0])
    assert len(rows) == len(MODELS) * len(BOARDS)
    assert "not_measured" in html and "src=\"http" not in html and "<script" not in html  # self-contained, static
    assert len(pd.read_csv(tmp_path / "results/summary.csv")) == len(MODELS) * len(BOARDS)
    assert "results/bench/xnor.json" in html
    proof_tables = html.split("<table class='range-proof'>")[1:]  # one static range proof per build
    assert len(proof_tables) == len(MODELS) * len(BOARDS)
    assert "<td>MVAU_hls_0</td>" in proof_tables[0] and "<td>[0, 784]</td><td>UINT10</td>" in proof_tables[0]
    assert "widened from FINN's: MVAU_hls_0" in html


def test_training_only_run_still_reports(tmp_path: Path) -> None:
    """No FINN build, XNOR or validation in the workflow: placeholders and n/a, but a complete page."""
    _render(tmp_path, full=False)
    html = (tmp_path / "results/report.html").read_text()
    assert html.count("<img ") == 2 + 2 + 2 * len(MODELS) + len(MODELS) * len(BOARDS)
    assert html.count(">n/a<") >= 10 * len(MODELS) * len(BOARDS)
    assert "XNOR verification: n/a" in html


def test_bad_input_writes_no_report(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    (tmp_path / "hw_builds/sfc_w1a1/ZCU104/summary.json").write_text("{not json")
    out = tmp_path / "results"
    with pytest.raises(ReportInputError, match="hw_builds/sfc_w1a1/ZCU104/summary.json: not valid JSON"):
        render_report(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS, out / "report.html", out / "summary.csv",
                      out / "plots", progress=False)
    assert not (out / "report.html").exists() and not (out / "summary.csv").exists()


def test_rendering_imports_no_torch(tmp_path: Path) -> None:
    """The report is numpy/pandas/matplotlib only (torch would cost seconds and a world it does not need)."""
    write_tree(tmp_path, MODELS, BOARDS)
    code = (
        "import sys\n"
        "from reporting.inputs import discover\n"
        "from reporting.render import render_report\n"
        f"root = {str(tmp_path)!r}\n"
        f"render_report(discover(root, {MODELS!r}, {BOARDS!r}), {MODELS!r}, {BOARDS!r}, root + '/r.html', root + '/s.csv',"
        " root + '/p', progress=False)\n"
        "bad = [m for m in ('torch', 'brevitas', 'finn', 'qonnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_design_space_sweep_is_in_the_report(tmp_path: Path) -> None:
    """With results/dse/ given (report.dse), the page shows the sweep's Pareto plot, SetFolding plot and table."""
    write_tree(tmp_path, MODELS, BOARDS)
    rows = write_dse(tmp_path, BOARDS)
    out = tmp_path / "results"
    files = discover(tmp_path, MODELS, BOARDS)
    assert {Path(f).name for f in files} >= {"summary.json", "pareto.png", "setfolding.png"}
    render_report(files, MODELS, BOARDS, out / "report.html", out / "summary.csv", out / "plots", progress=False)
    html = (out / "report.html").read_text()
    embedded = {base64.b64decode(e) for e in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)}
    assert {(out / "dse" / f"{p}.png").read_bytes() for p in ("pareto", "setfolding")} <= embedded
    table = html.split('id="dse-table"')[1].split("</table>")[0]
    body = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])
    assert len(body) == len(rows) == 9 * len(BOARDS)
    assert "does not fit the board" in body[8] and "<td>1,000,000</td>" in body[0] and "fabric:LUT" in body[3]
    assert html.index("id='dse'") < html.index("id='model-tfc_w1a1'")  # after the summary plots, before the models


def test_report_without_the_sweep_has_no_dse_section(tmp_path: Path) -> None:
    _render(tmp_path)
    assert "id='dse'" not in (tmp_path / "results/report.html").read_text()


def test_dse_plot_given_but_missing_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    write_dse(tmp_path, BOARDS)
    files = discover(tmp_path, MODELS, BOARDS)
    (tmp_path / "results/dse/setfolding.png").unlink()
    out = tmp_path / "results"
    with pytest.raises(ReportInputError, match="results/dse/setfolding.png: missing"):
        render_report(files, MODELS, BOARDS, out / "report.html", out / "summary.csv", out / "plots", progress=False)
    assert not (out / "report.html").exists()


def test_dse_summary_without_designs_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    write_dse(tmp_path, BOARDS)
    (tmp_path / "results/dse/summary.json").write_text('{"rows": []}')
    out = tmp_path / "results"
    with pytest.raises(ReportInputError, match=r"results/dse/summary.json: expected \"designs\""):
        render_report(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS, out / "report.html", out / "summary.csv",
                      out / "plots", progress=False)
