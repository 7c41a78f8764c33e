"""The FINN build of a real tfc_w1a1: its outputs, its per-step verification, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hw_builds.build_config import step_names
from hw_builds.compile import UNVERIFIED_STEPS, BuildStepError, compile_finn
from hw_builds.custom_steps import DesignDoesNotFitError, FoldingConfigError, UnsupportedModelError
from hw_builds.execute import FinnExecutionError, run_finn_model
from hw_builds.verify import VerificationError, load_golden


def test_summary_contents(pynq_z1_build):
    out, summary = pynq_z1_build
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["model"] == "tfc_w1a1" and summary["board"] == "Pynq-Z1" and summary["target"] == "emulation"
    assert summary["clock"] == {"period_ns": 10.0, "mhz": 100.0}
    est = summary["estimate"]
    perf = json.loads((out / "report" / "estimate_network_performance.json").read_text())
    assert est["throughput_fps"] == pytest.approx(1e8 / perf["max_cycles"])
    assert est["latency_us"] == pytest.approx(perf["critical_path_cycles"] * 10 / 1000)
    assert est["throughput_fps"] >= 100_000  # FINN folded for target_fps 100,000
    layers = summary["resources_per_layer"]
    assert {k[:4] for k in layers} >= {"MVAU", "Thre", "Labe"}
    for res in ("LUT", "BRAM_18K", "URAM", "DSP"):
        assert summary["resources_total"][res] == pytest.approx(sum(v[res] for v in layers.values()))
    assert summary["board_capacity"]["LUT"] == 53_200 and summary["fits"] is True
    assert summary["partition_spans_network"] is True
    assert set(summary["folding"]) >= set(layers)  # FINN's auto folding, per layer


def test_every_software_step_verified(pynq_z1_build):
    _, summary = pynq_z1_build
    expected = [s for s in step_names("emulation") if s not in UNVERIFIED_STEPS]
    assert summary["verified_steps"] == expected
    for record in summary["verification"]:
        assert record["top1_equal"] == record["samples"] == summary["golden_samples_checked"]
    by_step = {r["step"]: r for r in summary["verification"]}
    assert by_step["step_tidy_up"]["scores"] == "float_logits"
    for step in expected[expected.index("step_streamline"):]:
        assert by_step[step]["output"] == "class_index" and by_step[step]["scores"] == "integer"
        assert by_step[step]["affine_residual"] < 1e-4
    assert by_step["step_specialize_layers"]["scores_equal_previous_step"] is True


def test_outputs_on_disk(pynq_z1_build):
    out, summary = pynq_z1_build
    for step in step_names("emulation"):
        assert (out / "intermediate_models" / f"{step}.onnx").is_file()
    assert (out / summary["hw_model"]).is_file()
    for report in ("estimate_layer_resources.json", "estimate_layer_cycles.json", "auto_folding_config.json", "time_per_step.json"):
        assert (out / "report" / report).is_file()
    settings = json.loads((out / "driver" / "settings.json").read_text())["driver_information"]
    shapes = settings["io_shape_dict"]
    assert settings["driver_type"] == "FINNDMAOverlay" and settings["platform"] == "zynq-iodma"
    assert settings["fclk_mhz"] == pytest.approx(100.0)
    assert shapes["idt"] == ["DataType['UINT8']"] and shapes["ishape_normal"] == [[1, 1, 28, 28]]
    assert shapes["oshape_normal"] == [[1, 1]]
    assert shapes["idma_names"] == ["idma0"] and shapes["odma_names"] == ["odma0"]  # as MakeZYNQProject names them
    assert (out / "generated_code" / "MVAU_hls_0" / "top_MVAU_hls_0.cpp").is_file()


def test_always_on_threshold_was_exercised(pynq_z1_build):
    """The fixture's always-on neuron has a negative FINN threshold; its exact threshold is 0 (popcount >= 0)."""
    from hw_builds.execute import load_model

    out, _ = pynq_z1_build
    before = load_model(out / "intermediate_models" / "step_convert_to_hw.onnx")
    after = load_model(out / "intermediate_models" / "step_exact_thresholds.onnx")
    node = before.graph.node[[n.op_type for n in before.graph.node].index("MVAU")]
    assert before.get_initializer(node.input[2]).min() < 0
    assert after.get_initializer(node.input[2]).min() == 0


