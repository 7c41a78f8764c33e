"""Compile one model for one board with FINN, from the model's front end, verifying every software step.

The board-independent part (QONNX -> streamlined HW-layer graph) is the front end
(``hw_builds.frontend``), built once per model; ``compile_finn`` starts from its ``hw.onnx`` and runs
the per-board steps (``hw_builds.build_config.board_step_names``: top-1 head, partition, folding,
estimates, code generation). It drives FINN's step functions itself (``hw_builds.step_runner``)
instead of calling ``build_dataflow_cfg``, which catches every exception into a return code and then
crashes writing metadata without Vivado. Here a failing step raises (with a one-line cause naming the
file, step or layer), the graph after each step is saved under ``intermediate_models/`` exactly as
FINN names it, and the golden inputs go through it and are compared with Brevitas (hw_builds/verify.py).
summary.json lists the whole flow: the front end's steps and verification records, then the board's.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from host.atomic import write_json_atomic
from hw_builds.accumulators import TYPE_MENDS_PROP, reference_thresholds
from hw_builds.build_config import HARDWARE_STEPS, BuildSettings, board_step_names, dataflow_config, require_tools_for
from hw_builds.custom_steps import FOLDING_REPAIRS_PROP
from hw_builds.execute import load_model
from hw_builds.failed_build import failure_marker
from hw_builds.frontend import FrontendError, check_golden_fits, load_frontend
from hw_builds.range_proof import check_range_proof, proof_summary, range_proof
from hw_builds.step_runner import BuildStepError, run_steps
from hw_builds.summary import build_summary, write_final_folding
from hw_builds.verify import VerificationError, load_golden

__all__ = ["BuildStepError", "UNVERIFIED_STEPS", "compile_finn"]

# Steps after which the graph is no longer a python-executable dataflow model: the Zynq / Vivado
# products (step_assign_ddr_weight_offsets only annotates, so it stays verified). FINN's own cppsim /
# stitched-IP rtlsim checks cover them (hardware target only).
# FINN's two bit-width minimizations are checked together with bnnflow's mend that follows each
# (step_mend_xnor_accumulators*, hw_builds/accumulators.py): FINN sizes an XNOR layer's accumulator as a signed
# dot product of its weights' range (INT7 for K = 100) and clips the thresholds to it, though the popcount runs
# 0..K (a threshold of 68 becomes 64), so a graph whose neurons need such thresholds computes another function
# until the mend restores them (tests/hw_builds/test_exact_finn_onnx.py builds one).
MINIMIZATION_STEPS = frozenset({"step_minimize_bit_width_initial", "step_minimize_bit_width"})
UNVERIFIED_STEPS = (frozenset(HARDWARE_STEPS) - {"step_assign_ddr_weight_offsets"}) | MINIMIZATION_STEPS
# From this step on the graph carries the hardware's final types: each verified step also runs the
# type-faithful execution (hw_builds/typed_exec.py), which must agree with Brevitas as well.
TYPED_FROM_STEP = "step_mend_xnor_accumulators"
# FINN output folders a rebuild replaces (deploy/ of a later stage is left alone in emulation).
FINN_OUTPUT_DIRS = ("intermediate_models", "report", "driver", "generated_code", "verification_output", "golden",
                    "bitfile", "stitched_ip")
# What a hardware build must leave behind (FINN's step_synthesize_bitfile / step_make_driver).
HARDWARE_PRODUCTS = ("bitfile/finn-accel.bit", "bitfile/finn-accel.hwh", "driver/settings.json")


def _clean_output_dir(output_dir: Path) -> None:
    for name in FINN_OUTPUT_DIRS:
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("summary.json", "template_specialize_layers_config.json"):
        (output_dir / name).unlink(missing_ok=True)


def _copy_generated_code(model, output_dir: Path) -> list[str]:
    """Copy each layer's generated HLS/RTL sources from FINN_BUILD_DIR into generated_code/<layer>."""
    from qonnx.custom_op.registry import getCustomOp

    copied = []
    for node in model.graph.node:
        try:
            src = getCustomOp(node).get_nodeattr("code_gen_dir_ipgen")
        except Exception:  # not a HW layer
            continue
        if src and Path(src).is_dir():
            shutil.copytree(src, output_dir / "generated_code" / node.name, dirs_exist_ok=True)
            copied.append(node.name)
    return copied


def _finn_verification_failures(output_dir: Path) -> list[str]:
    """FINN's verify_step logs 'FAIL' into file names instead of raising; collect those."""
    folder = output_dir / "verification_output"
    return sorted(p.name for p in folder.glob("*FAIL*")) if folder.is_dir() else []


