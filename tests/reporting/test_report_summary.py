"""The summary table and summary.csv: values equal the stage outputs, missing stages read n/a."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from report_fixtures import TFC_LAYERS, write_tree

from reporting.inputs import discover, load_inputs
from reporting.references import reference_accuracy, reference_throughput
from reporting.summary import COLUMNS, format_value, summary_frame, write_csv

MODELS, BOARDS = ["tfc_w1a1", "sfc_w1a1"], ["Pynq-Z1", "ZCU104"]


def _frame(root: Path, full: bool = True) -> pd.DataFrame:
    write_tree(root, MODELS, BOARDS, full=full)
    return summary_frame(load_inputs(discover(root, MODELS, BOARDS), MODELS, BOARDS))


def test_rows_carry_the_stage_figures(tmp_path: Path) -> None:
    frame = _frame(tmp_path)
    assert list(zip(frame["model"], frame["board"])) == [(m, b) for m in MODELS for b in BOARDS]
    row = frame[(frame["model"] == "sfc_w1a1") & (frame["board"] == "ZCU104")].iloc[0]
    assert row["test_accuracy_pct"] == 100 * 0.93
    assert row["published_accuracy_pct"] == 97.81 and row["published_throughput_fps"] == 12_300_000
    assert row["LUT"] == 4 * sum(lut for _, lut, _ in TFC_LAYERS.values())  # write_build(speedup=4) for the second board
    assert row["est_throughput_fps"] == 1e8 / (896 // 4)
    assert row["accelerator_accuracy_pct"] == 93.0 and bool(row["validation_passed"])
    assert bool(row["accuracy_stages_agree"])  # 93 % of the same 200 images in training and validation
    assert row["budget_power"] == "not_measured" and bool(row["fits"])
    assert row["xnor_vs_brevitas_agree_pct"] == 100.0 and row["brevitas_float_ties"] == 0


def test_missing_stages_are_na(tmp_path: Path) -> None:
    frame = _frame(tmp_path, full=False)
    for column in ("est_throughput_fps", "LUT", "fits", "validation_backend", "budget_accuracy", "xnor_vs_brevitas_agree_pct",
                   "brevitas_float_ties"):
        assert frame[column].isna().all(), column
    cells = [format_value(frame.loc[0, c.name], c.kind) for c in COLUMNS]
    assert cells.count("n/a") >= 10 and "tfc_w1a1" in cells


def test_csv_round_trip(tmp_path: Path) -> None:
    frame = _frame(tmp_path)
    frame.loc[0, "LUT"] = None  # one missing value must come back as NaN, not 0
    path = write_csv(frame, tmp_path / "out" / "summary.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == [c.name for c in COLUMNS]
    assert "n/a" in path.read_text()
    assert np.isnan(back.loc[0, "LUT"])
    np.testing.assert_allclose(back["est_throughput_fps"], frame["est_throughput_fps"].astype(float), rtol=1e-5)
    np.testing.assert_allclose(back["test_accuracy_pct"], frame["test_accuracy_pct"].astype(float), rtol=1e-6)


def test_references_only_on_the_published_data_set() -> None:
    assert reference_accuracy("tfc_w1a1", "mnist").accuracy_pct == 93.17
    assert reference_accuracy("tfc_w1a1", "fashion_mnist") is None
    assert reference_accuracy("cnv_w2a2", "cifar10").accuracy_pct == 89.03
    assert reference_throughput("tfc_w1a1", "mnist").throughput_fps == 837_019
    assert reference_throughput("tfc_w2a2", "mnist") is None


def test_format_value() -> None:
    assert format_value(None, "int") == "n/a" and format_value(float("nan"), "pct") == "n/a"
    assert format_value(111607.14, "int") == "111,607"
    assert format_value(93.1666, "pct") == "93.17"
    assert format_value(False, "bool") == "no"
    assert format_value("not_measured", "status") == "not measured"


def test_stage_agreement_needs_the_same_images(tmp_path: Path) -> None:
    import json

    write_tree(tmp_path, MODELS, BOARDS)
    path = tmp_path / "results/tfc_w1a1/Pynq-Z1/validation.json"
    report = json.loads(path.read_text())
    path.write_text(json.dumps({**report, "accuracy_pct": report["accuracy_pct"] - 0.5}))  # one image of 200 differs
    other = tmp_path / "results/tfc_w1a1/ZCU104/validation.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "images": 150}))  # not the same images
    frame = summary_frame(load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS))
    assert frame["accuracy_stages_agree"].tolist()[:2] == [False, None]
