"""The FINN build of a real tfc_w1a1 from its front end: its outputs, its per-step verification, and its errors.

The front end's own errors (bad ONNX, golden pixels that do not fit, a step that changes the network) are
tested in test_frontend.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from host.refusal import RefusedInput

from hw_builds.build_config import board_step_names, frontend_step_names, step_names
from hw_builds.compile import UNVERIFIED_STEPS, BuildStepError, compile_finn
from hw_builds.custom_steps import DesignDoesNotFitError, FoldingConfigError
from hw_builds.execute import run_finn_model
from hw_builds.verify import load_golden


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
    for step in frontend_step_names()[1:]:  # the front end ends in the class scores: float logits, as Brevitas'
        assert by_step[step]["output"] == "logits" and by_step[step]["scores"] == "float_logits"
        assert by_step[step]["max_abs_logit_error"] < 1e-3
    for step in [s for s in board_step_names("emulation") if s not in UNVERIFIED_STEPS]:  # after the top-1 head
        assert by_step[step]["output"] == "class_index" and by_step[step]["scores"] == "integer"
        assert by_step[step]["affine_residual"] < 1e-4
    assert by_step["step_specialize_layers"]["scores_equal_previous_step"] is True
    assert summary["frontend"]["steps"] == frontend_step_names()


def test_outputs_on_disk(pynq_z1_build, frontend_tfc):
    out, summary = pynq_z1_build
    for step in board_step_names("emulation"):
        assert (out / "intermediate_models" / f"{step}.onnx").is_file()
    for step in frontend_step_names():  # run once per model, in the front end's folder
        assert (frontend_tfc[0] / "intermediate_models" / f"{step}.onnx").is_file()
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


def test_always_on_threshold_was_exercised(frontend_tfc):
    """The fixture's always-on neuron has a negative FINN threshold; its exact threshold is 0 (popcount >= 0), in the front end."""
    from hw_builds.execute import load_model

    out = frontend_tfc[0]
    before = load_model(out / "intermediate_models" / "step_convert_to_hw.onnx")
    after = load_model(out / "intermediate_models" / "step_exact_thresholds.onnx")
    node = before.graph.node[[n.op_type for n in before.graph.node].index("MVAU")]
    assert before.get_initializer(node.input[2]).min() < 0
    assert after.get_initializer(node.input[2]).min() == 0


def test_hw_model_matches_brevitas(pynq_z1_build, frontend_tfc):
    """run_finn_model on the folded HW model: the class index equals Brevitas' argmax, sample by sample."""
    out, summary = pynq_z1_build
    golden = load_golden(frontend_tfc[1])
    labels = run_finn_model(out / summary["hw_model"], golden.x)
    assert labels.shape == (len(golden.x), 1)
    np.testing.assert_array_equal(labels[:, 0].astype(np.int64), golden.top1)


