"""Emulation backend on a real FINN build: packed bytes in and out, exact agreement, estimates.

The module fixture runs the real chain in ~30 s: the tiny tfc_w1a1 of tests/conftest.py (600 real MNIST
images), QONNX export, the FINN front end, the emulation build from it (hw_builds.compile), the XNOR export, and the
deployment package (host.package.package_from_build).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from host.accelerator import BackendUnavailable, open_accelerator, predictions_from_output, run_batch
from host.package import load_package, make_package, package_from_build
from host.validate import validate_package
from host.xnor_format import load_xnor_model, save_xnor_model
from hw_builds.validate_emulated import OPENERS

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"batch_size": 32, "latency_repeats": 20, "enforce_budgets": True,
          "budgets": {"accuracy_min_pct": 90.0, "latency_max_ms": 50.0, "power_max_mw": 100.0}}


@pytest.fixture(scope="module")
def build(small_mnist: Path, trained_tfc: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from hw_builds.compile import compile_finn
    from hw_builds.frontend import build_frontend
    from hw_builds.xnor_export import export_xnor
    from models.export_stage import export_stage

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("emulation")
    data = small_mnist
    export_stage(trained_tfc / "checkpoint.pt", data, tmp / "export", n_golden=20)
    build_dir = tmp / "hw_builds" / "tfc_w1a1" / "Pynq-Z1"
    build_frontend(tmp / "export" / "model.onnx", tmp / "export" / "golden.npz", tmp / "frontend", "tfc_w1a1",
                   verify_samples=5, progress=False)
    compile_finn(tmp / "frontend", tmp / "export" / "golden.npz", build_dir, "Pynq-Z1",
                 model_name="tfc_w1a1", verify_samples=5, progress=False)
    xnor = tmp / "xnor" / "xnor_model.npz"
    export_xnor(tmp / "frontend", xnor, "tfc_w1a1")
    deploy = package_from_build(build_dir, xnor, data, build_dir / "deploy", test_subset=None, validate_config=CONFIG)
    return {"tmp": tmp, "data": data, "build_dir": build_dir, "xnor": xnor, "deploy": deploy}


def test_exact_agreement_on_every_test_image(build) -> None:
    report = validate_package(build["deploy"], "emulation", build["tmp"] / "validation.json", openers=OPENERS)
    assert report["images"] == len(np.load(build["data"])["y_test"]) and report["backend"] == "emulation"
    assert report["agreement"]["exact"], report["agreement"]["first_difference"]
    assert report["accuracy_pct"] == report["reference_accuracy_pct"]
    summary = json.loads((build["build_dir"] / "summary.json").read_text())
    latency = report["accelerator"]["latency"]
    assert latency["kind"] == "estimate"
    assert latency["latency_us"] == pytest.approx(summary["estimate"]["latency_us"], abs=1e-3)
    assert latency["throughput_images_per_s"] == pytest.approx(summary["estimate"]["throughput_fps"], rel=1e-6)
    assert report["budgets"]["latency_ms"]["status"] == "pass"
    assert report["budgets"]["power_mw"]["status"] == "not_measured"
    assert json.loads((build["tmp"] / "validation.json").read_text())["agreement"]["exact"] is True


def test_packed_path_equals_direct_finn_execution(build) -> None:
    """Board-shaped bytes through the emulation == FINN's model run on the pixels directly."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.core.datatype import DataType

    from hw_builds.execute import run_finn_model

    pkg = load_package(build["deploy"])
    acc = open_accelerator("emulation", pkg, batch_size=8, openers=OPENERS)
    x, _, _ = pkg.load_testset()
    x = x[:13]
    s = pkg.settings
    packed = s.pack_input(s.from_nchw(x))
    assert packed.shape == (13, *s.ishape_packed) and packed.dtype == np.uint8
    folded = s.from_nchw(x).reshape(13, *s.ishape_folded).astype(np.float32)
    finn_bytes = finnpy_to_packed_bytearray(folded, DataType[s.idt.name], reverse_inner=True, reverse_endian=True)
    assert packed.tobytes() == np.ascontiguousarray(finn_bytes).tobytes()
    out = acc.execute(packed)
    assert out.shape == (13, *s.oshape_packed) and out.dtype == np.uint8
    direct = run_finn_model(build["build_dir"] / "intermediate_models" / "step_generate_estimate_reports.onnx", x)
    np.testing.assert_array_equal(predictions_from_output(s.unpack_output(out)), direct.reshape(13, -1)[:, 0])
    np.testing.assert_array_equal(predictions_from_output(run_batch(acc, s.from_nchw(x))), direct.reshape(13, -1)[:, 0])


