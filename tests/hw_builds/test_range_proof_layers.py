"""Property test of the accumulator mend, the range proof and the type-faithful execution, one MVAU at a time.

Random single-MVAU FINN graphs of every layer family bnnflow builds (XNOR popcount,
bit-plane: multi-bit codes times +1/-1 weights, ternary: {-1, 0, +1} weights), with K around the
powers of two and K not a multiple of 8, go through FINN's own bit-width minimization (the function
FINN's step_minimize_bit_width calls) between bnnflow's record and mend steps. Then the range proof
must hold and the type-faithful execution must equal the exact integer reference (unbounded
arithmetic, the recorded thresholds) on random inputs and on each neuron's extreme inputs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

KS = (63, 64, 65, 255, 256, 511, 512, 513, 784, 1023, 1024, 27, 100, 300)
# xnor: w1a1 (BINARY codes, binaryXnorMode); bitplane: w1a2 (INT2 codes, +-1 weights); bitplane8: CNV's
# first layer (INT8 input, +-1 weights); ternary: w2a2 (INT2 codes, {-1, 0, +1} weights)
FAMILIES = ("xnor", "bitplane", "bitplane8", "ternary")
MH = 6


def _mvau_model(family: str, k: int, activation: bool, rng: np.random.Generator):
    """(model, exact reference fn) of one MVAU with realistic thresholds, before FINN's minimization."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    idt, wdt, xnor = {"xnor": ("BINARY", "BINARY", 1), "bitplane": ("INT2", "BIPOLAR", 0),
                      "bitplane8": ("INT8", "BIPOLAR", 0), "ternary": ("INT2", "INT2", 0)}[family]
    if family == "xnor":
        w = rng.integers(0, 2, (k, MH)).astype(np.float32)
    elif wdt == "BIPOLAR":
        w = rng.choice([-1.0, 1.0], (k, MH)).astype(np.float32)
    else:
        w = rng.choice([-1.0, 0.0, 1.0], (k, MH)).astype(np.float32)
    if family != "xnor":
        w[:, 0] = 1  # one neuron with all-equal weights: its dot product reaches the end of the range
    in_lo, in_hi = int(DataType[idt].min()), int(DataType[idt].max())

    def exact(x):
        if family == "xnor":
            return np.rint(x @ w + (1 - x) @ (1 - w)).astype(np.int64)
        return np.rint(x @ w).astype(np.int64)

    lo = np.minimum(w * in_lo, w * in_hi).sum(0) if family != "xnor" else np.zeros(MH)
    hi = np.maximum(w * in_lo, w * in_hi).sum(0) if family != "xnor" else np.full(MH, k)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])]
    attrs = dict(MW=k, MH=MH, SIMD=1, PE=1, inputDataType=idt, weightDataType=wdt, binaryXnorMode=xnor,
                 noActivation=0 if activation else 1, mem_mode="internal_decoupled")
    node_inputs = ["x", "w"]
    thr = None
    if activation:
        # one threshold per neuron over the whole reachable range, plus never / always firing ones
        thr = np.array([[rng.uniform(l - 2, h + 2)] for l, h in zip(lo, hi)], dtype=np.float32)
        thr[1, 0], thr[2, 0] = hi[1] + 50, lo[2] - 50
        thr[3, 0] = max(lo[3], min(hi[3], int(0.8 * hi[3])))  # high in the range: where narrow types wrap
        thr = np.ceil(thr)  # integer thresholds, as FINN's streamlined integer layers carry them
        if family == "xnor":
            thr = np.clip(thr, 0, k + 1)  # bnnflow's step_clip_xnor_thresholds
        attrs.update(outputDataType="BINARY", ActVal=0)
        node_inputs.append("t")
    else:
        attrs.update(outputDataType="INT32")
    # the specialized HLS layer, as in the final build (its minimize_weight_bit_width also narrows thresholds)
    node = helper.make_node("MVAU_hls", node_inputs, ["y"], domain="finn.custom_op.fpgadataflow.hls",
                            backend="fpgadataflow", name="MVAU_hls_0", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, MH])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("w", w)
    model.set_tensor_datatype("x", DataType[idt])
    model.set_tensor_datatype("w", DataType[wdt])
    if thr is not None:
        model.set_initializer("t", thr.astype(np.float32))
        model.set_tensor_datatype("t", DataType["INT32"])
    model.set_tensor_datatype("y", DataType[attrs["outputDataType"]])

    def reference(x):
        acc = exact(x)
        return acc if thr is None else (np.ceil(thr)[:, 0][None, :] <= acc).astype(np.int64)

    def extremes():
        """Each neuron's maximum- and minimum-accumulator input (exact, from its weights)."""
        rows = []
        for j in range(MH):
            col = w[:, j]
            if family == "xnor":
                rows += [col, 1 - col]
            else:
                rows += [np.where(col > 0, in_hi, in_lo), np.where(col > 0, in_lo, in_hi)]
        return np.array(rows, dtype=np.float32)

    def random_inputs(n):
        return rng.integers(in_lo, in_hi + 1, (n, k)).astype(np.float32)

    return model, reference, extremes, random_inputs


