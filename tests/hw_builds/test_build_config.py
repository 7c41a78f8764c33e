"""What bnnflow hands to FINN for each target: the exact step list, the build config, the refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hw_builds.build_config import (
    BuildConfigError,
    BuildSettings,
    MissingXilinxToolsError,
    board_step_names,
    dataflow_config,
    frontend_config,
    frontend_step_names,
    missing_xilinx_tools,
    require_tools_for,
    step_names,
)
from hw_builds.boards import UnknownBoardError

# The board-independent front end, run once per model (hw_builds.frontend); the rest is per board.
FRONTEND = [
    "step_annotate_uint8_input",
    "step_record_exact_function",
    "step_qonnx_to_finn",
    "step_tidy_up",
    "step_streamline",
    "step_convert_to_hw",
    "step_exact_thresholds",
]
EMULATION = FRONTEND + [
    "step_insert_topk",
    "step_record_reference_thresholds",
    "step_minimize_bit_width_initial",
    "step_mend_xnor_accumulators_initial",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_target_fps_parallelization",
    "step_repair_auto_folding",
    "step_check_folding_config",
    "step_apply_folding_config",
    "step_check_folding",
    "step_minimize_bit_width",
    "step_mend_xnor_accumulators",
    "step_transpose_decomposition",
    "step_generate_estimate_reports",
    "step_check_fits",
    "step_hw_codegen",
    "step_make_zynq_driver",
]
HARDWARE = EMULATION[:-2] + [
    "step_assign_ddr_weight_offsets",
    "step_generate_hardware",
    "step_create_stitched_ip",
    "step_measure_rtlsim_performance",
    "step_out_of_context_synthesis",
    "step_prepare_synthesis",
    "step_synthesize_bitfile",
    "step_make_driver",
]
OURS = {
    "step_annotate_uint8_input",
    "step_insert_topk",
    "step_record_exact_function",
    "step_exact_thresholds",
    "step_record_reference_thresholds",
    "step_mend_xnor_accumulators_initial",
    "step_mend_xnor_accumulators",
    "step_repair_auto_folding",
    "step_check_folding_config",
    "step_check_folding",
    "step_check_fits",
    "step_make_zynq_driver",
}


def test_exact_step_lists():
    assert step_names("emulation") == EMULATION
    assert step_names("hardware") == HARDWARE
    assert frontend_step_names() == FRONTEND
    for target in ("emulation", "hardware"):
        assert frontend_step_names() + board_step_names(target) == step_names(target)


@pytest.mark.parametrize("finn_step, where, stage", [
    ("step_convert_to_hw", "after", "frontend"),  # e.g. an exact-threshold step: board-independent
    ("step_streamline", "before", "frontend"),
    ("step_minimize_bit_width_initial", "before", "board"),
    ("step_minimize_bit_width", "after", "board"),  # e.g. an accumulator-type mend: per board
])
def test_an_injected_step_lands_in_the_stage_of_its_finn_step(monkeypatch, finn_step, where, stage):
    import hw_builds.build_config as bc

    monkeypatch.setattr(bc, "INJECTIONS", bc.INJECTIONS + ((finn_step, where, "step_new"),))
    front, board = bc.frontend_step_names(), bc.board_step_names("emulation")
    assert ("step_new" in front, "step_new" in board) == (stage == "frontend", stage == "board")
    names = bc.step_names("emulation")
    assert (names.index("step_new") > names.index(finn_step)) == (where == "after")


def test_frontend_config_sets_what_its_steps_read_as_the_board_builds_do(tmp_path):
    front = frontend_config(tmp_path)
    board = dataflow_config(BuildSettings(board="Pynq-Z1"), tmp_path)
    for name in ("standalone_thresholds", "max_multithreshold_bit_width", "requant_bitwidth_threshold",
                 "infer_shuffle_skip_first"):  # every cfg field FINN's front-end steps read
        assert getattr(front, name) == getattr(board, name), name
    assert front.generate_outputs == [] and front.verify_steps is None


def test_hardware_list_is_finns_default_flow_plus_ours():
    """Every FINN default step, in FINN's order, with only bnnflow's steps in between."""
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    # all of FINN's default flow but its deployment package, which the package_deployment rule builds
    assert [s for s in step_names("hardware") if s not in OURS] == [
        s for s in default_build_dataflow_steps if s != "step_deployment_package"
    ]


def test_emulation_steps_all_exist_and_need_no_vivado():
    """FINN's steps of the emulation list are registered step functions, none of the hardware ones."""
    from hw_builds.custom_steps import custom_steps
    from hw_builds.finn_env import import_build_steps

    lookup = import_build_steps().build_dataflow_step_lookup
    ours = custom_steps(True)
    for name in step_names("emulation") + step_names("hardware"):
        assert name in lookup or name in ours, name
    assert not {"step_generate_hardware", "step_create_stitched_ip", "step_synthesize_bitfile"} & set(step_names("emulation"))


