"""What bnnflow hands to FINN: the settings of one build, its step list and its DataflowBuildConfig.

Two targets share one flow. ``emulation`` runs every step that needs no Xilinx tool: FINN's
software steps up to HLS/RTL code generation, plus the Zynq-build graph prefix that the PYNQ
driver settings need. ``hardware`` runs FINN's full default flow (IP generation, FIFO sizing,
stitched IP, bitfile, driver, deployment package) and is refused before it starts when Vivado
and Vitis HLS are missing. bnnflow's own steps (``hw_builds.custom_steps``) are injected at the
same places in both lists, so the emulated build is a strict prefix of the hardware build.

Each list falls into two stages. The *front end* (:func:`frontend_step_names`) is board-independent:
QONNX -> streamlined HW-layer graph, FINN's steps up to ``FRONTEND_LAST_STEP`` and every step
injected before or right after them; it runs once per model (``hw_builds.frontend``, the build_frontend
rule) and both the XNOR export and every per-board build read its graphs. The *board* part
(:func:`board_step_names`) is everything after: the top-1 head, partition, folding, estimates, code
generation. An injected step lands in the stage of the FINN step it is attached to, so a new step
injected after ``step_convert_to_hw`` runs in the front end without further changes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw_builds.boards import Board, get_board
from hw_builds.finn_env import prepare_finn_environment
from host.refusal import RefusedInput

TARGETS = ("emulation", "hardware")
# finn-plus 1.6.1 documents Vivado, Vitis and Vitis HLS 2022.2 or 2024.2 (its README).
XILINX_VERSIONS = "2022.2 or 2024.2"

# The steps FINN can run without Xilinx tools, in FINN's default order (TOOLCHAIN.md).
SOFTWARE_STEPS = (
    "step_qonnx_to_finn",
    "step_tidy_up",
    "step_streamline",
    "step_convert_to_hw",
    "step_minimize_bit_width_initial",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_target_fps_parallelization",
    "step_apply_folding_config",
    "step_minimize_bit_width",
    "step_transpose_decomposition",
    "step_generate_estimate_reports",
)
# FINN's default flow from IP generation on (step_generate_hardware includes step_hw_codegen).
HARDWARE_STEPS = (
    "step_assign_ddr_weight_offsets",
    "step_generate_hardware",
    "step_create_stitched_ip",
    "step_measure_rtlsim_performance",
    "step_out_of_context_synthesis",
    "step_prepare_synthesis",
    "step_synthesize_bitfile",
    "step_make_driver",
)
# FINN's step_deployment_package is left out on purpose: the package_deployment rule builds
# hw_builds/<model>/<board>/deploy/ (bitfile/, driver settings, XNOR model, test set, host/, manifest),
# so one stage owns that folder in both targets.
# The last FINN step of the board-independent front end (with whatever INJECTIONS attach after it).
FRONTEND_LAST_STEP = "step_convert_to_hw"
# Where bnnflow's custom steps go: (FINN step, "before" | "after", custom step name). The top-1 head
# (TopK -> LabelSelect) is attached per board, after the front end, so that the front end's graphs still
# end in the class scores the XNOR reference exports; the board graph is the same as with FINN's usual
# TopK-before-streamlining order (tests/hw_builds/test_frontend.py compares them node by node).
INJECTIONS = (
    ("step_qonnx_to_finn", "before", "step_annotate_uint8_input"),
    ("step_qonnx_to_finn", "before", "step_record_exact_function"),
    ("step_convert_to_hw", "after", "step_exact_thresholds"),
    ("step_minimize_bit_width_initial", "before", "step_insert_topk"),
    # FINN's minimization sizes XNOR accumulators too narrow (hw_builds/accumulators.py): record, then mend
    ("step_minimize_bit_width_initial", "before", "step_record_reference_thresholds"),
    ("step_minimize_bit_width_initial", "after", "step_mend_xnor_accumulators_initial"),
    ("step_target_fps_parallelization", "after", "step_repair_auto_folding"),
    ("step_apply_folding_config", "before", "step_check_folding_config"),
    ("step_apply_folding_config", "after", "step_check_folding"),
    ("step_minimize_bit_width", "after", "step_mend_xnor_accumulators"),
    ("step_generate_estimate_reports", "after", "step_check_fits"),
)
# The emulation target's tail: HLS/RTL sources, then driver/settings.json via the Zynq prefix.
EMULATION_TAIL = ("step_hw_codegen", "step_make_zynq_driver")


class BuildConfigError(RefusedInput):
    """The build settings are inconsistent (one line: what is wrong and what to set)."""


class MissingXilinxToolsError(RefusedInput, RuntimeError):
    """``target: hardware`` was asked for where Vivado / Vitis HLS are not installed."""


@dataclass(frozen=True)
class BuildSettings:
    """One FINN build: board, clock, folding source and target. Units are in the names."""

    board: str
    target: str = "emulation"
    clk_period_ns: float = 10.0  # synthesis / HLS clock period; 10 ns = 100 MHz as finn-examples
    target_fps: int | None = 100_000  # FINN's SetFolding goal; ignored for layers in folding_config
    folding_config: Path | None = None  # JSON of per-layer PE/SIMD/...; overrides target_fps
    mvau_wwidth_max: int = 36  # FINN's cap on an MVAU's weight stream width per PE (bits)
    fail_if_not_fits: bool = True  # raise when the estimate exceeds the board; else record fits=false
    verify_max_samples: int | None = None  # golden samples checked per step (None = all)

    def __post_init__(self) -> None:
        get_board(self.board)  # unknown board -> UnknownBoardError naming the supported ones
        if self.target not in TARGETS:
            raise BuildConfigError(f"unknown target {self.target!r}: use one of {', '.join(TARGETS)}")
        if not self.clk_period_ns > 0:
            raise BuildConfigError(f"clk_period_ns must be positive, got {self.clk_period_ns}")
        if self.target_fps is None and self.folding_config is None:
            raise BuildConfigError("set target_fps or folding_config: FINN needs one to choose the folding")
        if self.target_fps is not None and self.target_fps <= 0:
            raise BuildConfigError(f"target_fps must be positive, got {self.target_fps}")
        if self.folding_config is not None and not Path(self.folding_config).is_file():
            raise BuildConfigError(f"{self.folding_config}: folding config file not found")

    @property
    def board_spec(self) -> Board:
        return get_board(self.board)

    @property
    def clk_mhz(self) -> float:
        return 1000.0 / self.clk_period_ns


def _with_injections(finn_steps) -> list[str]:
    """FINN step names with bnnflow's INJECTIONS before / after each, in order."""
    names: list[str] = []
    for step in finn_steps:
        names += [c for s, where, c in INJECTIONS if s == step and where == "before"]
        names.append(step)
        names += [c for s, where, c in INJECTIONS if s == step and where == "after"]
    return names


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise BuildConfigError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")


