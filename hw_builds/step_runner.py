"""Run a list of build steps on a graph, saving and verifying each against Brevitas on the golden set.

Shared by the board-independent front end (``hw_builds.frontend``) and the per-board build
(``hw_builds.compile``): FINN's step functions are called directly, not through
``build_dataflow_cfg`` (which turns every exception into a return code), so a failing step raises
with a one-line cause naming the input file and the step; the graph after each step is saved as
``intermediate_models/<step>.onnx``, FINN's own naming; and every python-executable graph runs the
golden inputs (hw_builds/verify.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw_builds.custom_steps import (
    DesignDoesNotFitError,
    FoldingConfigError,
    UnsupportedModelError,
    custom_steps,
)
from hw_builds.execute import FinnExecutionError, load_model
from hw_builds.finn_env import import_build_steps
from hw_builds.float_ties import golden_float_ties
from hw_builds.range_proof import RangeProofError
from hw_builds.typed_exec import check_typed
from hw_builds.verify import Golden, VerificationError, check_step

# bnnflow's own clean, explicit errors pass through unchanged; anything else is wrapped.
PASS_THROUGH = (VerificationError, RangeProofError, DesignDoesNotFitError, FoldingConfigError, UnsupportedModelError,
                FinnExecutionError)


class BuildStepError(RuntimeError):
    """A FINN step raised; the message names the input file, the step and FINN's own message."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 400 characters of the message."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:400]}"


@dataclass
class StepRun:
    """What a run of steps leaves: the last graph, the verification records and seconds per step."""

    model: object  # qonnx ModelWrapper after the last step
    verified: list[dict] = field(default_factory=list)  # check_step records, in step order
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of each step (s)
    spans: bool = True  # the dataflow partition is the whole network (no parent graph around it)
    float_ties: np.ndarray | None = None  # (N,) bool golden images near a threshold of the exact function


def run_steps(model, names: list[str], cfg, golden: Golden, source: Path, intermediate: Path,
              unverified: frozenset[str] = frozenset(), typed_steps: frozenset[str] = frozenset(),
              fail_if_not_fits: bool = True, float_ties: np.ndarray | None = None,
              progress: bool = True, label: str = "") -> StepRun:
    """Apply the steps ``names`` to ``model`` in order; save, time and verify each one.

    ``source`` is the file named in errors; ``unverified`` the steps whose graph is no longer
    python-executable (FINN's Vivado products); ``typed_steps`` those whose graph carries the
    hardware's final types, which also run the type-faithful execution (hw_builds/typed_exec.py).
    ``float_ties`` (N,) bool marks golden images where Brevitas' float32 may part from the exact
    function (hw_builds/float_ties.py); it is computed from ``source`` after step_record_exact_function
    when that step is in ``names``, else taken as given (a board build gets the front end's). A step raises BuildStepError (FINN's exception, on one
    line) or one of bnnflow's own errors with file and step prefixed; a verification failure raises
    VerificationError naming the step and the saved graph.
    """
    from rich.progress import Progress

    finn_steps = import_build_steps().build_dataflow_step_lookup
    ours = custom_steps(fail_if_not_fits)
    run = StepRun(model=model)
    ties_known = float_ties is not None
    float_ties = np.zeros(len(golden.x), dtype=bool) if float_ties is None else np.asarray(float_ties, dtype=bool)
    scores, parent, previous_graph = None, None, b""
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(label or source.name, total=len(names))
        for name in names:
            bar.update(task, description=name)
            step = ours.get(name) or finn_steps[name]
            t0 = time.perf_counter()
            try:
                model = step(model, cfg)
            except PASS_THROUGH as exc:
                raise type(exc)(f"{source}: {name}: {exc}") from exc
            except Exception as exc:
                raise BuildStepError(f"{source}: FINN {name} failed: {one_line(exc)}") from exc
            run.seconds[name] = round(time.perf_counter() - t0, 3)
            if "step_record_exact_function" in names and name in (names[0], "step_record_exact_function") and not ties_known:
                # where Brevitas' float32 may part from the exact function, known before the first step is checked
                # (the source graph is the same); a graph outside the exact definition is refused by
                # step_record_exact_function itself, so a failure here waits for that step
                try:
                    float_ties, ties_known = golden_float_ties(source, golden.x), True
                except Exception:
                    if name == "step_record_exact_function":
                        raise
            model.save(str(intermediate / f"{name}.onnx"))
            if name == "step_create_dataflow_partition":
                parent_model = load_model(intermediate / "dataflow_parent.onnx")
                run.spans = [n.op_type for n in parent_model.graph.node] == ["StreamingDataflowPartition"]
                parent = None if run.spans else parent_model
                scores = None if parent is not None else scores
            graph = model.model.SerializeToString()
            if name not in unverified and run.verified and graph == previous_graph:
                # byte-identical graph (a pure check step, or nothing to do): same outputs
                run.verified.append(dict(run.verified[-1], step=name, seconds=run.seconds[name], graph_unchanged=True))
            elif name not in unverified:
                try:
                    record, scores = check_step(name, model, golden, parent=parent, previous_scores=scores,
                                                float_ties=float_ties)
                    if name in typed_steps and not float_ties.all():  # float ties (near a boundary) are not compared
                        record |= check_typed(name, model, golden.subset(~float_ties), parent=parent)
                except VerificationError as exc:
                    raise VerificationError(f"{source}: {exc}; model saved as {intermediate / (name + '.onnx')}") from exc
                record["seconds"] = run.seconds[name]
                run.verified.append(record)
            previous_graph = graph
            status = "verified" if run.verified and run.verified[-1]["step"] == name else "not python-executable, unverified"
            print(f"[bnnflow] {name}: {run.seconds[name]:.2f} s, {status}", flush=True)
            bar.advance(task)
    run.model, run.float_ties = model, float_ties
    return run
