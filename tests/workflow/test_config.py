"""The pipeline's config is validated against its JSON schema; mistakes stop the run with a clear cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[2]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def default_config() -> dict:
    return yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())


def test_default_config_is_valid() -> None:
    validate(default_config(), SCHEMA)


def test_every_config_key_has_a_comment() -> None:
    """STYLE: each key in config.yaml is explained by a one-line comment above it."""
    lines = (REPO / "workflow" / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        key = stripped.split(":", 1)[0]
        if stripped.endswith(":") and not line.startswith(" "):
            continue  # a section header: its keys carry the comments
        if line.startswith("    "):
            continue  # an entry of a documented mapping (e.g. per-model budgets)
        assert "#" in line or lines[i - 1].strip().startswith("#"), f"config key '{key}' (line {i + 1}) has no comment"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c.update(modles=["tfc_w1a1"]), "modles"),
        (lambda c: c.update(models=["tfc_w3a1"]), "tfc_w3a1"),
        (lambda c: c.update(boards=["Pynq-Z9"]), "Pynq-Z9"),
        # issue 17 case 6: overrides entries are checked like the train: keys they override
        (lambda c: c["train"]["overrides"].update(tfc_w1a1={"lr": "fast"}), "'fast' is not of type 'number'"),
        (lambda c: c["train"]["overrides"].update(lfc={"epochs": 0}), "0 is less than the minimum of 1"),
        (lambda c: c["train"]["overrides"].update(tfc={"loss": "hinge"}), "'hinge' is not one of"),
        # issue 17 case 7: batch norm cannot train on a batch of one image
        (lambda c: c["train"].update(batch_size=1), "1 is less than the minimum of 2"),
        (lambda c: c["train"]["overrides"].update(cnv_w1a1={"batch_size": 1}), "1 is less than the minimum of 2"),
        (lambda c: c["data"].update(mlp_dataset="K-MNIST"), "K-MNIST"),
        (lambda c: c.update(topologies={"tfc_w3a3": {}}), "tfc_w3a3"),
        (lambda c: c.update(topologies={"mine": {"kind": "mlp", "input_shape": [28, 28], "weight_bits": 1,
                                                 "act_bits": 1}}), "28, 28"),
        (lambda c: c["data"].update(user_datasets={"mine": {"path": "x.npz", "layout": "HWC", "image_shape": [2, 2],
                                                            "classes": 5}}), "HWC"),
    ],
)
def test_bad_config_is_refused(edit, fragment: str) -> None:
    config = default_config()
    edit(config)
    with pytest.raises(WorkflowError, match=fragment):
        validate(config, SCHEMA)


@pytest.mark.parametrize(
    ("yaml_text", "line"),
    [
        ("models: [tfc_w9a9]\n", "config: refused: models.0: 'tfc_w9a9' is not valid under any of the given schemas"),
        ("train:\n  overrides:\n    tfc_w1a1: {lr: fast}\n",  # issue 17 case 6
         "config: refused: train.overrides.tfc_w1a1.lr: 'fast' is not of type 'number'"),
    ],
)
def test_snakemake_refuses_bad_configfile(tmp_path: Path, yaml_text: str, line: str) -> None:
    """A schema violation is one line naming the key, exit status 2 (refused input), no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(bad), "-n", "all"],
        capture_output=True, text=True,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert line in run.stderr and "Traceback" not in run.stdout + run.stderr
    assert [text for text in run.stderr.splitlines() if text.startswith("config:")] == [run.stderr.splitlines()[-1]]


def test_dry_run_plans_the_whole_dag(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "all"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "prepare_mnist" in run.stdout


def test_lint_is_clean() -> None:
    run = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0 and "Congratulations" in run.stdout + run.stderr, run.stdout + run.stderr


def test_dry_run_with_models_beyond_the_xnor_reference(tmp_path: Path) -> None:
    """w2a1 (no FINN HW mapping) stops after the FINN build; `all` must still plan (no XNOR, package, validation).

    CNV (packed im2col) and w2a2 (ternary weights) are covered by the XNOR reference: XNOR stages and validation."""
    config = default_config()
    config.update(models=["tfc_w1a1", "lfc_w2a1", "cnv_w1a1", "sfc_w2a2"], boards=["Pynq-Z1", "ZCU104"])
    config["data"]["cnv_dataset"] = "mnist"
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(path), "-n", "all"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "results/lfc_w2a1/xnor" not in run.stdout and "results/lfc_w2a1/Pynq-Z1/validation.json" not in run.stdout
    assert "hw_builds/lfc_w2a1/ZCU104/summary.json" in run.stdout
    assert "results/sfc_w2a2/xnor/verify.json" in run.stdout and "results/sfc_w2a2/Pynq-Z1/validation.json" in run.stdout
    assert "results/cnv_w1a1/xnor/verify.json" in run.stdout and "results/cnv_w1a1/ZCU104/validation.json" in run.stdout
    assert "results/tfc_w1a1/ZCU104/validation.json" in run.stdout


def test_dry_run_plans_the_xnor_reference_of_a_w1a2_mlp(tmp_path: Path) -> None:
    """1-bit weights, 2-bit activations: the XNOR reference (bit planes) covers them, validation included."""
    config = default_config()
    config.update(models=["tfc_w1a2"], boards=["Pynq-Z1"])
    path = tmp_path / "w1a2.yaml"
    path.write_text(yaml.safe_dump(config))
    for target in ("results/tfc_w1a2/xnor/verify.json", "all"):
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
             "--configfile", str(path), "-n", target],
            capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "results/tfc_w1a2/xnor/verify.json" in run.stdout
        assert "export_xnor" in run.stdout and "verify_xnor" in run.stdout
    assert "results/tfc_w1a2/Pynq-Z1/validation.json" in run.stdout