def test_hw_model_matches_brevitas(pynq_z1_build, exported_tfc):
    """run_finn_model on the folded HW model: the class index equals Brevitas' argmax, sample by sample."""
    out, summary = pynq_z1_build
    golden = load_golden(exported_tfc[1])
    labels = run_finn_model(out / summary["hw_model"], golden.x)
    assert labels.shape == (len(golden.x), 1)
    np.testing.assert_array_equal(labels[:, 0].astype(np.int64), golden.top1)


def test_folding_file_is_applied(exported_tfc, pynq_z1_build, tmp_path):
    """A folding file overrides target_fps; the estimate follows the folding FINN applied."""
    onnx_path, golden = exported_tfc
    out, _ = pynq_z1_build
    folding = json.loads((out / "report" / "auto_folding_config.json").read_text())
    folding["MVAU_hls_0"].update(PE=4, SIMD=49)
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(folding))
    summary = compile_finn(onnx_path, golden, tmp_path / "b", "Pynq-Z2", target_fps=None, folding_config=path,
                           verify_samples=5, progress=False)
    assert summary["folding"]["MVAU_hls_0"]["PE"] == 4 and summary["folding"]["MVAU_hls_0"]["SIMD"] == 49
    assert summary["cycles_per_layer"]["MVAU_hls_0"] == (784 // 49) * (64 // 4)
    assert summary["folding_config_file"] == str(path)


def test_folding_file_with_unknown_layer(exported_tfc, tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_7": {"PE": 2}}))
    with pytest.raises(FoldingConfigError, match=rf"{path}: layer 'MVAU_hls_7' is not in the model; its layers are Reshape_rtl_0"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path, verify_samples=2, progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()


def test_folding_file_with_unknown_attribute(exported_tfc, tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_1": {"PEs": 2}}))
    with pytest.raises(FoldingConfigError, match="layer 'MVAU_hls_1' \\(MVAU_hls\\) has no attribute 'PEs'"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path, verify_samples=2, progress=False)


def test_weight_stream_wider_than_ap_int_max_w(exported_tfc, tmp_path):
    """PE 32 x SIMD 392 makes a 12,544-bit weight stream: FINN's HLS limit (AP_INT_MAX_W 8191) refuses it up front."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"PE": 32, "SIMD": 392}}))
    with pytest.raises(FoldingConfigError, match=r"MVAU_hls_0 .*AP_INT_MAX_W to be set to 12544"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path,
                     mvau_wwidth_max=100_000, verify_samples=2, progress=False)


def test_design_that_does_not_fit(exported_tfc, tmp_path):
    """Unfolding the first two layers (PE 64 each) needs more LUTs than the Zynq-7020 has: refused, layer named."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"PE": 64, "SIMD": 112}, "MVAU_hls_1": {"PE": 64, "SIMD": 64}}))
    with pytest.raises(DesignDoesNotFitError, match=r"LUT: estimated \d+ exceeds Pynq-Z1's 53200 .*layer MVAU_hls_0"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path,
                     mvau_wwidth_max=100_000, verify_samples=2, progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()


def test_fits_depends_on_the_board(exported_tfc, tmp_path):
    """Weights in URAM: the Zynq-7020 has none, the ZU7EV has 96; fail_if_not_fits=False records it."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"ram_style": "ultra", "runtime_writeable_weights": 1}}))
    kwargs = dict(folding_config=path, verify_samples=2, progress=False)
    with pytest.raises(DesignDoesNotFitError, match=r"URAM: estimated 1 exceeds Pynq-Z1's 0 .*layer MVAU_hls_0"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", **kwargs)
    fits = compile_finn(*exported_tfc, tmp_path / "c", "ZCU104", **kwargs)
    assert fits["fits"] is True and fits["resources_total"]["URAM"] == 1
    over = compile_finn(*exported_tfc, tmp_path / "d", "Pynq-Z1", fail_if_not_fits=False, **kwargs)
    assert over["fits"] is False and over["overfull_resources"] == ["URAM"]


def test_corrupt_onnx(exported_tfc, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not an onnx protobuf" * 10)
    with pytest.raises(FinnExecutionError, match=rf"{bad}: not a readable ONNX model"):
        compile_finn(bad, exported_tfc[1], tmp_path / "b", "Pynq-Z1", progress=False)


def test_onnx_without_quantizers(exported_tfc, tmp_path):
    """A float ONNX graph (no QONNX Quant nodes) is refused with the cause, naming the file."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.ones(7840, np.float32))
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [1, 784])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["global_in", "s"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["global_out"])],
        "float", [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, 10])], [w, shape])
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UnsupportedModelError, match=rf"{path}: step_annotate_uint8_input: the graph has no QONNX quantizer"):
        compile_finn(path, exported_tfc[1], tmp_path / "b", "Pynq-Z1", progress=False)


