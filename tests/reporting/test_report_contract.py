"""The report reads what the real producers write: hw_builds.summary.build_summary and host.validate.

Synthetic fixtures (report_fixtures.py) keep the other tests fast; these two run the producing code
itself on small inputs, so a renamed field in summary.json or validation.json fails here rather than
turning a column into n/a unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from report_fixtures import write_build, write_training

from reporting.inputs import discover, load_inputs
from reporting.summary import summary_frame

REPO = Path(__file__).resolve().parents[2]
# driver/settings.json as finn-plus 1.6.1 wrote it for a TFC-w1a1 Pynq-Z1 build (UINT8 pixels, SIMD 1, class index out).
SETTINGS = {
    "driver_information": {
        "driver_type": "FINNDMAOverlay", "platform": "zynq-iodma", "fclk_mhz": 100.0,
        "external_weights": False, "runtime_weights": False,
        "io_shape_dict": {
            "idt": ["DataType['UINT8']"], "odt": ["DataType['UINT8']"], "idma_names": [""], "odma_names": [""],
            "ishape_normal": [[1, 1, 28, 28]], "ishape_folded": [[1, 1, 28, 28, 1]], "ishape_packed": [[1, 1, 28, 28, 1]],
            "oshape_normal": [[1, 1]], "oshape_folded": [[1, 1, 1]], "oshape_packed": [[1, 1, 1]],
            "num_inputs": 1, "num_outputs": 1, "number_of_external_weights": 0, "external_weights_input_shapes": {},
        },
    },
    "experiment_information": {},
}


def test_summary_json_from_build_summary(tmp_path: Path) -> None:
    from hw_builds.boards import get_board
    from host.atomic import write_json_atomic
    from hw_builds.summary import build_summary

    write_training(tmp_path, "tfc_w1a1")
    write_build(tmp_path, "tfc_w1a1", "Pynq-Z1")  # FINN's report/*.json; summary.json is replaced below
    out = tmp_path / "hw_builds/tfc_w1a1/Pynq-Z1"
    build = {"model": "tfc_w1a1", "target": "emulation", "clk_period_ns": 10.0, "target_fps": 100000, "folding_config": None,
             "partition_spans_network": True, "steps": [], "seconds_per_step": {}, "build_seconds": 1.0,
             "folding_repairs": []}
    summary = build_summary(out, get_board("Pynq-Z1"), build, [])
    write_json_atomic(out / "summary.json", summary)
    inputs = load_inputs(discover(tmp_path, ["tfc_w1a1"], ["Pynq-Z1"]), ["tfc_w1a1"], ["Pynq-Z1"])
    row = summary_frame(inputs).iloc[0]
    assert row["est_throughput_fps"] == summary["estimate"]["throughput_fps"]
    assert row["est_latency_us"] == summary["estimate"]["latency_us"]
    assert (row["LUT"], row["BRAM_18K"], row["DSP"]) == tuple(summary["resources_total"][r] for r in ("LUT", "BRAM_18K", "DSP"))
    assert row["lut_utilization_pct"] == 100 * summary["utilization"]["LUT"] and bool(row["fits"]) is summary["fits"]
    build_data = inputs.builds[("tfc_w1a1", "Pynq-Z1")]
    assert build_data.bottleneck == summary["estimate"]["bottleneck_layer"]
    assert build_data.layers["cycles"].to_dict() == {k: float(v) for k, v in summary["cycles_per_layer"].items()}


class XnorAnswers:
    """Accelerator double for host.validate: unpacks the DMA bytes, answers with the XNOR reference."""

    backend = "emulation"

    def __init__(self, settings, xnor_path: Path):
        from host.xnor import XnorReference

        self.settings, self.reference = settings, XnorReference.load(xnor_path)

    def execute(self, packed: np.ndarray) -> np.ndarray:
        from host.packing import pack_rows

        packed = self.settings.check_packed_input(packed)
        labels = self.reference.predict(packed.reshape(len(packed), 1, 28, 28))
        return pack_rows(labels.reshape(len(packed), 1, 1), self.settings.odt)

    def latency_estimate(self):
        from host.accelerator import LatencyEstimate

        return LatencyEstimate(fclk_mhz=100.0, critical_path_cycles=4138, max_cycles=896)

    def close(self) -> None:
        pass


def test_validation_json_from_host_validate(tmp_path: Path) -> None:
    from host.package import load_package, make_package
    from host.validate import validate_package
    from host.xnor_format import save_xnor_model
    from host.xnor_random import random_xnor_model

    rng = np.random.default_rng(0)
    save_xnor_model(random_xnor_model([784, 64, 64, 64, 10], rng, input_shape=(1, 28, 28)), tmp_path / "xnor_model.npz")
    np.savez(tmp_path / "data.npz", x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), y_train=np.zeros(5, np.uint8),
             x_test=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 30).astype(np.uint8))
    (tmp_path / "settings.json").write_text(json.dumps(SETTINGS))
    (tmp_path / "model.onnx").write_bytes(b"not read: the test drives its own accelerator")
    package = make_package(
        tmp_path / "deploy", model="tfc_w1a1", board="Pynq-Z1", target="emulation", settings_json=tmp_path / "settings.json",
        xnor_npz=tmp_path / "xnor_model.npz", dataset_npz=tmp_path / "data.npz", test_subset=None,
        validate_config={"batch_size": 8, "latency_repeats": 5, "enforce_budgets": True,
                         "budgets": {"accuracy_min_pct": 90.0, "latency_max_ms": 50.0, "power_max_mw": 100.0}},
        host_dir=REPO / "host", emulation_model=tmp_path / "model.onnx")
    acc = XnorAnswers(load_package(package).settings, tmp_path / "xnor_model.npz")
    out = tmp_path / "results/tfc_w1a1/Pynq-Z1/validation.json"
    report = validate_package(package, "emulation", out, accelerator=acc)
    write_training(tmp_path, "tfc_w1a1")

    inputs = load_inputs(discover(tmp_path, ["tfc_w1a1"], ["Pynq-Z1"]), ["tfc_w1a1"], ["Pynq-Z1"])
    row = summary_frame(inputs).iloc[0]
    assert row["accelerator_accuracy_pct"] == report["accuracy_pct"]
    assert row["accelerator_vs_xnor_agree_pct"] == 100.0 == report["agreement"]["agreement_pct"]
    assert row["validation_images"] == 30 and row["validation_backend"] == "emulation"
    assert row["xnor_cpu_latency_us_p50"] == report["reference"]["latency"]["latency_us_p50"]
    assert (row["budget_accuracy"], row["budget_latency"], row["budget_power"]) == tuple(
        report["budgets"][k]["status"] for k in ("accuracy_pct", "latency_ms", "power_mw"))
    assert bool(row["validation_passed"]) is report["passed"]
