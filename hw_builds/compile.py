"""Compile one exported model for one board with FINN, verifying every software step on the way.

``compile_finn`` drives FINN's step functions itself instead of calling ``build_dataflow_cfg``,
which catches every exception into a return code and then crashes writing metadata without
Vivado. Here a failing step raises (with a one-line cause naming the file, step or layer), the
graph after each step is saved under ``intermediate_models/`` exactly as FINN names it, and the
golden inputs go through it and are compared with Brevitas (hw_builds/verify.py).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from host.atomic import write_json_atomic
from hw_builds.accumulators import TYPE_MENDS_PROP, reference_thresholds
from hw_builds.build_config import HARDWARE_STEPS, BuildSettings, dataflow_config, require_tools_for, step_names
from hw_builds.custom_steps import (
    FOLDING_REPAIRS_PROP,
    DesignDoesNotFitError,
    FoldingConfigError,
    UnsupportedModelError,
    custom_steps,
)
from hw_builds.execute import FinnExecutionError, load_model
from hw_builds.float_ties import golden_float_ties
from hw_builds.finn_env import import_build_steps
from hw_builds.range_proof import RangeProofError, check_range_proof, proof_summary, range_proof
from hw_builds.summary import build_summary, write_final_folding
from hw_builds.typed_exec import check_typed
from hw_builds.verify import VerificationError, check_step, load_golden

# Steps after which the graph is no longer a python-executable dataflow model: the Zynq / Vivado
# products (step_assign_ddr_weight_offsets only annotates, so it stays verified). FINN's own cppsim /
# stitched-IP rtlsim checks cover them (hardware target only).
UNVERIFIED_STEPS = frozenset(HARDWARE_STEPS) - {"step_assign_ddr_weight_offsets"}
# From this step on the graph carries the hardware's final types: each verified step also runs the
# type-faithful execution (hw_builds/typed_exec.py), which must agree with Brevitas as well.
TYPED_FROM_STEP = "step_mend_xnor_accumulators"
# bnnflow's own clean, explicit errors pass through unchanged; anything else is wrapped.
PASS_THROUGH = (VerificationError, RangeProofError, DesignDoesNotFitError, FoldingConfigError, UnsupportedModelError, FinnExecutionError)
# FINN output folders a rebuild replaces (deploy/ of a later stage is left alone in emulation).
FINN_OUTPUT_DIRS = ("intermediate_models", "report", "driver", "generated_code", "verification_output", "golden",
                    "bitfile", "stitched_ip")
# What a hardware build must leave behind (FINN's step_synthesize_bitfile / step_make_driver).
HARDWARE_PRODUCTS = ("bitfile/finn-accel.bit", "bitfile/finn-accel.hwh", "driver/settings.json")


class BuildStepError(RuntimeError):
    """A FINN step raised; the message names the input file, the step and FINN's own message."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:400]}"


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
    onnx_path: str | Path,
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
    """Build ``onnx_path`` for ``board`` into ``output_dir`` and write ``summary.json``; return it.

    Raises before any work for an unknown board, bad settings or (target hardware) missing
    Xilinx tools; raises during the build for a corrupt or unsupported ONNX file, a folding file
    naming unknown layers, a design larger than the board, or a step whose outputs differ from
    Brevitas on the golden set. The summary is written last, atomically.
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
    onnx_path, output_dir = Path(onnx_path), Path(output_dir).resolve()
    golden = load_golden(golden_path).head(verify_samples)
    model = load_model(onnx_path)
    in_shape = tuple(model.get_tensor_shape(model.graph.input[0].name) or ())
    if in_shape[1:] != golden.x.shape[1:]:
        raise UnsupportedModelError(
            f"{onnx_path}: graph input shape {in_shape} does not take the golden pixels {golden.x.shape[1:]}"
        )

    output_dir.mkdir(parents=True, exist_ok=True)
    _clean_output_dir(output_dir)
    golden_dir = output_dir / "golden"
    golden_dir.mkdir()
    np.save(golden_dir / "input.npy", golden.x.astype(np.float32))
    np.save(golden_dir / "expected_output.npy", golden.top1.reshape(-1, 1).astype(np.float32))
    cfg = dataflow_config(settings, output_dir, golden_dir)
    finn_steps = import_build_steps().build_dataflow_step_lookup
    ours = custom_steps(settings.fail_if_not_fits)
    names = step_names(settings.target)
    intermediate = output_dir / "intermediate_models"
    intermediate.mkdir()

    verified: list[dict] = []
    seconds: dict[str, float] = {}
    scores, parent, spans, previous_graph = None, None, True, b""
    typed_steps = set(names[names.index(TYPED_FROM_STEP):]) if TYPED_FROM_STEP in names else set()
    float_ties = np.zeros(len(golden.x), dtype=bool)
    start = time.perf_counter()
    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(f"FINN {onnx_path.parent.name or onnx_path.name} -> {board}", total=len(names))
        for name in names:
            bar.update(task, description=f"{name}")
            step = ours.get(name) or finn_steps[name]
            t0 = time.perf_counter()
            try:
                model = step(model, cfg)
            except PASS_THROUGH as exc:
                raise type(exc)(f"{onnx_path}: {name}: {exc}") from exc
            except Exception as exc:
                raise BuildStepError(f"{onnx_path}: FINN {name} failed: {_one_line(exc)}") from exc
            seconds[name] = round(time.perf_counter() - t0, 3)
            if name == "step_record_exact_function":  # the graph is within the exact definition (or refused)
                float_ties = golden_float_ties(onnx_path, golden.x)  # where Brevitas' float32 may part from it
            model.save(str(intermediate / f"{name}.onnx"))
            if name == "step_create_dataflow_partition":
                parent_model = load_model(intermediate / "dataflow_parent.onnx")
                spans = [n.op_type for n in parent_model.graph.node] == ["StreamingDataflowPartition"]
                parent = None if spans else parent_model
                scores = None if parent is not None else scores
            graph = model.model.SerializeToString()
            if name not in UNVERIFIED_STEPS and verified and graph == previous_graph:
                # byte-identical graph (a pure check step, or nothing to do): same outputs
                verified.append(dict(verified[-1], step=name, seconds=seconds[name], graph_unchanged=True))
            elif name not in UNVERIFIED_STEPS:
                try:
                    record, scores = check_step(name, model, golden, parent=parent, previous_scores=scores,
                                                float_ties=float_ties)
                    if name in typed_steps:  # float ties (near a boundary on the exact path) are not compared
                        record |= check_typed(name, model, golden.subset(~float_ties), parent=parent)
                except VerificationError as exc:
                    raise VerificationError(f"{onnx_path}: {exc}; model saved as {intermediate / (name + '.onnx')}") from exc
                record["seconds"] = seconds[name]
                verified.append(record)
            previous_graph = graph
            status = "verified" if verified and verified[-1]["step"] == name else "not python-executable, unverified"
            print(f"[bnnflow] {name}: {seconds[name]:.2f} s, {status}", flush=True)
            bar.advance(task)
    if settings.target == "hardware":
        missing = [p for p in HARDWARE_PRODUCTS if not (output_dir / p).is_file()]
        if missing:
            raise BuildStepError(f"{onnx_path}: FINN's hardware flow finished without {', '.join(missing)}")
    failures = _finn_verification_failures(output_dir)
    if failures:
        raise VerificationError(f"{onnx_path}: FINN's simulation checks failed: {', '.join(failures)}")
    _copy_generated_code(model, output_dir)
    hw_model = load_model(intermediate / "step_generate_estimate_reports.onnx")
    write_final_folding(hw_model, output_dir / "report" / "final_folding_config.json")
    # static range proof of the final dataflow model, types cross-checked against the generated sources
    proof = proof_summary(range_proof(hw_model, output_dir / "generated_code", reference_thresholds(hw_model)))
    proof["type_mends"] = json.loads(hw_model.get_metadata_prop(TYPE_MENDS_PROP) or "[]")
    write_json_atomic(output_dir / "report" / "range_proof.json", proof)
    check_range_proof(proof["nodes"], where=f"{onnx_path} (table in {output_dir / 'report' / 'range_proof.json'})")

    build = {
        "model": model_name or onnx_path.parent.parent.name,
        "target": settings.target,
        "clk_period_ns": settings.clk_period_ns,
        "target_fps": settings.target_fps,
        "folding_config": str(settings.folding_config) if settings.folding_config else None,
        "partition_spans_network": spans,
        "folding_repairs": json.loads(hw_model.get_metadata_prop(FOLDING_REPAIRS_PROP) or "[]"),
        "steps": names,
        "seconds_per_step": seconds,
        "build_seconds": round(time.perf_counter() - start, 3),
        "golden_float_ties": int(float_ties.sum()),
    }
    summary = build_summary(output_dir, settings.board_spec, build, verified)
    summary["range_proof"] = proof
    write_json_atomic(output_dir / "report" / "time_per_step.json", seconds)
    write_json_atomic(Path(summary_path) if summary_path else output_dir / "summary.json", summary)
    return summary
