"""End-to-end (issue 12): `snakemake all` on the CI config with a user's 5-class data set (digits 0-4 of the prepared
MNIST, NCHW .npz), two config-declared topologies (an MLP 100-37 and a small conv net) and two imported models: a
Brevitas network written in tests/elsewhere_model.py with Brevitas' stock quantizers, exported by Brevitas to QONNX
and converted by FINN to FINN-ONNX (each file imported); each through training or import, FINN build, XNOR
verification and emulated validation, with 100 % agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from elsewhere_model import write_user_data
from pipeline_helpers import CI_CONFIG, fresh_workdir, snakemake_all

pytestmark = pytest.mark.pipeline
USER_CONFIG = CI_CONFIG.with_name("ci_user.yaml")
BOARD = "Pynq-Z1"
TRAINED = ("mlp_100_37", "conv_tiny")
FORMATS = {"elsewhere_qonnx": "qonnx", "elsewhere_finn": "finn-onnx"}  # imported: file format
IMPORTED = tuple(FORMATS)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory, full_mnist: Path) -> Path:
    """The user's files written into a fresh working directory, then `snakemake all` once."""
    workdir = fresh_workdir(tmp_path_factory.mktemp("user_pipeline"))
    write_user_data(workdir, full_mnist)  # digits5.npz, elsewhere.onnx (QONNX), elsewhere_finn.onnx (FINN-ONNX)
    return snakemake_all(workdir, CI_CONFIG, USER_CONFIG)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_config_declares_what_the_test_means() -> None:
    config = yaml.safe_load(USER_CONFIG.read_text())
    assert config["models"] == [*TRAINED, *IMPORTED] and set(config["imports"]) == set(IMPORTED)
    assert config["topologies"]["mlp_100_37"]["hidden"] == [100, 37] and config["data"]["user_datasets"]["digits5"]["classes"] == 5


@pytest.mark.parametrize("model", [*TRAINED, *IMPORTED])
def test_model_through_the_pipeline_with_full_agreement(user_run: Path, model: str) -> None:
    verify = read_json(user_run / "results" / model / "xnor" / "verify.json")
    n = verify["images"]
    assert verify["passed"] and n == 300 and verify["top1_all_four_agree"] == {"agree": n, "of": n}
    assert verify["framework"] == ("import" if model in IMPORTED else "brevitas")
    assert verify["type_faithful"]["agree"] == n
    validation = read_json(user_run / "results" / model / BOARD / "validation.json")
    assert validation["agreement"]["exact"] and validation["agreement"]["differing_images"] == 0
    assert validation["images"] == n
    summary = read_json(user_run / "hw_builds" / model / BOARD / "summary.json")
    assert summary["verified_steps"][-1] == "step_make_zynq_driver" and summary["range_proof"]["all_fit"]
    metrics = read_json(user_run / "results" / model / "train" / "metrics.json")
    assert metrics["num_classes"] == 5 and metrics["test_accuracy"] > 0.4  # chance 0.2
    assert validation["accuracy_pct"] == pytest.approx(100 * verify["accuracy"]["xnor"])


@pytest.mark.parametrize("model", IMPORTED)
def test_import_stage(user_run: Path, model: str) -> None:
    roundtrip = read_json(user_run / "results" / model / "export" / "roundtrip.json")
    assert roundtrip["format"] == FORMATS[model] and roundtrip["images"] == 300
    assert roundtrip["batched_execution_equal_to_batch_1"]
    assert not (user_run / "results" / model / "train" / "checkpoint.pt").exists()  # training skipped
    with np.load(user_run / "resources" / "digits5.npz") as npz:
        assert npz["x_test"].shape[1:] == (28, 28, 1) and set(np.unique(npz["y_test"])) == set(range(5))


def test_finn_onnx_and_qonnx_of_one_network_compute_the_same(user_run: Path) -> None:
    """Differential: FINN's FINN-ONNX of the network and Brevitas' QONNX, each imported and executed by qonnx, give
    the same class scores on every test image, and the same exact thresholds reach the FINN graphs."""
    logits = {}
    for model in ("elsewhere_qonnx", "elsewhere_finn"):
        with np.load(user_run / "results" / model / "export" / "test_logits.npz") as npz:
            logits[model] = npz["logits"]
    assert np.array_equal(logits["elsewhere_qonnx"], logits["elsewhere_finn"])
    from hw_builds.exact_function import META_PROP
    from hw_builds.execute import load_model

    recorded = [load_model(user_run / "results" / m / "frontend" / "streamlined.onnx").get_metadata_prop(META_PROP)
                for m in ("elsewhere_qonnx", "elsewhere_finn")]
    assert recorded[0] and recorded[0] == recorded[1]


def test_report_shows_imported_and_trained_side_by_side(user_run: Path) -> None:
    frame = pd.read_csv(user_run / "results" / "summary.csv")
    assert frame["model"].tolist() == [*TRAINED, *IMPORTED]
    assert frame["accuracy_stages_agree"].all() and (frame["dataset"] == "digits5").all()
    html = (user_run / "results" / "report.html").read_text()
    assert all(m in html for m in (*TRAINED, *IMPORTED))
    assert not (user_run / "results" / "bench").exists()  # report.benchmarks: [] in this config
