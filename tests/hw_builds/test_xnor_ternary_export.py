"""Ternary (w2a2) export from FINN and the four-way verification, on a tiny tfc_w2a2 and cnv_w2a2 trained in seconds.

Real components throughout: real MNIST, Brevitas training, QONNX export, finn-plus streamlining and HW
conversion (MVAU binaryXnorMode=0, INT2 weights in {-1, 0, +1}), FINN/qonnx python execution. The
exported +1 / -1 masks must be Brevitas' own quantized weights, the XNOR reference must match every
path exactly, and a single changed ternary weight must be caught and located.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from frontend_helpers import xnor_from_checkpoint  # tests/hw_builds is on sys.path, as tests/host's helpers

from host.xnor import XnorReference
from host.xnor_format import load_xnor_model, save_xnor_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


def _train_and_export(name: str, data: Path, recipe: dict, out: Path, train_subset: int | None) -> dict[str, Path]:
    from models.train import train_model

    train_model(name, data, out / "train", recipe, train_subset=train_subset, progress=False)
    return xnor_from_checkpoint(out / "train" / "checkpoint.pt", data, out, name)


@pytest.fixture(scope="module")
def tfc_w2a2(small_mnist: Path, tiny_recipe: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _train_and_export("tfc_w2a2", small_mnist, tiny_recipe, tmp_path_factory.mktemp("tfc_w2a2_xnor"), None)


@pytest.fixture(scope="module")
def cnv_w2a2(small_mnist: Path, tiny_recipe: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    recipe = {**tiny_recipe, "epochs": 1}
    return _train_and_export("cnv_w2a2", small_mnist, recipe, tmp_path_factory.mktemp("cnv_w2a2_xnor"), 300)


def _brevitas_int_weights(checkpoint: Path) -> list[np.ndarray]:
    """Each Conv / Linear's quantized weights as integers (M, K), K in FINN's im2col order (kh, kw, c)."""
    from brevitas.nn import QuantConv2d, QuantLinear

    from models.checkpoint import load_checkpoint

    out = []
    for module in load_checkpoint(checkpoint).modules():
        if isinstance(module, (QuantConv2d, QuantLinear)):
            q = module.quant_weight()
            w = (q.value / q.scale).detach().numpy()
            if w.ndim == 4:  # (M, C, KH, KW) -> (M, KH, KW, C)
                w = w.transpose(0, 2, 3, 1)
            out.append(np.rint(w.reshape(len(w), -1)).astype(np.int64))
    return out


def _check_masks_are_brevitas_weights(paths: dict[str, Path]) -> None:
    """The +1 / -1 masks hold Brevitas' ternary weights (a neuron may be negated whole: FINN moves a
    negative batch-norm scale's sign into its weights), with zeros and both signs present."""
    model = load_xnor_model(paths["npz"])
    brevitas = _brevitas_int_weights(paths["checkpoint"])
    assert len(brevitas) == len(model.layers)
    for i, (layer, want) in enumerate(zip(model.layers, brevitas)):
        got = layer.weights_int().astype(np.int64)
        assert layer.weight_bits == 2 and got.shape == want.shape, i
        assert set(np.unique(got)) == {-1, 0, 1}, f"layer{i}: zeros and both signs expected in a trained layer"
        same, negated = np.all(got == want, axis=1), np.all(got == -want, axis=1)
        assert np.all(same | negated), f"layer{i}: neurons {np.nonzero(~(same | negated))[0][:5]} differ"


def _check_report(report: dict, n: int, n_finn: int, layers: int) -> None:
    assert report["passed"] and report["images"] == n and report["images_finn"] == n_finn
    assert report["top1_agree_with_xnor"]["brevitas"] == {"agree": n, "of": n}
    for path in ("finn_streamlined", "finn_hw"):
        assert report["top1_agree_with_xnor"][path] == {"agree": n_finn, "of": n_finn}
    assert report["top1_all_four_agree"] == {"agree": n_finn, "of": n_finn}
    for path in ("brevitas", "finn_streamlined"):  # every layer's codes and accumulators compared
        rows = {r["intermediate"]: r for r in report["intermediates"][path]}
        assert {f"layer{i}.{t}" for i in range(layers) for t in ("in_bits", "acc")} <= set(rows), path
        assert all(r["images_differing"] == 0 for r in rows.values()), path
    assert report["max_abs_logit_diff_vs_xnor"]["finn_hw"] == 0.0
    assert report["accuracy"]["xnor"] > 0.2  # it learned something (chance is 0.1)