def _finn_minimize(model):
    from hw_builds.finn_env import import_build_steps

    steps, cfg = import_build_steps(), SimpleNamespace(minimize_bit_width=True)
    # twice, as FINN's flow does (step_minimize_bit_width_initial, then step_minimize_bit_width)
    return steps._minimize_bit_width(steps._minimize_bit_width(model, cfg), cfg)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("activation", [True, False], ids=["thresholds", "no_activation"])
def test_mend_proof_and_typed_execution_on_random_layers(family, activation):
    from hw_builds.accumulators import (reference_thresholds, step_mend_xnor_accumulators,
                                        step_record_reference_thresholds)
    from hw_builds.range_proof import check_range_proof, range_proof
    from hw_builds.typed_exec import typed_execute

    rng = np.random.default_rng(abs(hash((family, activation))) % 2**32)
    too_narrow = []
    for k in KS:
        model, reference, extremes, random_inputs = _mvau_model(family, k, activation, rng)
        model = step_record_reference_thresholds(model, None)
        finn = _finn_minimize(model)
        finn_rows = range_proof(finn, reference_thresholds=reference_thresholds(finn))
        too_narrow += [k] if not all(r["fits"] for r in finn_rows) else []
        mended = step_mend_xnor_accumulators(finn, None)
        rows = range_proof(mended, reference_thresholds=reference_thresholds(mended))
        check_range_proof(rows, where=f"{family} K={k}")  # the proof holds on bnnflow's types
        x = np.concatenate([extremes(), random_inputs(40)])
        out, _, wraps = typed_execute(mended, x)
        np.testing.assert_array_equal(out, reference(x), err_msg=f"{family} K={k}")
        assert not any(wraps.values()), (family, k, wraps)
    if family == "xnor" and activation:  # FINN 1.6.1 sizes a popcount as a signed sum of +-1 weights
        # (without activation, a graph-ending MVAU is rounded up to whole bytes, which happens to hold K here;
        # TFC's last MVAU feeds LabelSelect and stays INT7, see test_range_proof_tfc.py)
        assert {64, 256, 512, 784, 1024} <= set(too_narrow), too_narrow
    elif family != "xnor":  # FINN's sizing of signed dot products from the weights is right, and bnnflow keeps it
        assert too_narrow == []


def test_unmended_xnor_types_wrap_in_typed_execution():
    """FINN's unmended XNOR types: the proof names node, K, interval and type; the typed execution wraps."""
    from hw_builds.accumulators import reference_thresholds, step_record_reference_thresholds
    from hw_builds.range_proof import RangeProofError, check_range_proof, range_proof
    from hw_builds.typed_exec import typed_execute

    model, _, extremes, _ = _mvau_model("xnor", 784, True, np.random.default_rng(3))
    model.set_initializer("t", np.full((MH, 1), 400.0, np.float32))  # ordinary thresholds, as a trained layer's
    finn = _finn_minimize(step_record_reference_thresholds(model, None))
    with pytest.raises(RangeProofError, match=r"MVAU_hls_0 .*K=784, accumulator \[0, 784\] in INT10"):
        check_range_proof(range_proof(finn, reference_thresholds=reference_thresholds(finn)))
    x = extremes()  # per neuron: all bits equal to its weights (popcount 784), then all different (0)
    w = model.get_initializer("w")
    expected = (400 <= np.rint(x @ w + (1 - x) @ (1 - w))).astype(np.int64)
    out, _, wraps = typed_execute(finn, x)
    assert wraps["MVAU_hls_0"] > 0
    assert np.any(out != expected)  # 784 wraps to -240 in INT10: the neuron does not fire