def frontend_step_names() -> list[str]:
    """The board-independent front end's ordered steps: FINN's up to FRONTEND_LAST_STEP, with injections."""
    return _with_injections(SOFTWARE_STEPS[: SOFTWARE_STEPS.index(FRONTEND_LAST_STEP) + 1])


def board_step_names(target: str) -> list[str]:
    """The per-board steps for ``target``, which start from the front end's HW graph."""
    _check_target(target)
    rest = SOFTWARE_STEPS[SOFTWARE_STEPS.index(FRONTEND_LAST_STEP) + 1 :]
    names = _with_injections(list(rest) + (list(HARDWARE_STEPS) if target == "hardware" else []))
    return names + (list(EMULATION_TAIL) if target == "emulation" else [])


def step_names(target: str) -> list[str]:
    """The exact, ordered step names of a whole build for ``target`` (FINN's and bnnflow's): front end + board."""
    _check_target(target)
    return frontend_step_names() + board_step_names(target)


def missing_xilinx_tools(environ: dict[str, str] | None = None) -> list[str]:
    """What is missing for FINN's hardware steps: env variables or executables on PATH."""
    env = os.environ if environ is None else environ
    missing = []
    for var, tool in (("XILINX_VIVADO", "vivado"), ("XILINX_HLS", "vitis_hls")):
        root = env.get(var)
        if not root:
            missing.append(f"{var} is not set")
        elif not Path(root).is_dir():
            missing.append(f"{var}={root} is not a directory")
        if shutil.which(tool, path=env.get("PATH")) is None:
            missing.append(f"{tool} is not on PATH")
    return missing


