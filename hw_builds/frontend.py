"""The board-independent FINN front end of one model: QONNX -> streamlined graph -> HW-layer graph, verified.

It runs once per model (the build_frontend rule), and everything downstream reads its graphs, so each
FINN step runs once and data flows one way: export -> front end -> {XNOR reference, per-board builds}.
The steps are :func:`hw_builds.build_config.frontend_step_names` (FINN's ``step_qonnx_to_finn``,
``step_tidy_up``, ``step_streamline``, ``step_convert_to_hw`` and bnnflow's steps injected among them),
each verified against Brevitas on the golden set as a board build verifies its own.

Outputs in ``out_dir``:

- ``streamlined.onnx``: the graph after ``step_streamline`` (XnorPopcountMatMul / MultiThreshold and the
  final Mul / Add of the class scores) with the exact thresholds set, which verify_xnor traces;
- ``hw.onnx``: the graph after the last front-end step (HW layers, class scores out), which export_xnor
  reads and every per-board build (hw_builds.compile) starts from;
- ``frontend.json``: the steps, their verification records and seconds, the source file and its sha256;
- ``intermediate_models/<step>.onnx``: the graph after every step.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from host.atomic import atomic_path, write_json_atomic
from host.refusal import InputFileError, RefusedInput, read_json
from hw_builds.admission import admit_qonnx
from hw_builds.build_config import frontend_config, frontend_step_names
from hw_builds.custom_steps import UnsupportedModelError
from hw_builds.exact_function import META_PROP, ExactNetwork
from hw_builds.exact_thresholds import ExactThresholdError, set_exact_thresholds
from hw_builds.execute import load_model
from hw_builds.failed_build import failure_marker
from hw_builds.step_runner import run_steps
from hw_builds.verify import GoldenFileError, load_golden

FRONTEND_RECORD = "frontend.json"
STREAMLINED = "streamlined.onnx"
HW_GRAPH = "hw.onnx"
STREAMLINE_STEP = "step_streamline"


class FrontendError(RefusedInput):
    """A front-end folder that cannot be used (missing or unreadable record or graph); names the file."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_golden_fits(model, golden, source: Path, golden_path: Path) -> None:
    """Refuse a graph whose input does not take the golden pixels (N, C, H, W), and golden logits
    (N, classes) whose class count is not the graph's (GoldenFileError naming ``golden_path``)."""
    in_shape = tuple(model.get_tensor_shape(model.graph.input[0].name) or ())
    if in_shape[1:] != golden.x.shape[1:]:
        raise UnsupportedModelError(
            f"{source}: graph input shape {in_shape} does not take the golden pixels {golden.x.shape[1:]}"
        )
    out_shape = tuple(model.get_tensor_shape(model.graph.output[0].name) or ())
    classes = golden.logits.shape[1]
    if len(out_shape) == 2 and out_shape[1] not in (1, classes):  # 1: a class index (top-1 head)
        raise GoldenFileError(f"{golden_path}: 'logits' has {classes} classes, "
                              f"the model {source} outputs {out_shape[1]}")