def test_tfc_w2a2_export_is_ternary_and_bit_exact(tfc_w2a2: dict[str, Path], tmp_path: Path) -> None:
    from hw_builds.xnor_verify import verify_xnor

    model = load_xnor_model(tfc_w2a2["npz"])
    assert [(l.in_features, l.out_features, l.act_bits, l.act_bias, l.weight_bits) for l in model.layers] == [
        (784, 64, 2, -1, 2), (64, 64, 2, -1, 2), (64, 64, 2, -1, 2), (64, 10, 2, -1, 2)]
    np.testing.assert_array_equal(np.unique(model.input_thresholds, axis=0), [[64, 192]])
    summary = json.loads(tfc_w2a2["summary"].read_text())
    assert [l.get("weight_bits") for l in summary["layers"]] == [2, 2, 2, 2]
    assert summary["weights_packed_bytes"] * 16 == pytest.approx(summary["weights_fp32_bytes"], rel=0.01)
    _check_masks_are_brevitas_weights(tfc_w2a2)
    report = verify_xnor(tfc_w2a2["npz"], tfc_w2a2["checkpoint"], tfc_w2a2["streamlined"], tfc_w2a2["hw"],
                         tfc_w2a2["data"], tmp_path / "verify.json", "tfc_w2a2", test_subset=300, finn_subset=40)
    _check_report(report, 300, 40, 4)


def test_one_changed_ternary_weight_is_caught_and_located(tfc_w2a2: dict[str, Path], tmp_path: Path) -> None:
    """A zero weight made +1 in layer 1, where that input's value is nonzero on some test images."""
    from hw_builds.xnor_verify import XnorVerificationError, verify_xnor
    from models.datasets import load_npz

    model = load_xnor_model(tfc_w2a2["npz"])
    x = load_npz(tfc_w2a2["data"], test_subset=30)["x_test"].reshape(30, -1).astype(np.uint8)
    values = XnorReference(model).trace(x)["layer1.in_bits"].astype(int) + model.layers[1].act_bias
    w = model.layers[1].weights_int()
    m, k = next((m, k) for m, k in zip(*np.nonzero(w == 0)) if np.any(values[:, k] != 0))
    model.layers[1].weights_packed = model.layers[1].weights_packed.copy()
    model.layers[1].weights_packed[m, k // 8] |= np.uint8(1 << (k % 8))
    bad = tmp_path / "xnor_model.npz"
    save_xnor_model(model, bad)
    out = tmp_path / "verify.json"
    with pytest.raises(XnorVerificationError, match=r"first at layer1\.acc"):
        verify_xnor(bad, tfc_w2a2["checkpoint"], tfc_w2a2["streamlined"], tfc_w2a2["hw"], tfc_w2a2["data"],
                    out, "tfc_w2a2", test_subset=30, finn_subset=3)
    assert not out.exists()


@pytest.mark.parametrize("edit, message", [
    ("value", r"node MVAU\S* \(MVAU\S*\): INT2 weights outside the ternary \{-1, 0, \+1\}: \[-2\]"),
    ("dtype", r"node MVAU\S* \(MVAU\S*\): weightDataType INT4 is not supported"),
])
def test_non_ternary_2bit_weights_are_refused_with_the_node_named(tfc_w2a2: dict[str, Path], edit: str,
                                                                  message: str) -> None:
    """INT2 also holds -2 (Brevitas' narrow range never does); wider weights are not 2-bit at all."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_builds.xnor_export import XnorExportError, extract_xnor_model

    hw = ModelWrapper(str(tfc_w2a2["hw"]))
    node = next(n for n in hw.graph.node if n.op_type.startswith("MVAU"))
    if edit == "value":
        w = hw.get_initializer(node.input[1]).copy()
        w[0, 0] = -2
        hw.set_initializer(node.input[1], w)
    else:
        getCustomOp(node).set_nodeattr("weightDataType", "INT4")
    extract = lambda: extract_xnor_model(hw, (1, 28, 28))  # noqa: E731
    with pytest.raises(XnorExportError, match=message):
        extract()


def test_cnv_w2a2_export_is_ternary_and_bit_exact(cnv_w2a2: dict[str, Path], tmp_path: Path) -> None:
    """CNV: the first conv reads the 8-bit Q1.7 input with ternary weights; every conv, pool and dense layer
    is ternary on 2-bit codes after it."""
    from hw_builds.xnor_verify import verify_xnor

    model = load_xnor_model(cnv_w2a2["npz"])
    assert [(l.act_bits, l.act_bias, l.weight_bits, l.conv is not None, l.pool is not None)
            for l in model.layers] == [(8, -128, 2, True, False), (2, -1, 2, True, True), (2, -1, 2, True, False),
                                       (2, -1, 2, True, True), (2, -1, 2, True, False), (2, -1, 2, True, False),
                                       (2, -1, 2, False, False), (2, -1, 2, False, False), (2, -1, 2, False, False)]
    _check_masks_are_brevitas_weights(cnv_w2a2)
    report = verify_xnor(cnv_w2a2["npz"], cnv_w2a2["checkpoint"], cnv_w2a2["streamlined"], cnv_w2a2["hw"],
                         cnv_w2a2["data"], tmp_path / "verify.json", "cnv_w2a2", test_subset=150, finn_subset=8)
    _check_report(report, 150, 8, 9)
