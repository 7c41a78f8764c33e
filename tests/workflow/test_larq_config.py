"""Larq models in the config: the name convention <family>_w1a1_larq is schema-checked, and the DAG runs their
training / import and conversion in the Larq environment and the proof in the main world."""

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


def config_with(**larq) -> dict:
    config = yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())
    config["larq"].update(larq)
    return config


def dry_run(tmp_path: Path, config: dict, target: str = "all") -> subprocess.CompletedProcess:
    path = tmp_path / "larq.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(path), "-n", "-p", target], capture_output=True, text=True)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda c: c.update(models=["tfc_w2a2_larq"]), "tfc_w2a2_larq"),
    (lambda c: c.update(models=["tfc_larq"]), "tfc_larq"),
    (lambda c: c["larq"].update(model_files={"tfc_w1a1": "x.h5"}), "tfc_w1a1"),
    (lambda c: c["larq"].update(model_files={"tfc_w1a1_larq": "x.onnx"}), "x.onnx"),
    (lambda c: c["larq"].update(atol=-1), "-1"),
])
def test_bad_larq_config_is_refused(edit, fragment: str) -> None:
    config = config_with()
    edit(config)
    with pytest.raises(WorkflowError, match=fragment):
        validate(config, SCHEMA)


def test_dag_of_trained_and_imported_larq_models(tmp_path: Path) -> None:
    user_file = tmp_path / "my_lfc.h5"
    user_file.write_bytes(b"placeholder: a dry run does not read it")
    config = config_with(python=sys.executable, model_files={"lfc_w1a1_larq": str(user_file)})
    config.update(models=["tfc_w1a1", "tfc_w1a1_larq", "lfc_w1a1_larq", "cnv_w1a1_larq"])
    config["data"]["cnv_dataset"] = "mnist"
    validate(config, SCHEMA)
    run = dry_run(tmp_path, config)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    # Larq's training and conversion in the Larq interpreter, as `python -m larq_models`
    assert f"{sys.executable} -m larq_models train --model tfc_w1a1_larq" in out
    assert f"{sys.executable} -m larq_models train --model cnv_w1a1_larq" in out
    assert f"-m larq_models import --model lfc_w1a1_larq --model-file {user_file}" in out
    assert "-m larq_models train --model lfc_w1a1_larq" not in out
    for model in ("tfc_w1a1_larq", "lfc_w1a1_larq", "cnv_w1a1_larq"):
        assert f"-m larq_models export --model-file results/{model}/train/model.h5" in out
        assert f"results/{model}/export/roundtrip.json" in out  # written by the main world's proof
        assert f"results/{model}/Pynq-Z1/validation.json" in out and f"results/{model}/xnor/verify.json" in out
        assert f"results/{model}/frontend/hw.onnx" in out  # FINN and the XNOR export go through the front end
    assert "results/tfc_w1a1_larq/train/checkpoint.pt" not in out
    assert out.count("rule prove_larq_export:") == 3 and out.count("rule export_qonnx:") == 1
    assert out.count("rule build_frontend:") == 4  # one FINN front end per model, Larq or Brevitas


def test_missing_larq_interpreter_is_named(tmp_path: Path) -> None:
    config = config_with(python=str(tmp_path / "no-venv" / "bin" / "python"))
    config.update(models=["tfc_w1a1_larq"])
    run = dry_run(tmp_path, config)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stdout + run.stderr
    assert lines[-1].startswith("config: refused: larq.python: ") and "Traceback" not in run.stderr
    assert "the Larq environment's interpreter is missing" in lines[-1] and "make larq-env" in lines[-1]


def test_missing_larq_model_file_is_refused(tmp_path: Path) -> None:
    """A larq.model_files entry that does not exist is refused at parse time, not replaced by training."""
    config = config_with(python=sys.executable, model_files={"lfc_w1a1_larq": "/nonexist.h5"})
    config.update(models=["lfc_w1a1_larq"])
    run = dry_run(tmp_path, config)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines()[-1] == "config: refused: larq.model_files.lfc_w1a1_larq: /nonexist.h5 not found"
    assert "train_larq" not in run.stdout


def test_brevitas_only_config_needs_no_larq_environment(tmp_path: Path) -> None:
    """Without Larq models and without LCE in the XNOR benchmark (xnor.bench_lce), no Larq interpreter is needed;
    with LCE on (the default) a missing one is refused at parse time, naming it and the way out."""
    config = config_with(python=str(tmp_path / "no-venv" / "bin" / "python"))
    config["xnor"]["bench_lce"] = False
    run = dry_run(tmp_path, config)
    assert run.returncode == 0, run.stdout + run.stderr
    config["xnor"]["bench_lce"] = True
    run = dry_run(tmp_path, config)
    assert run.returncode == 2, run.stdout + run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("config: refused: xnor.bench_lce: ") and "Traceback" not in run.stderr
    assert "no-venv/bin/python: the Larq environment's interpreter is missing; xnor.bench_lce" in last
