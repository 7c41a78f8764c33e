"""The crafted TFC-w1a1 of issue 11, built end to end: FINN's unmended types fail the proof and wrap; bnnflow's do not.

A few layer-0 neurons get one balanced weight row (392 x +1, 392 x -1) and a batch-norm that fires
them exactly when their popcount reaches 600 (d = 2p - 784 > 415.5), one more a bias that never
fires it (threshold above K). finn-plus 1.6.1 gives layer 0 (K = 784) an INT10 accumulator and
clips the thresholds to 512 (its threshold type becomes INT11); a crafted image whose bits agree with such a row on 600 to 784 positions
fires the crafted neurons in Brevitas, and the never-firing neuron too under FINN's clipped threshold of 512.
(Where FINN keeps the thresholds below 512, as in the trained TFC-w1a1, the threshold type is INT10 and the
popcount itself wraps; the layer-level property test covers that case.)
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
    from hw_builds.frontend import build_frontend

    model = make_crafted_tfc()
    onnx_path, golden = export_with_golden(model, tmp_path_factory.mktemp("crafted_export"))
    root = tmp_path_factory.mktemp("crafted_build") / "tfc_w1a1"
    build_frontend(onnx_path, golden, root / "frontend", "tfc_w1a1", progress=False)
    out = root / "Pynq-Z1"
    summary = compile_finn(root / "frontend", golden, out, "Pynq-Z1", model_name="tfc_w1a1", progress=False)
    return model, out, summary


def crafted_images(final_model, n: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 1, 28, 28) uint8, target neuron (n,), agreement (n,)): bits equal to the target neuron's
    weight bits on 512..784 positions (targets cycle through the crafted and the never-firing neurons)."""
    from hw_builds.range_proof import base_op

    mvau = next(node for node in final_model.graph.node if base_op(node.op_type) == "MVAU")
    w = final_model.get_initializer(mvau.input[1])  # (784, 64) bits
    rng = np.random.default_rng(0)
    targets = np.array([(*CRAFTED, NEVER)[i % (len(CRAFTED) + 1)] for i in range(n)])
    agreements = rng.integers(512, 785, n)
    out = []
    for target, k in zip(targets, agreements):
        col = w[:, target].astype(np.uint8)
        agree = rng.permutation(784) < k
        out.append((np.where(agree, col, 1 - col) * 255).astype(np.uint8).reshape(1, 28, 28))
    return np.stack(out), targets, agreements


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
    # the clipped threshold 512 makes FINN's threshold type INT11, which holds the popcount; FINN's accDataType
    # (INT10) does not, the clipped thresholds change the output, and the K = 64 layers' INT7 cannot hold 64
    with pytest.raises(RangeProofError, match=r"MVAU_hls_0 \(MVAU_hls, K=784, accumulator \[0, 784\] in INT1\d.*"
                                              r"does not fit accDataType INT10; thresholds of 5 neurons"):
        check_range_proof(range_proof(finn, reference_thresholds=reference_thresholds(finn)))
    rows = {r["node"]: r for r in range_proof(finn, reference_thresholds=reference_thresholds(finn))}
    assert rows["MVAU_hls_0"]["thresholds"]["equivalent_to_reference"] is False  # 600 and 785 clipped to 512
    for node in ("MVAU_hls_1", "MVAU_hls_2", "MVAU_hls_3"):
        assert not rows[node]["accumulator_fits"] and rows[node]["accumulator_type"] in ("INT7", "INT8")
    assert rows["MVAU_hls_3"]["output_type"] == "INT7" and not rows["LabelSelect_hls_0"]["fits"]


def test_typed_execution_disagrees_under_finns_types_and_agrees_after_the_mend(crafted_build):
    """Layer 0's activations against Brevitas' (an independent path: hooks on the PyTorch model), then top-1."""
    from hw_builds.execute import load_model
    from hw_builds.typed_exec import typed_execute
    from hw_builds.xnor_verify import brevitas_trace

    model, out, _ = crafted_build
    inter = out / "intermediate_models"
    mended = load_model(inter / "step_mend_xnor_accumulators.onnx")
    finn = load_model(inter / "step_minimize_bit_width.onnx")
    x, targets, agreements = crafted_images(mended)
    reference = brevitas_trace(model, x)
    bits = reference["layer1.in_bits"]  # (N, 64) layer 0's sign outputs as 0/1
    top1 = np.argmax(reference["logits"], axis=1)
    layer0 = [n.output[0] for n in mended.graph.node if n.name == "MVAU_hls_0"]
    unmended_out, unmended_cap, _ = typed_execute(finn, x, capture=tuple(layer0))
    mended_out, mended_cap, mended_wraps = typed_execute(mended, x, capture=tuple(layer0))
    differ = np.any(unmended_cap[layer0[0]] != bits, axis=1)
    # FINN's clipped threshold 512 fires the never-firing neuron on its images, and a crafted neuron (600)
    # on images agreeing with it on 512..599 positions
    expected = (targets == NEVER) | (agreements < 600)
    assert expected.sum() >= 10 and differ[expected].all(), (int(expected.sum()), int(differ.sum()))
    np.testing.assert_array_equal(mended_cap[layer0[0]], bits)  # bnnflow's types: every activation as Brevitas'
    np.testing.assert_array_equal(mended_out[:, 0], top1)
    assert not any(mended_wraps.values())