def build_frontend(onnx_path: str | Path, golden_path: str | Path, out_dir: str | Path, model_name: str = "",
                   verify_samples: int | None = 100, progress: bool = True) -> dict:
    """Run the front-end steps on the QONNX file ``onnx_path``; write ``out_dir``'s outputs; return the record.

    Raises for a corrupt or unsupported ONNX file (FinnExecutionError / UnsupportedModelError), golden
    pixels the graph does not take, a FINN step that fails (BuildStepError) or a step whose outputs
    differ from Brevitas on the first ``verify_samples`` golden images (VerificationError). The
    record is written last, atomically, so an interrupted run leaves no ``frontend.json``.
    """
    onnx_path, out_dir = Path(onnx_path), Path(out_dir).resolve()
    golden = load_golden(golden_path).head(verify_samples)
    model = admit_qonnx(load_model(onnx_path, hint="run the export_qonnx rule first"), onnx_path)  # before any step
    check_golden_fits(model, golden, onnx_path, Path(golden_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    with failure_marker(out_dir, "build_frontend"):  # a failed run's intermediate_models/ are marked as such
        return _run_frontend(model, golden, onnx_path, out_dir, model_name, progress)


def _run_frontend(model, golden, onnx_path: Path, out_dir: Path, model_name: str, progress: bool) -> dict:
    """build_frontend's steps and outputs, in ``out_dir`` (created)."""
    (out_dir / FRONTEND_RECORD).unlink(missing_ok=True)
    intermediate = out_dir / "intermediate_models"
    shutil.rmtree(intermediate, ignore_errors=True)
    intermediate.mkdir()
    names = frontend_step_names()
    start = time.perf_counter()
    run = run_steps(model, names, frontend_config(out_dir), golden, onnx_path, intermediate,
                    progress=progress, label=f"FINN front end {model_name or onnx_path.parent.parent.name}")
    # the streamlined graph verify_xnor traces carries the same exact thresholds as the HW graph
    # (step_exact_thresholds sets them there; hw_builds/exact_thresholds.py)
    streamlined = load_model(intermediate / f"{STREAMLINE_STEP}.onnx")
    text = run.model.get_metadata_prop(META_PROP)
    if text:
        try:
            streamlined = set_exact_thresholds(streamlined, ExactNetwork.from_json(text))
        except ExactThresholdError as exc:
            raise UnsupportedModelError(f"{onnx_path}: {STREAMLINE_STEP}: {exc}") from exc
    with atomic_path(out_dir / STREAMLINED, keep_suffix=True) as tmp:  # onnx.save picks the format from the suffix
        streamlined.save(str(tmp))
    with atomic_path(out_dir / HW_GRAPH, keep_suffix=True) as tmp:
        shutil.copyfile(intermediate / f"{names[-1]}.onnx", tmp)
    record = {
        "model": model_name or onnx_path.parent.parent.name,
        "source": str(onnx_path),
        "source_sha256": _sha256(onnx_path),
        "steps": names,
        "verified_steps": [v["step"] for v in run.verified],
        "verification": run.verified,
        "golden_samples_checked": len(golden.x),
        # golden images near a threshold of the exact function, where Brevitas' float32 may differ (per image)
        "golden_float_tie_mask": [bool(v) for v in run.float_ties],
        "seconds_per_step": run.seconds,
        "frontend_seconds": round(time.perf_counter() - start, 3),
        "streamlined": STREAMLINED,
        "hw_model": HW_GRAPH,
        "hw_model_sha256": _sha256(out_dir / HW_GRAPH),
    }
    write_json_atomic(out_dir / FRONTEND_RECORD, record)
    return record


def load_frontend(frontend_dir: str | Path) -> tuple[dict, Path]:
    """The front end's record and the path of its HW graph; FrontendError names what is missing or altered."""
    frontend_dir = Path(frontend_dir)
    path = frontend_dir / FRONTEND_RECORD
    if not path.is_file():
        raise FrontendError(f"{path}: front-end record not found; run the build_frontend rule "
                            "(hw_builds.frontend.build_frontend) on the model's QONNX export first")
    try:
        record = read_json(path, "front-end record")  # host.refusal: non-UTF-8, not JSON, not an object
    except InputFileError as err:
        raise FrontendError(str(err)) from err
    try:
        hw = frontend_dir / record["hw_model"]
        want = record["hw_model_sha256"]
    except (KeyError, TypeError) as err:
        raise FrontendError(f"{path}: not a front-end record ({type(err).__name__}: {err})") from err
    if not hw.is_file():
        raise FrontendError(f"{hw}: the front end's HW graph is missing; rerun build_frontend")
    if _sha256(hw) != want:
        raise FrontendError(f"{hw}: sha256 differs from {path}; the graph was changed after the front end wrote it")
    return record, hw