def test_a_different_reference_is_caught(build) -> None:
    """A real disagreement: class 0's last-layer weights inverted in the reference only."""
    model = load_xnor_model(build["xnor"])
    model.layers[-1].weights_packed[0] ^= 0xFF
    wrong = build["tmp"] / "wrong" / "xnor_model.npz"
    save_xnor_model(model, wrong)
    deploy = package_from_build(build["build_dir"], wrong, build["data"], build["tmp"] / "wrong" / "deploy",
                                test_subset=60, validate_config=CONFIG)
    report = validate_package(deploy, "emulation", openers=OPENERS)
    agreement = report["agreement"]
    assert not agreement["exact"] and agreement["differing_images"] > 0 and not report["passed"]
    first = agreement["first_difference"]
    assert first["accelerator"] != first["reference"]
    res = subprocess.run([sys.executable, "-m", "hw_builds.validate_emulated", "validate", "--package", str(deploy), "--backend",
                          "emulation", "--out", str(build["tmp"] / "wrong.json")], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 1
    assert f"first at package position {first['position']}" in res.stderr


def test_cli_exit_status_follows_budgets(build, tmp_path) -> None:
    out = tmp_path / "v.json"
    res = subprocess.run([sys.executable, "-m", "hw_builds.validate_emulated", "validate", "--package", str(build["deploy"]), "--backend",
                          "emulation", "--limit", "40", "--out", str(out)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    report = json.loads(out.read_text())
    assert report["images"] == 40 and report["agreement"]["exact"]
    expected = 0 if report["budgets"]["accuracy_pct"]["status"] == "pass" else 1
    assert res.returncode == expected, res.stderr


def test_emulation_refuses_settings_that_do_not_fit_the_model(build, tmp_path) -> None:
    from host.packing import DriverSettings

    from hw_builds.emulation import EmulatedAccelerator

    raw = json.loads((build["build_dir"] / "driver" / "settings.json").read_text())
    io = raw["driver_information"]["io_shape_dict"]
    io.update(ishape_normal=[[1, 3, 32, 32]], ishape_folded=[[1, 3, 32, 32, 1]], ishape_packed=[[1, 3, 32, 32, 1]])
    with pytest.raises(BackendUnavailable, match="does not match settings.json ishape_normal"):
        EmulatedAccelerator(DriverSettings.from_dict(raw), build["build_dir"] / "intermediate_models" / "step_generate_estimate_reports.onnx")


def _parent(ops: list[tuple[str, list[int] | None]]):
    """A dataflow-parent-like graph: the given (op_type, perm) nodes chained, one of them the partition."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    nodes = []
    for i, (op, perm) in enumerate(ops):
        attrs = {"perm": perm} if perm is not None else {}
        nodes.append(helper.make_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"{op}_{i}", **attrs))
    graph = helper.make_graph(nodes, "parent", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info(f"t{len(ops)}", TensorProto.FLOAT, None)])
    return ModelWrapper(helper.make_model(graph))


def test_only_the_hosts_input_transpose_may_sit_outside_the_partition() -> None:
    """CNV's parent is [Transpose NCHW->NHWC, partition]: the host's from_nchw does that transpose, so the
    emulation runs the partition alone (as the board does). Anything else outside is refused, named."""
    from hw_builds.emulation import check_host_side_of_parent

    sdp = ("StreamingDataflowPartition", None)
    check_host_side_of_parent(_parent([sdp]), "p.onnx")
    check_host_side_of_parent(_parent([("Transpose", [0, 2, 3, 1]), sdp]), "p.onnx")
    for ops in ([("Transpose", [0, 3, 1, 2]), sdp], [sdp, ("Mul", None)], [("Relu", None), sdp],
                [("Transpose", [0, 2, 3, 1]), ("Transpose", [0, 2, 3, 1]), sdp]):
        with pytest.raises(BackendUnavailable, match=r"p\.onnx: FINN left .* outside the dataflow partition"):
            check_host_side_of_parent(_parent(ops), "p.onnx")
    with pytest.raises(BackendUnavailable, match="expected one dataflow partition, found 0"):
        check_host_side_of_parent(_parent([("Relu", None)]), "p.onnx")


def test_host_alone_refuses_the_emulation_and_names_who_supplies_it(build) -> None:
    """host/ does not import hw_builds/: without the FINN side's opener the emulation is refused (exit 2)."""
    with pytest.raises(BackendUnavailable, match="supplied by bnnflow's FINN side"):
        open_accelerator("emulation", load_package(build["deploy"]), batch_size=8)
    res = subprocess.run([sys.executable, "-m", "host", "validate", "--package", str(build["deploy"]), "--backend",
                          "emulation", "--limit", "5"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 2 and "python -m hw_builds.validate_emulated" in res.stderr


def test_emulation_refuses_an_unreadable_model(build, tmp_path) -> None:
    """A package whose emulation/model.onnx is not ONNX: refused with exit status 2, the file named."""
    (tmp_path / "model.onnx").write_bytes(b"placeholder, not an ONNX model")
    deploy = make_package(tmp_path / "deploy", model="tfc_w1a1", board="Pynq-Z1", target="emulation",
                          settings_json=build["deploy"] / "driver" / "settings.json", xnor_npz=build["xnor"],
                          dataset_npz=build["data"], test_subset=10, validate_config=CONFIG, host_dir=REPO / "host",
                          emulation_model=tmp_path / "model.onnx")
    res = subprocess.run([sys.executable, "-m", "hw_builds.validate_emulated", "validate", "--package", str(deploy),
                          "--backend", "emulation"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 2 and "model.onnx: not a readable ONNX model" in res.stderr
