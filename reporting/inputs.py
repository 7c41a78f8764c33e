"""Find, read and check the stage outputs the report is made of (the data contracts of each stage).

The report is given an explicit list of files (the rule's inputs). Each is recognised by its
contract path, e.g. ``results/{model}/train/metrics.json``; every file given must exist and parse,
else :class:`ReportInputError` names it. A stage whose file is not given (not in this workflow,
or not run for this model) leaves its cells ``n/a``. Only training is required for every model:
a report without trained models has nothing to say.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL = r"(?P<model>[a-z][a-z0-9_]*)"  # a built-in, Larq or config-declared model name
BOARD = r"(?P<board>[A-Za-z0-9_-]+)"
# kind -> the contract path of the file (matched as the end of the given path).
PATTERNS: dict[str, str] = {
    "metrics": rf"results/{MODEL}/train/metrics\.json",
    "history": rf"results/{MODEL}/train/history\.csv",
    "predictions": rf"results/{MODEL}/report/test_predictions\.npz",
    "verify": rf"results/{MODEL}/xnor/verify\.json",
    "summary": rf"hw_builds/{MODEL}/{BOARD}/summary\.json",
    "validation": rf"results/{MODEL}/{BOARD}/validation\.json",
    "bench": r"results/bench/(?P<bench>[A-Za-z0-9_-]+)\.json",
    # the design-space sweep (`snakemake dse`, shown when report.dse is set): its table and two plots
    "dse": r"results/dse/summary\.json",
    "dse_plot": r"results/dse/(?P<plot>pareto|setfolding)\.png",
}
REQUIRED_PER_MODEL = ("metrics", "history")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
_COMPILED = {kind: re.compile(rf"(?:^|/){pattern}$") for kind, pattern in PATTERNS.items()}


class ReportInputError(ValueError):
    """A stage output the report needs is missing, unreadable or not in its contract layout."""


@dataclass
class ModelData:
    """What the model-level stages (training, test predictions, XNOR verification) wrote."""

    name: str
    metrics: dict[str, Any]
    history: pd.DataFrame
    predictions: dict[str, np.ndarray] | None = None
    verify: dict[str, Any] | None = None


@dataclass
class BuildData:
    """What the build of one model for one board (FINN summary, per-layer estimates, validation) wrote."""

    model: str
    board: str
    summary: dict[str, Any] | None = None
    layers: pd.DataFrame | None = None  # index: layer name; columns cycles, LUT, BRAM_18K, URAM, DSP
    bottleneck: str | None = None
    validation: dict[str, Any] | None = None


@dataclass
class ReportInputs:
    """Everything the report shows, keyed by model and (model, board)."""

    models: list[str]
    boards: list[str]
    model_data: dict[str, ModelData]
    builds: dict[tuple[str, str], BuildData]
    benches: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    dse: dict[str, Any] | None = None  # results/dse/summary.json: {"designs": [...], "setfolding": [...]}
    dse_plots: dict[str, Path] = field(default_factory=dict)  # "pareto" / "setfolding" -> results/dse/<name>.png


def pick(data: dict | None, dotted: str, default: Any = None) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``, or ``default`` where any level is missing: optional fields."""
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def classify(path: str | Path) -> tuple[str, dict[str, str]]:
    """(kind, wildcards) of a stage output from its contract path; a clear error for anything else."""
    posix = Path(path).as_posix()
    for kind, regex in _COMPILED.items():
        match = regex.search(posix)
        if match:
            return kind, match.groupdict()
    raise ReportInputError(f"{path}: not a stage output the report knows (expected one of {sorted(PATTERNS.values())})")


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; missing file, bad JSON or a non-object are errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"{path}: missing; the report needs it (run the stage that writes it)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_history(path: str | Path) -> pd.DataFrame:
    """history.csv of the training stage: one row per epoch with loss and accuracy columns."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"{path}: missing; the report needs it (run the training stage)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path}: not a readable CSV ({err})") from err
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportInputError(f"{path}: columns {missing} missing (has {list(frame.columns)})")
    if frame.empty:
        raise ReportInputError(f"{path}: no epochs recorded")
    if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in HISTORY_COLUMNS):
        raise ReportInputError(f"{path}: columns {list(HISTORY_COLUMNS)} must be numeric")
    return frame


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """test_predictions.npz: ``y_true`` and ``y_pred`` int64 (N,) class indices, equal lengths."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"{path}: missing; the report needs it (run the predict_testset rule)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ReportInputError(f"{path}: not a readable .npz ({err})") from err
    for key in ("y_true", "y_pred"):
        if key not in arrays or arrays[key].ndim != 1 or not np.issubdtype(arrays[key].dtype, np.integer):
            raise ReportInputError(f"{path}: {key} must be a 1-D integer array")
    if len(arrays["y_true"]) != len(arrays["y_pred"]) or len(arrays["y_true"]) == 0:
        raise ReportInputError(f"{path}: y_true and y_pred must be non-empty and of equal length")
    return arrays


