"""The render_report rule in Snakemake: lint-clean, runs on stage outputs, declares exactly what it writes,
and its report(...) outputs make `snakemake --report` work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import write_tree

REPO = Path(__file__).resolve().parents[2]
MODELS, BOARDS = ["tfc_w2a1"], ["Pynq-Z1", "ZCU104"]
# Stand-ins for the FINN and validation stages: their outputs are already on disk (never rerun). FINN's
# summaries must be read; a w2a1 model has no XNOR reference (FINN has no HW mapping for it), hence no package and no validation
# (common.smk's stage_applies), so validation must be left out, not fail the DAG.
SNAKEFILE = f"""
configfile: "config.yaml"
include: "{REPO}/workflow/rules/common.smk"


rule compile_stand_in:
    input: "inputs/exists.txt"
    output: "hw_builds/{{model}}/{{board}}/summary.json"
    shell: "exit 1"


rule validate_stand_in:
    input: "inputs/no_rule_makes_this.txt"
    output: "results/{{model}}/{{board}}/validation.json"
    shell: "exit 1"


include: "{REPO}/workflow/rules/report.smk"
"""
CONFIG = f"""models: {MODELS}
boards: {BOARDS}
data: {{mlp_dataset: mnist, cnv_dataset: cifar10, test_subset: null}}
"""


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(workdir / "Snakefile"), "-d", str(workdir),
                           "--cores", "1", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training and build outputs on disk, older inputs first, so only render_report has to run."""
    root = tmp_path_factory.mktemp("rule")
    (root / "Snakefile").write_text(SNAKEFILE)
    (root / "config.yaml").write_text(CONFIG)
    for old in ("resources/mnist.npz", "results/tfc_w2a1/train/checkpoint.pt", "inputs/exists.txt"):
        (root / old).parent.mkdir(parents=True, exist_ok=True)
        (root / old).write_bytes(b"older than the predictions; never read")
        os.utime(root / old, (time.time() - 60, time.time() - 60))
    write_tree(root, MODELS, BOARDS)
    return root


def test_rule_renders_the_report(workdir: Path) -> None:
    run = snakemake(workdir, "results/report.html")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "predict_testset" not in run.stderr.split("Job stats:")[1].split("total")[0]
    plots = sorted(p.name for p in (workdir / "results/plots").iterdir())
    assert plots == sorted(["pareto.png", "latency.png", "xnor_speed.png", "xnor_roofline.png",
                            "training_curves_tfc_w2a1.png", "confusion_matrix_tfc_w2a1.png",
                            "layers_tfc_w2a1_Pynq-Z1.png", "layers_tfc_w2a1_ZCU104.png"])
    assert (workdir / "results/summary.csv").read_text().count("\n") == 1 + len(BOARDS)
    assert (workdir / "logs/render_report/report.log").is_file()
    html = (workdir / "results/report.html").read_text()
    assert "results/tfc_w2a1/train/metrics.json" in html and "hw_builds/tfc_w2a1/ZCU104/summary.json" in html
    assert "validation.json" not in html  # on disk, but the workflow cannot make it: not read
    frame = pd.read_csv(workdir / "results/summary.csv")
    assert frame["LUT"].notna().all() and frame["validation_backend"].isna().all()


def test_snakemake_report_includes_the_plots(workdir: Path) -> None:
    assert (workdir / "results/report.html").is_file() or snakemake(workdir, "results/report.html").returncode == 0
    run = snakemake(workdir, "--report", "sm_report.zip", "results/report.html")
    assert run.returncode == 0, run.stderr[-4000:]
    import zipfile

    names = zipfile.ZipFile(workdir / "sm_report.zip").namelist()
    assert any(n.endswith("pareto.png") for n in names) and any(n.endswith("summary.csv") for n in names)


def test_report_rules_lint_clean(workdir: Path) -> None:
    run = snakemake(workdir, "--lint")
    report_lints = [block for block in run.stdout.split("Lints for")[1:] if "report.smk" in block.splitlines()[0]]
    assert report_lints == [], report_lints
