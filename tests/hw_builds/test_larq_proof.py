"""hw_builds.larq_proof: a converted Larq graph is published to export/ only if qonnx reproduces Larq's logits.

The graphs here are written by hand with onnx.helper in the shape larq_models.convert writes (Mul, Add, Reshape,
BipolarQuant, MatMul, BatchNormalization, TensorNorm's Sub / Div / Mul / Add), and "Larq's" logits are computed
independently in numpy, so these tests need no Larq environment (tests/larq_models and the pipeline test
cover the real Larq side)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hw_builds.larq_proof import LarqMismatchError, LarqProofError, prove_larq_export, with_batch

REPO = Path(__file__).resolve().parents[2]
Q = "qonnx.custom_op.general"


def _graph(w1: np.ndarray, bn: tuple, w2: np.ndarray) -> onnx.ModelProto:
    inits = {"scale": np.array(2 / 255, np.float32), "offset": np.array(-1.0, np.float32),
             "shape": np.array([1, -1], np.int64), "one": np.array([1.0], np.float32), "w1": w1, "w2": w2,
             "g": bn[0], "b": bn[1], "m": bn[2], "v": bn[3], "tm": np.array([0.5], np.float32),
             "ts": np.array([2.0], np.float32), "tw": np.array([1.5], np.float32), "tb": np.array([0.25], np.float32)}
    nodes = [
        helper.make_node("Mul", ["global_in", "scale"], ["a"]), helper.make_node("Add", ["a", "offset"], ["b0"]),
        helper.make_node("Reshape", ["b0", "shape"], ["c"]),
        helper.make_node("BipolarQuant", ["c", "one"], ["d"], domain=Q),
        helper.make_node("BipolarQuant", ["w1", "one"], ["w1q"], domain=Q),
        helper.make_node("MatMul", ["d", "w1q"], ["e"]),
        helper.make_node("BatchNormalization", ["e", "g", "b", "m", "v"], ["f"], epsilon=1e-5),
        helper.make_node("BipolarQuant", ["f", "one"], ["h"], domain=Q),
        helper.make_node("BipolarQuant", ["w2", "one"], ["w2q"], domain=Q),
        helper.make_node("MatMul", ["h", "w2q"], ["i"]),
        helper.make_node("Sub", ["i", "tm"], ["j"]), helper.make_node("Div", ["j", "ts"], ["k"]),
        helper.make_node("Mul", ["k", "tw"], ["l"]), helper.make_node("Add", ["l", "tb"], ["global_out"]),
    ]
    graph = helper.make_graph(nodes, "larq_like", [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, 1, 6, 6])],
                              [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, 4])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid(Q, 1)])
    model.ir_version = 9
    return model


def _numpy_forward(x: np.ndarray, w1, bn, w2) -> np.ndarray:
    """The same network in float32 numpy: what "Larq" computed."""
    v = x.reshape(len(x), -1).astype(np.float32) * np.float32(2 / 255) + np.float32(-1)
    v = np.where(v >= 0, 1, -1).astype(np.float32) @ np.where(w1 >= 0, 1, -1).astype(np.float32)
    g, b, m, var = bn
    v = (v - m) / np.sqrt(var + np.float32(1e-5)) * g + b
    v = np.where(v >= 0, 1, -1).astype(np.float32) @ np.where(w2 >= 0, 1, -1).astype(np.float32)
    return ((v - np.float32(0.5)) / np.float32(2.0) * np.float32(1.5) + np.float32(0.25)).astype(np.float32)


@pytest.fixture()
def larq_export(tmp_path: Path) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(0)
    w1, w2 = rng.uniform(-1, 1, (36, 8)).astype(np.float32), rng.uniform(-1, 1, (8, 4)).astype(np.float32)
    bn = (rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32),
          rng.normal(0, 3, 8).astype(np.float32) + 0.5, rng.uniform(1, 9, 8).astype(np.float32))
    x_test = rng.integers(0, 256, (60, 6, 6), dtype=np.uint8)
    y_test = rng.integers(0, 4, 60).astype(np.uint8)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x_test, y_train=y_test, x_test=x_test, y_test=y_test)
    logits = _numpy_forward(x_test, w1, bn, w2)
    larq = tmp_path / "m" / "larq"
    larq.mkdir(parents=True)
    onnx.save(_graph(w1, bn, w2), str(larq / "model.onnx"))
    idx = np.array([3, 10, 59])
    np.savez(larq / "golden.npz", x=x_test[idx][:, None], labels=y_test[idx].astype(np.int64), logits=logits[idx],
             indices=idx)
    np.savez(larq / "test_logits.npz", y_true=y_test.astype(np.int64), y_pred=logits.argmax(1), logits=logits,
             source=np.array("numpy stand-in for Larq"))
    return larq, data, {"logits": logits}


def test_proof_passes_and_publishes_export(larq_export, tmp_path: Path) -> None:
    larq, data, ref = larq_export
    out = tmp_path / "m" / "export"
    result = prove_larq_export(larq, data, out)
    assert result["passed"] and result["images"] == 60 and result["top1_identical"] == 60
    assert result["max_abs_diff"] == 0.0 and result["golden_batch1"]["images"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["golden.npz", "model.onnx", "roundtrip.json"]
    assert json.loads((out / "roundtrip.json").read_text())["passed"]


def test_batched_copy_changes_only_the_batch(larq_export) -> None:
    from qonnx.core.modelwrapper import ModelWrapper

    larq, _, _ = larq_export
    batched = with_batch(ModelWrapper(str(larq / "model.onnx")), 7)
    assert batched.get_tensor_shape("global_in") == [7, 1, 6, 6] and batched.get_tensor_shape("global_out") == [7, 4]
    original = onnx.load(str(larq / "model.onnx"))
    assert sorted(n.op_type for n in batched.graph.node) == sorted(n.op_type for n in original.graph.node)


def test_mismatch_publishes_nothing(larq_export, tmp_path: Path) -> None:
    """One logit of one image off by 1e-3 (> atol 0): refused, exit 1, export/ untouched."""
    larq, data, ref = larq_export
    with np.load(larq / "test_logits.npz") as t:
        arrays = dict(t)
    arrays["logits"] = arrays["logits"].copy()
    arrays["logits"][17, 2] += 1e-3
    np.savez(larq / "test_logits.npz", **arrays)
    with pytest.raises(LarqMismatchError, match=r"differs from Larq on 1\+ of 60 test images"):
        prove_larq_export(larq, data, tmp_path / "m" / "export")
    assert not (tmp_path / "m" / "export").exists() or not any((tmp_path / "m" / "export").iterdir())
    assert prove_larq_export(larq, data, tmp_path / "m" / "export", atol=2e-3)["passed"]  # within a stated atol


def test_inconsistent_inputs_refused_with_exit_2(larq_export, tmp_path: Path) -> None:
    larq, data, _ = larq_export
    run = subprocess.run([sys.executable, "-m", "hw_builds.larq_proof", "--larq-dir", str(larq), "--dataset", str(data),
                          "--out-dir", str(tmp_path / "out"), "--test-subset", "50"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "not the first 50 test labels" in run.stderr
    (larq / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(LarqProofError, match="model.onnx: qonnx cannot load it"):
        prove_larq_export(larq, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
