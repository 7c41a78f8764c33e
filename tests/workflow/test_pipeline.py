"""End-to-end: `snakemake all` on the CI config runs every stage this machine can run, then its outputs are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = Path(__file__).with_name("ci_config.yaml")

pytestmark = pytest.mark.pipeline
# pipeline_run (the local `snakemake all` on the CI config) is in conftest.py: test_slurm.py compares with it


def merged_config() -> dict:
    config = yaml.safe_load((REPO / "workflow" / "config.yaml").read_text())
    for path in (CI_CONFIG, CI_CONFIG.with_name("ci_larq.yaml")):  # as conftest.py's pipeline_run lays them
        for key, value in yaml.safe_load(path.read_text()).items():
            if isinstance(value, dict):
                config[key].update(value)
            else:
                config[key] = value
    return config


MODEL, BOARD = "tfc_w1a1", "Pynq-Z1"
LARQ_MODEL = "tfc_w1a1_larq"  # the same topology in Larq (issue 13): trained, converted, proven, built, validated


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_config_is_what_ci_means() -> None:
    config = merged_config()
    assert config["models"] == [MODEL, LARQ_MODEL] and config["boards"] == [BOARD]
    assert config["finn"]["target"] == "emulation"


def test_data_stage(pipeline_run: Path) -> None:
    with np.load(pipeline_run / "resources" / "mnist.npz") as npz:
        assert npz["x_train"].shape == (60000, 28, 28)
        assert np.bincount(npz["y_test"]).tolist()[:3] == [980, 1135, 1032]


def test_training_stage(pipeline_run: Path) -> None:
    train = pipeline_run / "results" / MODEL / "train"
    metrics = read_json(train / "metrics.json")
    assert metrics["epochs"] == merged_config()["train"]["epochs"]
    assert metrics["test_accuracy"] > 0.7  # 3 epochs on 4,500 images: far above chance (0.1)
    assert metrics["footprint"]["compression_ratio"] == 32.0
    assert (train / "curves.png").stat().st_size > 1000
    assert len((train / "history.csv").read_text().splitlines()) == 1 + metrics["epochs"]
    assert any((train / "tensorboard").rglob("events.out.tfevents.*"))


def test_export_stage_round_trip(pipeline_run: Path) -> None:
    export = pipeline_run / "results" / MODEL / "export"
    roundtrip = read_json(export / "roundtrip.json")
    assert roundtrip["passed"] and roundtrip["max_abs_diff"] == 0.0
    with np.load(export / "golden.npz") as golden:
        assert golden["x"].dtype == np.uint8 and golden["x"].shape[1:] == (1, 28, 28)


def test_finn_build_verified_every_step(pipeline_run: Path) -> None:
    build = pipeline_run / "hw_builds" / MODEL / BOARD
    summary = read_json(build / "summary.json")
    assert summary["target"] == "emulation" and summary["fits"] is True
    assert summary["verified_steps"][-1] == "step_make_zynq_driver"
    assert {"step_streamline", "step_convert_to_hw", "step_specialize_layers", "step_hw_codegen"} <= set(summary["verified_steps"])
    assert summary["estimate"]["throughput_fps"] > 0 and summary["estimate"]["latency_cycles"] > 0
    assert summary["range_proof"]["all_fit"] and all(r["fits"] for r in summary["range_proof"]["nodes"])
    io = read_json(build / "driver" / "settings.json")["driver_information"]["io_shape_dict"]
    assert io["idma_names"] == ["idma0"] and io["odma_names"] == ["odma0"]
    assert io["idt"] == ["DataType['UINT8']"] and io["ishape_normal"] == [[1, 1, 28, 28]]


@pytest.mark.parametrize("model", [MODEL, LARQ_MODEL])
def test_frontend_once_per_model_read_by_build_and_xnor(pipeline_run: Path, model: str) -> None:
    """FINN's board-independent steps run once, in the front end; the board build and the XNOR export read its graph."""
    import hashlib

    frontend = pipeline_run / "results" / model / "frontend"
    record = read_json(frontend / "frontend.json")
    assert record["steps"] == record["verified_steps"] and "step_streamline" in record["steps"]
    assert record["hw_model_sha256"] == hashlib.sha256((frontend / "hw.onnx").read_bytes()).hexdigest()
    assert len(record["golden_float_tie_mask"]) == record["golden_samples_checked"]
    summary = read_json(pipeline_run / "hw_builds" / model / BOARD / "summary.json")
    assert summary["frontend"]["steps"] == record["steps"]
    board_steps = summary["steps"][len(record["steps"]):]
    assert summary["steps"][: len(record["steps"])] == record["steps"]
    assert not set(record["steps"]) & set(board_steps)  # no front-end step runs again per board
    assert not (pipeline_run / "hw_builds" / model / BOARD / "intermediate_models" / "step_streamline.onnx").exists()
    from host.xnor_format import load_xnor_model

    meta = load_xnor_model(pipeline_run / "results" / model / "xnor" / "xnor_model.npz").meta
    assert meta["finn_steps"] == record["steps"] and Path(meta["frontend"]).name == "hw.onnx"