def test_golden_shape_must_fit_the_model(exported_tfc, tmp_path):
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=np.zeros((2, 3, 32, 32), np.uint8), logits=np.zeros((2, 10), np.float32),
             labels=np.zeros(2, np.int64), indices=np.arange(2))
    with pytest.raises(UnsupportedModelError, match="does not take the golden pixels"):
        compile_finn(exported_tfc[0], golden, tmp_path / "b", "Pynq-Z1", progress=False)


def test_a_step_that_changes_the_network_is_named(exported_tfc, tmp_path, monkeypatch):
    """Sabotage one step (flip the last layer's weights): the build fails at that step, not later."""
    import hw_builds.custom_steps as cs

    original = cs.step_exact_thresholds

    def step_exact_thresholds(model, cfg):
        model = original(model, cfg)
        last = [n for n in model.graph.node if n.op_type == "MVAU"][-1]
        model.set_initializer(last.input[1], 1 - model.get_initializer(last.input[1]))
        return model

    monkeypatch.setattr(cs, "step_exact_thresholds", step_exact_thresholds)
    with pytest.raises(VerificationError, match=r"step step_exact_thresholds: top-1 differs from Brevitas on \d+/10"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", verify_samples=10, progress=False)


def test_finn_exceptions_reach_the_caller(exported_tfc, tmp_path, monkeypatch):
    """A FINN step that raises is not turned into a return code: one line, file and step named."""
    from hw_builds.finn_env import import_build_steps

    lookup = import_build_steps().build_dataflow_step_lookup

    def broken(model, cfg):
        raise AssertionError("Requirement MH divisable by PE is violated.\nmore detail")

    monkeypatch.setitem(lookup, "step_minimize_bit_width", broken)
    with pytest.raises(BuildStepError) as err:
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", verify_samples=2, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "model.onnx: FINN step_minimize_bit_width failed: AssertionError: Requirement MH" in msg


def test_invalid_pe_from_a_folding_file_is_named(exported_tfc, tmp_path):
    """SIMD 7 does not divide the 64 inputs of MVAU_hls_1: refused at folding time, not at codegen."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_1": {"SIMD": 7}}))
    with pytest.raises(FoldingConfigError, match=rf"layer MVAU_hls_1 \(MVAU_hls\) folding {{'PE': 1, 'SIMD': 7}} set in {path} is invalid"):
        compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", folding_config=path, verify_samples=2, progress=False)


def test_finn_auto_folding_repaired_at_1m_fps(exported_tfc, tmp_path):
    """FINN's PE 8 for the (1,1,28,28) -> (1,784) Reshape does not divide 28; bnnflow uses 7, recorded."""
    summary = compile_finn(*exported_tfc, tmp_path / "b", "Pynq-Z1", target_fps=1_000_000, verify_samples=10, progress=False)
    assert summary["folding_repairs"] == [{"layer": "Reshape_rtl_0", "attribute": "PE", "finn_choice": 8, "used": 7}]
    assert summary["folding"]["Reshape_rtl_0"]["PE"] == 7
    assert summary["estimate"]["max_cycles_per_frame"] == 784 // 7
    assert all(r["top1_equal"] == 10 for r in summary["verification"])