def test_emulation_config(tmp_path):
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType

    cfg = dataflow_config(BuildSettings(board="Ultra96", clk_period_ns=5.0, target_fps=50_000), tmp_path, tmp_path)
    assert cfg.board == "Ultra96" and cfg.fpga_part == "xczu3eg-sbva484-1-e"
    assert cfg.shell_flow_type == ShellFlowType.VIVADO_ZYNQ
    assert cfg.synth_clk_period_ns == 5.0 and cfg._resolve_hls_clk_period() == 5.0
    assert cfg.target_fps == 50_000 and cfg._resolve_cycles_per_frame() == 4000
    assert cfg.folding_config_file is None and cfg.mvau_wwidth_max == 36
    assert cfg.generate_outputs == [DataflowOutputType.ESTIMATE_REPORTS, DataflowOutputType.PYNQ_DRIVER]
    assert cfg.verify_steps is None  # emulation checks are bnnflow's own (FINN's need cppsim/rtlsim)
    assert cfg.output_dir == str(tmp_path) and cfg.save_intermediate_models


def test_hardware_config(tmp_path):
    from finn.builder.build_dataflow_config import DataflowOutputType, VerificationStepType

    folding = tmp_path / "fold.json"
    folding.write_text("{}")
    cfg = dataflow_config(BuildSettings(board="ZCU104", target="hardware", folding_config=folding, target_fps=None), tmp_path, tmp_path)
    assert cfg.fpga_part == "xczu7ev-ffvc1156-2-e"
    assert cfg.target_fps is None and cfg.folding_config_file == folding.resolve()
    assert set(cfg.generate_outputs) == {
        DataflowOutputType.ESTIMATE_REPORTS,
        DataflowOutputType.PYNQ_DRIVER,
        DataflowOutputType.STITCHED_IP,
        DataflowOutputType.RTLSIM_PERFORMANCE,
        DataflowOutputType.BITFILE,
    }
    assert cfg.verify_steps == [VerificationStepType.FOLDED_HLS_CPPSIM, VerificationStepType.STITCHED_IP_RTLSIM]
    assert cfg.verify_input_npy == str(tmp_path / "input.npy")
    assert cfg.verification_atol == 0.0 and cfg.auto_fifo_depths


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(board="Pynq-Z3"), UnknownBoardError, "unknown board 'Pynq-Z3'"),
        (dict(board="Pynq-Z1", target="fpga"), BuildConfigError, "unknown target 'fpga'"),
        (dict(board="Pynq-Z1", target_fps=None), BuildConfigError, "set target_fps or folding_config"),
        (dict(board="Pynq-Z1", clk_period_ns=0), BuildConfigError, "clk_period_ns must be positive"),
        (dict(board="Pynq-Z1", folding_config=Path("/nonexistent/f.json")), BuildConfigError, "/nonexistent/f.json"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        BuildSettings(**kwargs)


def test_hardware_refused_without_xilinx_tools():
    with pytest.raises(MissingXilinxToolsError) as err:
        require_tools_for("hardware", environ={"PATH": "/nonexistent"})
    message = str(err.value)
    assert "\n" not in message
    for part in ("Vivado", "Vitis HLS 2022.2 or 2024.2", "XILINX_VIVADO is not set", "XILINX_HLS is not set",
                 "vivado is not on PATH", "target: emulation"):
        assert part in message
    require_tools_for("emulation", environ={})  # emulation needs nothing


def test_hardware_accepted_with_tools_present(tmp_path):
    """With the variables set to folders and both executables on PATH nothing is missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("vivado", "vitis_hls"):
        exe = bin_dir / tool
        exe.write_text("#!/bin/sh\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = {"XILINX_VIVADO": str(tmp_path), "XILINX_HLS": str(tmp_path), "PATH": str(bin_dir)}
    assert missing_xilinx_tools(env) == []
    require_tools_for("hardware", environ=env)
    assert missing_xilinx_tools(dict(env, XILINX_HLS=str(tmp_path / "nope"))) == [f"XILINX_HLS={tmp_path / 'nope'} is not a directory"]


def test_compile_refuses_hardware_before_touching_anything(tmp_path, monkeypatch):
    """The refusal comes before the golden file or the front end are even read."""
    from hw_builds.compile import compile_finn

    for var in ("XILINX_VIVADO", "XILINX_HLS"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    with pytest.raises(MissingXilinxToolsError, match="target: emulation"):
        compile_finn(tmp_path / "missing_frontend", tmp_path / "missing.npz", out, "Pynq-Z1", target="hardware")
    assert not out.exists()
    assert not os.environ.get("XILINX_VIVADO")