def test_xnor_reference_agrees_with_brevitas_and_finn(pipeline_run: Path) -> None:
    verify = read_json(pipeline_run / "results" / MODEL / "xnor" / "verify.json")
    assert verify["passed"] and verify["first_difference"] is None
    assert verify["images"] == merged_config()["data"]["test_subset"] == verify["images_finn"]
    typed = verify["type_faithful"]  # the built accelerator's model in its generated types, every image
    assert typed["agree"] == typed["of"] == verify["images"] and not any(typed["values_overflowing_type"].values())
    ties = verify["float_ties"]  # Brevitas' float32 differences proven to be ties (README: the exact function)
    assert isinstance(ties["count"], int) and len(ties["first"]) == min(ties["count"], 5)
    summary = read_json(pipeline_run / "hw_builds" / MODEL / BOARD / "summary.json")
    assert "step_exact_thresholds" in summary["verified_steps"] and isinstance(summary["golden_float_ties"], int)


def test_validation_on_emulated_accelerator(pipeline_run: Path) -> None:
    validation = read_json(pipeline_run / "results" / MODEL / BOARD / "validation.json")
    assert validation["backend"] == "emulation" and validation["images"] == 1000
    verify = read_json(pipeline_run / "results" / MODEL / "xnor" / "verify.json")
    assert validation["brevitas_float_ties"] == verify["float_ties"]["count"]
    assert validation["agreement"]["exact"] and validation["agreement"]["differing_images"] == 0
    assert validation["agreement"]["arithmetic"].startswith("type-faithful")
    assert not any(validation["agreement"]["values_overflowing_type"].values())
    assert validation["accelerator"]["latency"]["kind"] == "estimate"
    assert {b["status"] for b in validation["budgets"].values()} <= {"pass", "fail", "not_measured"}
    manifest = read_json(pipeline_run / "hw_builds" / MODEL / BOARD / "deploy" / "manifest.json")
    assert manifest


def test_report(pipeline_run: Path) -> None:
    html = (pipeline_run / "results" / "report.html").read_text()
    assert html.count("<img") >= 5
    frame = pd.read_csv(pipeline_run / "results" / "summary.csv")
    assert frame["model"].tolist() == [MODEL, LARQ_MODEL]
    row = frame.iloc[0]
    for column in ("test_accuracy_pct", "est_throughput_fps", "LUT", "accelerator_accuracy_pct"):
        assert pd.notna(row[column]), column
    assert bool(row["accuracy_stages_agree"])
    bench = json.loads((pipeline_run / "results" / "bench" / "xnor.json").read_text())
    # ci_larq.yaml turns on Larq Compute Engine: its rows (logits checked equal in .venv-larq first) beside bnnflow's
    engines = {r["engine"] for r in bench["results"]}
    assert {"xnor_numpy", "torch_fp32", "lce_default", "lce_indirect_bgemm"} <= engines
    assert bench["binary_mac_ceiling"]["gmac_per_s"] > 0 and "tfc_batch1_vs_best_lce_x" in bench["summary"]


