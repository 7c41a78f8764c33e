"""The crafted TFC-w1a1 of issue 11, built end to end: FINN's unmended types fail the proof and wrap; bnnflow's do not.

A few layer-0 neurons get one balanced weight row (392 x +1, 392 x -1) and a batch-norm that fires
them exactly when their popcount reaches 600 (d = 2p - 784 > 415.5), one more a bias that never
fires it (threshold above K). finn-plus 1.6.1 gives layer 0 (K = 784) an INT10 accumulator and
clips the thresholds to 512; a crafted image whose bits agree with such a row on 600 to 784 positions
fires the neuron in Brevitas, while INT10 wraps its popcount to a negative number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.hw_builds.conftest import export_with_golden, make_tfc

CRAFTED = (1, 2, 3, 4)  # layer-0 neurons whose threshold is a popcount of 600
NEVER = 5  # layer-0 neuron that never fires (threshold above K = 784)


def make_crafted_tfc() -> torch.nn.Module:
    from brevitas.nn import QuantLinear

    model = make_tfc(seed=2)
    first = next(m for m in model.modules() if isinstance(m, QuantLinear))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for j in (*CRAFTED, NEVER):
            row = torch.where(torch.randperm(784, generator=gen) < 392, 0.5, -0.5)
            first.weight[j] = row
            bn.running_mean[j], bn.running_var[j], bn.weight[j] = 0.0, 1.0 - bn.eps, 1.0
            bn.bias[j] = -415.5  # fires iff d = 2p - 784 > 415.5, i.e. popcount p >= 600
        bn.bias[NEVER] = -1000.0
    return model.eval()


@pytest.fixture(scope="module")
def crafted_build(tmp_path_factory: pytest.TempPathFactory):
    from hw_builds.compile import compile_finn

    model = make_crafted_tfc()
    onnx_path, golden = export_with_golden(model, tmp_path_factory.mktemp("crafted_export"))
    out = tmp_path_factory.mktemp("crafted_build") / "tfc_w1a1" / "Pynq-Z1"
    summary = compile_finn(onnx_path, golden, out, "Pynq-Z1", model_name="tfc_w1a1", progress=False)
    return model, out, summary


def crafted_images(final_model, n: int = 30) -> np.ndarray:
    """(n, 1, 28, 28) uint8: bits equal to a crafted neuron's weight bits on 600..784 positions."""
    from hw_builds.range_proof import base_op

    mvau = next(node for node in final_model.graph.node if base_op(node.op_type) == "MVAU")
    w = final_model.get_initializer(mvau.input[1])  # (784, 64) bits
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        col = w[:, CRAFTED[i % len(CRAFTED)]].astype(np.uint8)
        agree = rng.permutation(784) < rng.integers(600, 785)
        out.append((np.where(agree, col, 1 - col) * 255).astype(np.uint8).reshape(1, 28, 28))
    return np.stack(out)


def test_bnnflow_build_proves_every_node(crafted_build):
    _, out, summary = crafted_build
    proof = summary["range_proof"]
    assert proof["all_fit"]
    rows = {r["node"]: r for r in proof["nodes"]}
    first = rows["MVAU_hls_0"]
    assert first["K"] == 784 and first["accumulator_interval"] == [0, 784]
    assert first["accumulator_type"] == "UINT10" and first["generated_code_checked"]
    assert first["thresholds"]["equivalent_to_reference"] and first["thresholds"]["interval"][1] == 785
    assert rows["MVAU_hls_3"]["output_type"] == "UINT7" and rows["LabelSelect_hls_0"]["input_type"] == "UINT7"
    assert "ap_uint<10>" in (out / "generated_code" / "MVAU_hls_0" / "thresh.h").read_text()[:300]
    mends = {m["node"]: m for m in proof["type_mends"]}
    assert mends["MVAU_hls_0"]["finn"]["accDataType"] == "INT10"
    typed = [v for v in summary["verification"] if "typed_top1_equal" in v]
    assert typed and all(v["typed_top1_equal"] == v["samples"] and not v["typed_wraps"] for v in typed)


def test_proof_rejects_finns_unmended_types(crafted_build):
    from hw_builds.accumulators import reference_thresholds
    from hw_builds.execute import load_model
    from hw_builds.range_proof import RangeProofError, check_range_proof, range_proof

    _, out, _ = crafted_build
    finn = load_model(out / "intermediate_models" / "step_minimize_bit_width.onnx")
    with pytest.raises(RangeProofError, match=r"MVAU_hls_0 \(MVAU_hls, K=784, accumulator \[0, 784\] in INT10"):
        check_range_proof(range_proof(finn, reference_thresholds=reference_thresholds(finn)))
    rows = {r["node"]: r for r in range_proof(finn, reference_thresholds=reference_thresholds(finn))}
    assert rows["MVAU_hls_0"]["thresholds"]["equivalent_to_reference"] is False  # 600 and 785 clipped to 512


def test_typed_execution_disagrees_under_finns_types_and_agrees_after_the_mend(crafted_build):
    from hw_builds.execute import load_model
    from hw_builds.typed_exec import typed_execute

    model, out, _ = crafted_build
    inter = out / "intermediate_models"
    mended = load_model(inter / "step_mend_xnor_accumulators.onnx")
    finn = load_model(inter / "step_minimize_bit_width.onnx")
    x = crafted_images(mended)
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x.astype(np.float32))).argmax(dim=1).numpy()
    unmended_out, _, unmended_wraps = typed_execute(finn, x)
    mended_out, _, mended_wraps = typed_execute(mended, x)
    assert unmended_wraps["MVAU_hls_0"] == len(x)  # every crafted popcount (>= 600) wraps in INT10
    assert int(np.sum(unmended_out[:, 0] != brevitas)) > 0
    assert not any(mended_wraps.values())
    np.testing.assert_array_equal(mended_out[:, 0], brevitas)