def test_folding_file_is_applied(frontend_tfc, pynq_z1_build, tmp_path):
    """A folding file overrides target_fps; the estimate follows the folding FINN applied."""
    frontend, golden = frontend_tfc
    out, _ = pynq_z1_build
    folding = json.loads((out / "report" / "auto_folding_config.json").read_text())
    folding["MVAU_hls_0"].update(PE=4, SIMD=49)
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(folding))
    summary = compile_finn(frontend, golden, tmp_path / "b", "Pynq-Z2", target_fps=None, folding_config=path,
                           verify_samples=5, progress=False)
    assert summary["folding"]["MVAU_hls_0"]["PE"] == 4 and summary["folding"]["MVAU_hls_0"]["SIMD"] == 49
    assert summary["cycles_per_layer"]["MVAU_hls_0"] == (784 // 49) * (64 // 4)
    assert summary["folding_config_file"] == str(path)


def test_folding_file_with_unknown_layer(frontend_tfc, tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_7": {"PE": 2}}))
    with pytest.raises(FoldingConfigError, match=rf"{path}: layer 'MVAU_hls_7' is not in the model; its layers are Reshape_rtl_0"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path, verify_samples=2, progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()


def test_folding_file_with_unknown_attribute(frontend_tfc, tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_1": {"PEs": 2}}))
    with pytest.raises(FoldingConfigError, match="layer 'MVAU_hls_1' \\(MVAU_hls\\) has no attribute 'PEs'"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path, verify_samples=2, progress=False)


def test_weight_stream_wider_than_ap_int_max_w(frontend_tfc, tmp_path):
    """PE 32 x SIMD 392 makes a 12,544-bit weight stream: FINN's HLS limit (AP_INT_MAX_W 8191) refuses it up front."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"PE": 32, "SIMD": 392}}))
    with pytest.raises(FoldingConfigError, match=r"MVAU_hls_0 .*AP_INT_MAX_W to be set to 12544"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path,
                     mvau_wwidth_max=100_000, verify_samples=2, progress=False)


def test_design_that_does_not_fit(frontend_tfc, tmp_path):
    """Unfolding the first two layers (PE 64 each) needs more LUTs than the Zynq-7020 has: refused, layer named."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"PE": 64, "SIMD": 112}, "MVAU_hls_1": {"PE": 64, "SIMD": 64}}))
    with pytest.raises(DesignDoesNotFitError, match=r"LUT: estimated \d+ exceeds Pynq-Z1's 53200 .*layer MVAU_hls_0"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", target_fps=None, folding_config=path,
                     mvau_wwidth_max=100_000, verify_samples=2, progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()


def test_fits_depends_on_the_board(frontend_tfc, tmp_path):
    """Weights in URAM: the Zynq-7020 has none, the ZU7EV has 96; fail_if_not_fits=False records it."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"ram_style": "ultra", "runtime_writeable_weights": 1}}))
    kwargs = dict(folding_config=path, verify_samples=2, progress=False)
    with pytest.raises(DesignDoesNotFitError, match=r"URAM: estimated 1 exceeds Pynq-Z1's 0 .*layer MVAU_hls_0"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", **kwargs)
    fits = compile_finn(*frontend_tfc, tmp_path / "c", "ZCU104", **kwargs)
    assert fits["fits"] is True and fits["resources_total"]["URAM"] == 1
    over = compile_finn(*frontend_tfc, tmp_path / "d", "Pynq-Z1", fail_if_not_fits=False, **kwargs)
    assert over["fits"] is False and over["overfull_resources"] == ["URAM"]


def test_finn_exceptions_reach_the_caller(frontend_tfc, tmp_path, monkeypatch):
    """A FINN step that raises is not turned into a return code: one line, file and step named."""
    from hw_builds.finn_env import import_build_steps

    lookup = import_build_steps().build_dataflow_step_lookup

    def broken(model, cfg):
        raise AssertionError("Requirement MH divisable by PE is violated.\nmore detail")

    monkeypatch.setitem(lookup, "step_minimize_bit_width", broken)
    with pytest.raises(BuildStepError) as err:
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", verify_samples=2, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "hw.onnx: FINN step_minimize_bit_width failed: AssertionError: Requirement MH" in msg


def test_invalid_pe_from_a_folding_file_is_named(frontend_tfc, tmp_path):
    """SIMD 7 does not divide the 64 inputs of MVAU_hls_1: refused at folding time, not at codegen."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"MVAU_hls_1": {"SIMD": 7}}))
    with pytest.raises(FoldingConfigError, match=rf"layer MVAU_hls_1 \(MVAU_hls\) folding {{'PE': 1, 'SIMD': 7}} set in {path} is invalid"):
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", folding_config=path, verify_samples=2, progress=False)


def test_finn_auto_folding_repaired_at_1m_fps(frontend_tfc, tmp_path):
    """FINN's PE 8 for the (1,1,28,28) -> (1,784) Reshape does not divide 28; bnnflow uses 7, recorded."""
    summary = compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", target_fps=1_000_000, verify_samples=10, progress=False)
    assert summary["folding_repairs"] == [{"layer": "Reshape_rtl_0", "attribute": "PE", "finn_choice": 8, "used": 7}]
    assert summary["folding"]["Reshape_rtl_0"]["PE"] == 7
    assert summary["estimate"]["max_cycles_per_frame"] == 784 // 7
    assert all(r["top1_equal"] == r["samples"] for r in summary["verification"])
    board = [r for r in summary["verification"] if r["step"] in board_step_names("emulation")]
    assert board and all(r["samples"] == 10 for r in board)  # the front end's records keep their own count


def test_issue17_case8_thresholding_pe_not_dividing_its_channels_is_named(frontend_tfc, tmp_path):
    """PE 3 on the 784-channel input Thresholding: FINN asserts only in step_minimize_bit_width ("NumChannels
    divisable by PE"); the check after folding asks the layer's own threshold conversion and names layer and file."""
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"Thresholding_rtl_0": {"PE": 3}}))
    with pytest.raises(FoldingConfigError) as err:
        compile_finn(*frontend_tfc, tmp_path / "b", "Pynq-Z1", folding_config=path, verify_samples=2, progress=False)
    assert str(err.value) == (f"{frontend_tfc[0] / 'hw.onnx'}: step_check_folding: layer Thresholding_rtl_0 "
                              f"(Thresholding_rtl) folding {{'PE': 3}} set in {path} is invalid: Requirement "
                              f"NumChannels divisable by PE is violated.")
    assert isinstance(err.value, RefusedInput)
    assert not (tmp_path / "b" / "summary.json").exists()
    marker = json.loads((tmp_path / "b" / "FAILED.json").read_text())  # issue 17 case 12: the kept folders are marked
    assert marker["stage"] == "compile_finn" and marker["error"].startswith("FoldingConfigError: ")
    assert marker["kept"] == ["golden", "intermediate_models"]