def layer_table(summary: dict[str, Any], summary_path: Path) -> pd.DataFrame | None:
    """Per-layer cycles and resources: from summary.json, else FINN's report/*.json beside it."""
    cycles = summary.get("cycles_per_layer")
    resources = summary.get("resources_per_layer")
    report = summary_path.parent / "report"
    if cycles is None and (report / "estimate_layer_cycles.json").is_file():
        cycles = read_json(report / "estimate_layer_cycles.json")
    if resources is None and (report / "estimate_layer_resources.json").is_file():
        resources = {k: v for k, v in read_json(report / "estimate_layer_resources.json").items() if k != "total"}
    if not cycles and not resources:
        return None
    names = list(cycles or resources)
    frame = pd.DataFrame(index=pd.Index(names, name="layer"))
    frame["cycles"] = [float((cycles or {}).get(n, np.nan)) for n in names]
    for res in ("LUT", "BRAM_18K", "URAM", "DSP"):
        frame[res] = [float(pick(resources, f"{n}.{res}", np.nan)) for n in names]
    return frame


def load_inputs(files: list[str | Path], models: list[str], boards: list[str]) -> ReportInputs:
    """Read every given stage output; check that each model has its training outputs."""
    by_kind: dict[str, dict[tuple, Path]] = {kind: {} for kind in PATTERNS}
    for f in files:
        kind, wc = classify(f)
        key = (wc["bench"],) if kind == "bench" else (wc["plot"],) if kind == "dse_plot" else \
            () if kind == "dse" else (wc["model"], wc.get("board"))
        by_kind[kind][key] = Path(f)
    for model in models:
        for kind in REQUIRED_PER_MODEL:
            if (model, None) not in by_kind[kind]:
                raise ReportInputError(
                    f"results/{model}/train/{'metrics.json' if kind == 'metrics' else 'history.csv'}: "
                    f"not given to the report, but every model needs its training outputs ({model})"
                )

    model_data = {}
    for model in models:
        key = (model, None)
        pred_path, verify_path = by_kind["predictions"].get(key), by_kind["verify"].get(key)
        model_data[model] = ModelData(
            name=model,
            metrics=read_json(by_kind["metrics"][key]),
            history=read_history(by_kind["history"][key]),
            predictions=read_predictions(pred_path) if pred_path else None,
            verify=read_json(verify_path) if verify_path else None,
        )
    builds = {}
    for model in models:
        for board in boards:
            build = BuildData(model, board)
            summary_path = by_kind["summary"].get((model, board))
            if summary_path:
                build.summary = read_json(summary_path)
                build.layers = layer_table(build.summary, summary_path)
                build.bottleneck = pick(build.summary, "estimate.bottleneck_layer")
                if build.bottleneck is None and build.layers is not None and build.layers["cycles"].notna().any():
                    build.bottleneck = str(build.layers["cycles"].idxmax())
            validation_path = by_kind["validation"].get((model, board))
            if validation_path:
                build.validation = read_json(validation_path)
            builds[(model, board)] = build
    benches = {name: read_json(p) for (name,), p in by_kind["bench"].items()}
    dse = read_dse(by_kind["dse"][()]) if () in by_kind["dse"] else None
    dse_plots = {name: p for (name,), p in by_kind["dse_plot"].items()}
    for name, p in dse_plots.items():
        if not p.is_file():
            raise ReportInputError(f"{p}: missing; the report needs it (run `snakemake dse`)")
    return ReportInputs(list(models), list(boards), model_data, builds, benches, [str(f) for f in files], dse, dse_plots)


def read_dse(path: str | Path) -> dict[str, Any]:
    """The design-space sweep's summary (reporting.dse.summarize): {"designs": [row per model x board, with
    model, board, status, images_per_s, bound, LUT, BRAM_18K, test_accuracy_pct, ...], "setfolding": [...]}."""
    data = read_json(path)
    designs = data.get("designs")
    if not isinstance(designs, list) or not all(isinstance(r, dict) and {"model", "board", "status"} <= r.keys()
                                                 for r in designs):
        raise ReportInputError(f"{path}: expected \"designs\", a list of rows with model, board and status "
                               "(written by summarize_dse)")
    return data


def discover(root: str | Path, models: list[str], boards: list[str]) -> list[str]:
    """Every contract file for these models and boards that exists under ``root`` (for tests and the CLI)."""
    root = Path(root)
    candidates = []
    for m in models:
        candidates += [f"results/{m}/train/metrics.json", f"results/{m}/train/history.csv",
                       f"results/{m}/report/test_predictions.npz", f"results/{m}/xnor/verify.json"]
        for b in boards:
            candidates += [f"hw_builds/{m}/{b}/summary.json", f"results/{m}/{b}/validation.json"]
    candidates += [p.relative_to(root).as_posix() for p in sorted((root / "results" / "bench").glob("*.json"))]
    candidates += ["results/dse/summary.json", "results/dse/pareto.png", "results/dse/setfolding.png"]
    return [str(root / c) for c in candidates if (root / c).is_file()]