def test_every_rule_wrote_a_log(pipeline_run: Path) -> None:
    logs = {p.parts[len(pipeline_run.parts) + 1] for p in (pipeline_run / "logs").rglob("*.log")}
    assert {"prepare_data", "train_model", "export_qonnx", "build_frontend", "compile_finn", "export_xnor", "verify_xnor",
            "package_deployment", "validate_accelerator", "render_report"} <= logs


def test_larq_model_through_the_pipeline(pipeline_run: Path) -> None:
    """Larq training in .venv-larq, qonnx == Larq on every test image, then FINN, XNOR and validation as for Brevitas."""
    results = pipeline_run / "results" / LARQ_MODEL
    metrics = read_json(results / "train" / "metrics.json")
    assert metrics["framework"] == "larq" and metrics["epochs"] == merged_config()["train"]["epochs"]
    assert metrics["test_accuracy"] > 0.5 and (results / "train" / "model.h5").is_file()
    assert len((results / "train" / "history.csv").read_text().splitlines()) == 1 + metrics["epochs"]
    assert any((results / "train" / "tensorboard").rglob("events.out.tfevents.*"))
    roundtrip = read_json(results / "export" / "roundtrip.json")
    assert roundtrip["passed"] and roundtrip["framework"] == "larq" and roundtrip["images"] == 1000
    assert roundtrip["top1_identical"] == 1000 and roundtrip["max_abs_diff"] <= merged_config()["larq"]["atol"]
    assert roundtrip["larq_top1_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    summary = read_json(pipeline_run / "hw_builds" / LARQ_MODEL / BOARD / "summary.json")
    assert summary["verified_steps"][-1] == "step_make_zynq_driver" and summary["fits"] is True
    verify = read_json(results / "xnor" / "verify.json")
    assert verify["passed"] and verify["framework"] == "larq"
    assert verify["top1_all_four_agree"] == {"agree": 1000, "of": 1000}
    validation = read_json(results / BOARD / "validation.json")
    assert validation["agreement"]["exact"] and validation["images"] == 1000
    assert validation["accuracy_pct"] == pytest.approx(100 * roundtrip["larq_top1_accuracy"])
    assert {"train_larq", "export_larq", "prove_larq_export"} <= {
        p.parts[len(pipeline_run.parts) + 1] for p in (pipeline_run / "logs").rglob("*.log")}



def test_issue17_case11_a_failed_budget_keeps_validation_json_and_the_report(pipeline_run: Path, tmp_path: Path) -> None:
    """Enforce a budget the CI model misses (in a copy of the run): only the gate after the report fails, with the
    verdict on Snakemake's output; validation.json (passed: false) and the report that shows it stay."""
    import shutil
    import subprocess
    import sys

    from pipeline_helpers import snakemake_env

    workdir = tmp_path / "run"
    shutil.copytree(pipeline_run, workdir, symlinks=True)
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({"models": [MODEL], "validate": {"enforce_budgets": True, "accuracy_min_pct": 99.99}}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                          "--configfile", str(CI_CONFIG), str(strict), "--cores", "2", "all"],
                         capture_output=True, text=True, env=snakemake_env())
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Error in rule check_validations" in out, out[-4000:]
    validation_path = workdir / "results" / MODEL / BOARD / "validation.json"
    validation = read_json(validation_path)
    assert validation["passed"] is False and validation["budgets"]["accuracy_pct"]["status"] == "fail"
    assert validation["agreement"]["exact"] and validation["enforce_budgets"] is True
    line = f"results/{MODEL}/{BOARD}/validation.json: FAILED budgets: accuracy_pct {validation['accuracy_pct']}"
    assert line in out
    frame = pd.read_csv(workdir / "results" / "summary.csv")
    assert not frame.set_index("model").loc[MODEL, "validation_passed"]
    assert not (workdir / "results" / "verdicts.json").exists()
