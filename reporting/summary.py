"""The summary table: one row per model and board, our figures beside the published ones.

Values stay raw (floats, bools, None) in the DataFrame; ``None`` becomes ``n/a`` in the CSV and the
HTML, so a stage that did not run for a row is visible rather than silently zero. Column names
carry their units (``est_throughput_fps``), as the rest of the pipeline's JSON does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from host.atomic import atomic_path
from reporting.inputs import BuildData, ModelData, ReportInputs, pick
from reporting.references import reference_accuracy, reference_throughput

NA = "n/a"


def _pct(fraction: Any) -> float | None:
    return None if fraction is None else 100.0 * float(fraction)


def _agree_pct(record: dict | None) -> float | None:
    """agree/of of verify.json's top1_agree_with_xnor entries, in percent."""
    if not isinstance(record, dict) or not record.get("of"):
        return None
    return 100.0 * record["agree"] / record["of"]


def _stages_agree(m: ModelData, b: BuildData) -> bool | None:
    """Brevitas' test accuracy (training) equals the accelerator's (validation), where both scored the same
    images (the first N of the test set): XNOR = Brevitas and accelerator = XNOR imply it, so this
    cross-checks the stages end to end. None where the image counts differ or a figure is missing."""
    n_test, n_val = m.metrics.get("n_test"), pick(b.validation, "images")
    test, accel = m.metrics.get("test_accuracy"), pick(b.validation, "accuracy_pct")
    if None in (n_test, n_val, test, accel) or n_test != n_val:
        return None
    return round(float(test) * n_test) == round(float(accel) / 100.0 * n_val)


def _mw(watts: Any) -> float | None:
    return None if watts is None else 1000.0 * float(watts)


def _utilization_pct(summary: dict | None, resource: str) -> float | None:
    value = pick(summary, f"utilization.{resource}")
    return None if value is None else 100.0 * float(value)


@dataclass(frozen=True)
class Column:
    """One column: CSV name (with units), HTML header, how to read it from a row's inputs."""

    name: str
    header: str
    read: Callable[[ModelData, BuildData], Any]
    kind: str = "text"  # text | note | int | float1 | float2 | pct | bool | status


COLUMNS: tuple[Column, ...] = (
    Column("model", "model", lambda m, b: m.name),
    Column("board", "board", lambda m, b: b.board),
    Column("dataset", "data set", lambda m, b: m.metrics.get("dataset")),
    Column("test_accuracy_pct", "test accuracy %", lambda m, b: _pct(m.metrics.get("test_accuracy")), "pct"),
    Column("test_images", "test images", lambda m, b: m.metrics.get("n_test"), "int"),
    Column("published_accuracy_pct", "published accuracy %",
           lambda m, b: getattr(reference_accuracy(m.name, m.metrics.get("dataset", "")), "accuracy_pct", None), "pct"),
    Column("xnor_vs_brevitas_agree_pct", "XNOR = Brevitas top-1 %",
           lambda m, b: _agree_pct(pick(m.verify, "top1_agree_with_xnor.brevitas")), "pct"),
    Column("brevitas_float_ties", "Brevitas float ties",  # proven float32 ties vs the exact function (README)
           lambda m, b: pick(m.verify, "float_ties.count"), "int"),
    Column("accelerator_accuracy_pct", "accelerator accuracy %", lambda m, b: pick(b.validation, "accuracy_pct"), "pct"),
    Column("accelerator_vs_xnor_agree_pct", "accelerator = XNOR top-1 %",
           lambda m, b: pick(b.validation, "agreement.agreement_pct"), "pct"),
    Column("validation_images", "validated images", lambda m, b: pick(b.validation, "images"), "int"),
    Column("accuracy_stages_agree", "accelerator = Brevitas accuracy", _stages_agree, "bool"),
    Column("est_throughput_fps", "est. throughput fps", lambda m, b: pick(b.summary, "estimate.throughput_fps"), "int"),
    Column("published_throughput_fps", "published fps",
           lambda m, b: getattr(reference_throughput(m.name, m.metrics.get("dataset", "")), "throughput_fps", None), "int"),
    Column("published_source", "published fps source",
           lambda m, b: _ref_label(reference_throughput(m.name, m.metrics.get("dataset", ""))), "note"),
    Column("est_latency_us", "est. latency us", lambda m, b: pick(b.summary, "estimate.latency_us"), "float2"),
    Column("xnor_cpu_latency_us_p50", "XNOR ref. CPU latency p50 us",
           lambda m, b: pick(b.validation, "reference.latency.latency_us_p50"), "float2"),
    Column("clock_mhz", "clock MHz", lambda m, b: pick(b.summary, "clock.mhz"), "float1"),
    Column("LUT", "LUT", lambda m, b: pick(b.summary, "resources_total.LUT"), "int"),
    Column("BRAM_18K", "BRAM 18K", lambda m, b: pick(b.summary, "resources_total.BRAM_18K"), "int"),
    Column("DSP", "DSP", lambda m, b: pick(b.summary, "resources_total.DSP"), "int"),
    Column("lut_utilization_pct", "LUT use %", lambda m, b: _utilization_pct(b.summary, "LUT"), "pct"),
    Column("fits", "fits board", lambda m, b: pick(b.summary, "fits"), "bool"),
    Column("power_above_idle_mw", "board power above idle mW", lambda m, b: _mw(pick(b.validation, "power.accelerator.above_idle_w")), "float1"),
    Column("validation_backend", "validation backend", lambda m, b: pick(b.validation, "backend")),
    Column("budget_accuracy", "accuracy budget", lambda m, b: pick(b.validation, "budgets.accuracy_pct.status"), "status"),
    Column("budget_latency", "latency budget", lambda m, b: pick(b.validation, "budgets.latency_ms.status"), "status"),
    Column("budget_power", "power budget", lambda m, b: pick(b.validation, "budgets.power_mw.status"), "status"),
    Column("validation_passed", "validation passed", lambda m, b: pick(b.validation, "passed"), "bool"),
)


def _ref_label(ref) -> str | None:
    if ref is None:
        return None
    return f"{ref.source}, {ref.board}" if ref.board and ref.board not in ref.source else ref.source


def summary_frame(inputs: ReportInputs) -> pd.DataFrame:
    """One row per (model, board) in config order; missing figures are None."""
    rows = []
    for model in inputs.models:
        for board in inputs.boards:
            m, b = inputs.model_data[model], inputs.builds[(model, board)]
            rows.append({c.name: c.read(m, b) for c in COLUMNS})
    return pd.DataFrame(rows, columns=[c.name for c in COLUMNS])


def format_value(value: Any, kind: str) -> str:
    """A cell as a person reads it: thousands separators, two decimals for percent, n/a for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return NA
    if kind == "bool":
        return "yes" if bool(value) else "no"
    if kind == "int":
        return f"{round(float(value)):,}"
    if kind == "pct" or kind == "float2":
        return f"{float(value):.2f}"
    if kind == "float1":
        return f"{float(value):.1f}"
    if kind == "status":
        return str(value).replace("_", " ")
    return str(value)


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """summary.csv with ``n/a`` for missing values (pandas reads it back as NaN); written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, na_rep=NA, float_format="%.6g")
    return path