def compile_finn(
    frontend_dir: str | Path,
    golden_path: str | Path,
    output_dir: str | Path,
    board: str,
    model_name: str = "",
    target: str = "emulation",
    clk_period_ns: float = 10.0,
    target_fps: int | None = 100_000,
    folding_config: str | Path | None = None,
    mvau_wwidth_max: int = 36,
    fail_if_not_fits: bool = True,
    verify_samples: int | None = 100,
    summary_path: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Build the front end in ``frontend_dir`` (hw_builds.frontend) for ``board`` into ``output_dir``; return the summary.

    Raises before any work for an unknown board, bad settings, (target hardware) missing Xilinx
    tools or a missing or altered front end (FrontendError); raises during the build for a folding
    file naming unknown layers, a design larger than the board, or a step whose outputs differ from
    Brevitas on the golden set. ``summary.json`` is written last, atomically.
    """
    settings = BuildSettings(
        board=board,
        target=target,
        clk_period_ns=clk_period_ns,
        target_fps=target_fps,
        folding_config=Path(folding_config) if folding_config else None,
        mvau_wwidth_max=mvau_wwidth_max,
        fail_if_not_fits=fail_if_not_fits,
        verify_max_samples=verify_samples,
    )
    require_tools_for(settings.target)  # refuse a hardware build before doing anything
    frontend, hw_path = load_frontend(frontend_dir)
    output_dir = Path(output_dir).resolve()
    golden = load_golden(golden_path).head(verify_samples)
    model = load_model(hw_path)
    check_golden_fits(model, golden, hw_path, Path(golden_path))

    output_dir.mkdir(parents=True, exist_ok=True)
    with failure_marker(output_dir, "compile_finn"):  # kept golden/, intermediate_models/ of a failed build are marked
        _clean_output_dir(output_dir)
        golden_dir = output_dir / "golden"
        golden_dir.mkdir()
        np.save(golden_dir / "input.npy", golden.x.astype(np.float32))
        np.save(golden_dir / "expected_output.npy", golden.top1.reshape(-1, 1).astype(np.float32))
        cfg = dataflow_config(settings, output_dir, golden_dir)
        names = board_step_names(settings.target)
        intermediate = output_dir / "intermediate_models"
        intermediate.mkdir()

        start = time.perf_counter()
        name = model_name or frontend["model"]
        typed_steps = frozenset(names[names.index(TYPED_FROM_STEP):]) if TYPED_FROM_STEP in names else frozenset()
        ties = frontend.get("golden_float_tie_mask", [])
        if len(ties) < len(golden.x):
            raise FrontendError(f"{Path(frontend_dir) / 'frontend.json'}: the front end checked {len(ties)} golden images, "
                                f"this build checks {len(golden.x)}; rebuild the front end with verify_samples >= {len(golden.x)}")
        float_ties = np.array(ties[: len(golden.x)], dtype=bool)
        run = run_steps(model, names, cfg, golden, hw_path, intermediate, unverified=UNVERIFIED_STEPS,
                        typed_steps=typed_steps, fail_if_not_fits=settings.fail_if_not_fits, float_ties=float_ties,
                        progress=progress, label=f"FINN {name} -> {board}")
        model = run.model
        if settings.target == "hardware":
            missing = [p for p in HARDWARE_PRODUCTS if not (output_dir / p).is_file()]
            if missing:
                raise BuildStepError(f"{hw_path}: FINN's hardware flow finished without {', '.join(missing)}")
        failures = _finn_verification_failures(output_dir)
        if failures:
            raise VerificationError(f"{hw_path}: FINN's simulation checks failed: {', '.join(failures)}")
        _copy_generated_code(model, output_dir)
        hw_model = load_model(intermediate / "step_generate_estimate_reports.onnx")
        write_final_folding(hw_model, output_dir / "report" / "final_folding_config.json")
        # static range proof of the final dataflow model, types cross-checked against the generated sources
        proof = proof_summary(range_proof(hw_model, output_dir / "generated_code", reference_thresholds(hw_model)))
        proof["type_mends"] = json.loads(hw_model.get_metadata_prop(TYPE_MENDS_PROP) or "[]")
        write_json_atomic(output_dir / "report" / "range_proof.json", proof)
        check_range_proof(proof["nodes"], where=f"{hw_path} (table in {output_dir / 'report' / 'range_proof.json'})")

        build = {
            "model": name,
            "target": settings.target,
            "clk_period_ns": settings.clk_period_ns,
            "target_fps": settings.target_fps,
            "folding_config": str(settings.folding_config) if settings.folding_config else None,
            "partition_spans_network": run.spans,
            "folding_repairs": json.loads(hw_model.get_metadata_prop(FOLDING_REPAIRS_PROP) or "[]"),
            # the whole flow: the front end's steps (run once for every board) and this board's
            "steps": frontend["steps"] + names,
            "seconds_per_step": {**frontend["seconds_per_step"], **run.seconds},
            "build_seconds": round(time.perf_counter() - start, 3),
            "golden_float_ties": int(float_ties.sum()),
        }
        summary = build_summary(output_dir, settings.board_spec, build, frontend["verification"] + run.verified)
        summary["range_proof"] = proof
        summary["frontend"] = {"dir": str(Path(frontend_dir)), "steps": frontend["steps"],
                               "frontend_seconds": frontend["frontend_seconds"],
                               "note": "board-independent steps, run once per model and shared by every board "
                                       "and the XNOR export; their graphs are in the front end's intermediate_models/"}
        write_json_atomic(output_dir / "report" / "time_per_step.json", run.seconds)
        write_json_atomic(Path(summary_path) if summary_path else output_dir / "summary.json", summary)
        return summary
