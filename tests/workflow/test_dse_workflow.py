"""`snakemake dse` is its own target: its dry run plans one search per model x board (and one FINN front end
per model), and `all` has none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path, *targets: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", *targets],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def job_count(plan: str, rule: str) -> int:
    """The count of ``rule`` in the dry run's job-stats table."""
    for line in plan.split("Job stats:")[1].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == rule:
            return int(parts[1])
    return 0


def test_dse_dry_run_plans_every_search(tmp_path: Path) -> None:
    import yaml

    dse = yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())["dse"]
    plan = dry_run(tmp_path, "dse")
    assert job_count(plan, "search_folding") == len(dse["models"]) * len(dse["boards"])
    assert job_count(plan, "summarize_dse") == 1
    # every search starts from its model's FINN front end, built once per model whatever the number of boards
    assert job_count(plan, "build_frontend") == len(set(dse["models"]))
    for board in dse["boards"]:
        assert f"results/dse/lfc_w2a2/{board}/search.json" in plan


def test_all_does_not_run_the_sweep(tmp_path: Path) -> None:
    plan = dry_run(tmp_path, "all")
    assert job_count(plan, "search_folding") == 0 and "summarize_dse" not in plan


def test_report_dse_puts_the_sweep_in_the_report(tmp_path: Path) -> None:
    """report.dse (set by workflow/dse_quick.yaml): the main report reads the sweep's summary, so it runs it."""
    plan = dry_run(tmp_path, "results/report.html", "--configfile", str(REPO / "workflow" / "dse_quick.yaml"))
    assert job_count(plan, "summarize_dse") == 1 and job_count(plan, "render_report") == 1
    render = plan.split("rule render_report:")[1].split("\n\n")[0]
    assert "results/dse/summary.json" in render and "results/dse/pareto.png" in render
    assert "results/dse/summary.json" not in dry_run(tmp_path, "results/report.html").split("rule render_report:")[1]


def test_cnv_in_the_sweep_is_refused_with_the_reason(tmp_path: Path) -> None:
    extra = tmp_path / "cnv.yaml"
    extra.write_text("dse:\n  models: [tfc_w1a1, cnv_w1a1]\n")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "dse",
         "--configfile", str(extra)],
        capture_output=True, text=True,
    )
    assert run.returncode != 0
    assert "dse.models: cnv_w1a1 refused: the folding search covers dense (MLP) networks only" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def _rule_input_names(smk: Path, rule: str) -> set[str]:
    """The named inputs of ``rule`` in ``smk`` (its `input:` block's `name=` entries)."""
    import re

    block = smk.read_text().split(f"rule {rule}:")[1].split("input:")[1]
    block = re.split(r"\n    \w+:", block)[0]
    return set(re.findall(r"^\s{8}(\w+)=", block, flags=re.M))


def test_dse_rules_declare_every_input_their_scripts_read() -> None:
    """build_dse_design and package_dse_design reuse compile_finn.py / package_deployment.py: each input those
    scripts read must be declared (package_dse_design once lacked verify.json and failed only after the build)."""
    import re

    rules = REPO / "workflow" / "rules" / "dse.smk"
    for rule, script in (("build_dse_design", "compile_finn.py"), ("package_dse_design", "package_deployment.py")):
        read = set(re.findall(r"snakemake\.input\.(\w+)", (REPO / "workflow" / "scripts" / script).read_text()))
        assert read, script
        missing = read - _rule_input_names(rules, rule)
        assert not missing, f"{rule} does not declare {sorted(missing)}, which {script} reads"