def require_tools_for(target: str, environ: dict[str, str] | None = None) -> None:
    """Refuse a hardware build before it starts when the Xilinx tools are missing."""
    if target != "hardware":
        return
    missing = missing_xilinx_tools(environ)
    if missing:
        raise MissingXilinxToolsError(
            f"target 'hardware' needs Xilinx Vivado and Vitis HLS {XILINX_VERSIONS} (finn-plus 1.6.1), "
            f"but {'; '.join(missing)}; set `finn: target: emulation` in workflow/config.yaml to run "
            "every software step (estimates, HLS/RTL code, driver settings) without them"
        )


# DataflowBuildConfig fields the front-end steps read (step_convert_to_hw: standalone_thresholds), set the
# same way for the front end and the board builds: finn-examples' BNNs fuse BN-sign thresholds into the MVAU.
FRONTEND_FIELDS: dict[str, Any] = {"standalone_thresholds": False}


def frontend_config(output_dir: Path):
    """The DataflowBuildConfig of the front end: no board, no clock, no outputs; only what its steps read."""
    prepare_finn_environment()
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    return DataflowBuildConfig(output_dir=str(output_dir), generate_outputs=[], save_intermediate_models=True,
                               **FRONTEND_FIELDS)


def dataflow_config(settings: BuildSettings, output_dir: Path, golden_dir: Path | None = None):
    """The DataflowBuildConfig for a build: FINN's dataclass, every field bnnflow sets spelled out.

    ``golden_dir`` holds input.npy / expected_output.npy for FINN's own simulation-based checks,
    which only the hardware target runs (cppsim of the folded model, rtlsim of the stitched IP).
    """
    prepare_finn_environment()
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        ShellFlowType,
        VerificationStepType,
    )

    hardware = settings.target == "hardware"
    outputs = [DataflowOutputType.ESTIMATE_REPORTS, DataflowOutputType.PYNQ_DRIVER]
    if hardware:
        outputs += [
            DataflowOutputType.STITCHED_IP,
            DataflowOutputType.RTLSIM_PERFORMANCE,
            DataflowOutputType.BITFILE,
        ]
    fields: dict[str, Any] = dict(
        output_dir=str(output_dir),
        board=settings.board,
        fpga_part=settings.board_spec.part,
        shell_flow_type=ShellFlowType.VIVADO_ZYNQ,
        synth_clk_period_ns=float(settings.clk_period_ns),
        target_fps=settings.target_fps,
        folding_config_file=Path(settings.folding_config).resolve() if settings.folding_config else None,
        mvau_wwidth_max=settings.mvau_wwidth_max,
        generate_outputs=outputs,
        save_intermediate_models=True,
        # FIFO depths come from FINN's simulation-based sizing, which needs XSim: hardware only.
        auto_fifo_depths=True,
        **FRONTEND_FIELDS,
        minimize_bit_width=True,
    )
    if hardware and golden_dir is not None:
        fields.update(
            verify_steps=[VerificationStepType.FOLDED_HLS_CPPSIM, VerificationStepType.STITCHED_IP_RTLSIM],
            verify_input_npy=str(golden_dir / "input.npy"),
            verify_expected_output_npy=str(golden_dir / "expected_output.npy"),
            # class indices must be equal, not close
            verification_atol=0.0,
            verification_rtol=0.0,
            verification_mean_atol=0.0,
            verification_mean_rtol=0.0,
        )
    return DataflowBuildConfig(**fields)