def test_prefix_bounds_enclose_every_partial_sum():
    """The partial-sum interval equals the final one when inputs reach 0, and is wider when they do not."""
    from hw_builds.range_proof import mvau_accumulator_bounds, mvau_prefix_bounds

    w = np.array([[1, -1], [-1, 1], [1, 1]])
    lo, hi = mvau_accumulator_bounds(w, 0, 3, popcount=False)
    assert mvau_prefix_bounds(w, 0, 3, popcount=False) == (int(lo.min()), int(hi.max())) == (-3, 6)
    lo, hi = mvau_accumulator_bounds(w, 2, 3, popcount=False)  # x0 - x1 + x2 with x in [2, 3]: [1, 4]
    assert (int(lo.min()), int(hi.max())) == (1, 4)
    assert mvau_prefix_bounds(w, 2, 3, popcount=False) == (-3, 6)  # -x1 alone reaches -3
    rng = np.random.default_rng(0)
    w = rng.choice([-1, 0, 1], (20, 4))
    x = rng.integers(2, 4, (200, 20))
    partial = np.cumsum(x[:, :, None] * w[None], axis=1)
    plo, phi = mvau_prefix_bounds(w, 2, 3, popcount=False)
    assert plo <= partial.min() and partial.max() <= phi
    assert mvau_prefix_bounds(np.ones((9, 2)), -1, 1, popcount=True) == (0, 9)


def test_wrap_is_twos_complement():
    from qonnx.core.datatype import DataType

    from hw_builds.typed_exec import wrap

    v = np.array([0, 511, 512, 784, 1023, 1024, -1, -513])
    np.testing.assert_array_equal(wrap(v, DataType["INT10"]), [0, 511, -512, -240, -1, 0, -1, 511])
    np.testing.assert_array_equal(wrap(v, DataType["UINT10"]), [0, 511, 512, 784, 1023, 0, 1023, 511])
    np.testing.assert_array_equal(wrap(np.array([2, 3]), DataType["BINARY"]), [0, 1])


def test_generated_types_are_read_from_hls_sources(tmp_path):
    from hw_builds.range_proof import read_generated_types

    node = tmp_path / "MVAU_hls_0"
    node.mkdir()
    (node / "thresh.h").write_text("static ThresholdsActivation<32,2,1,ap_int<10>,ap_uint<1>,0,"
                                   "comp::less_equal<ap_int<10>, ap_int<10>>> threshs = {{{{0}}}};")
    (node / "top_MVAU_hls_0.cpp").write_text(
        "#define MW1 784\n #define MH1 64\n #define SIMD1 49\n #define PE1 16\n"
        "Matrix_Vector_Activate_Stream_Batch<MW1, MH1, SIMD1, PE1, Recast<XnorMul>, Slice<ap_int<7>>, Identity, "
        "ap_uint<1> >(in0_V, out0_V, in1_V, PassThroughActivation<ap_int<7>>(), numReps, ap_resource_lut());")
    found = read_generated_types(node)
    assert found["threshold_type"] == "ap_int<10>" and found["act_val"] == 0
    assert found["out_slice"] == "ap_int<7>" and found["passthrough_type"] == "ap_int<7>"
    assert (found["mw"], found["simd"], found["pe"]) == (784, 49, 16)
    assert read_generated_types(tmp_path / "missing") == {}
    # a bit-plane layer's call slices its input too (TSrcI), before the output slice (TDstI)
    (node / "top_MVAU_hls_0.cpp").write_text(
        "Matrix_Vector_Activate_Stream_Batch<MW1, MH1, SIMD1, PE1, Slice<ap_int<8>>, Slice<ap_uint<1>>, "
        "Recast<Binary>, ap_uint<1> >(in0_V, out0_V, in1_V, threshs, numReps, ap_resource_lut());")
    found = read_generated_types(node)
    assert found["in_slice"] == "ap_int<8>" and found["out_slice"] == "ap_uint<1>"
