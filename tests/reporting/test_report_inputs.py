"""Reading the stage outputs: contract paths recognised, bad or missing files named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import write_build, write_tree

from reporting.inputs import ReportInputError, classify, discover, layer_table, load_inputs

MODELS, BOARDS = ["tfc_w1a1", "sfc_w1a1"], ["Pynq-Z1", "ZCU104"]


def test_classify_contract_paths() -> None:
    assert classify("results/tfc_w1a1/train/metrics.json") == ("metrics", {"model": "tfc_w1a1"})
    assert classify("/abs/hw_builds/cnv_w2a2/ZCU104/summary.json") == ("summary", {"model": "cnv_w2a2", "board": "ZCU104"})
    assert classify("results/lfc_w1a1/Pynq-Z1/validation.json")[0] == "validation"
    assert classify("results/bench/xnor.json") == ("bench", {"bench": "xnor"})
    with pytest.raises(ReportInputError, match="results/tfc_w1a1/notes.txt"):
        classify("results/tfc_w1a1/notes.txt")


def test_loads_every_stage(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    inputs = load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)
    assert set(inputs.builds) == {(m, b) for m in MODELS for b in BOARDS}
    build = inputs.builds[("tfc_w1a1", "Pynq-Z1")]
    assert build.bottleneck == "MVAU_hls_0"
    assert build.layers.loc["MVAU_hls_0", "cycles"] == 896 and build.layers.loc["MVAU_hls_0", "LUT"] == 687
    assert inputs.model_data["sfc_w1a1"].history["epoch"].tolist() == [1, 2, 3, 4]
    assert inputs.benches["xnor"]["images_per_s"]["numba"] == 60000.0


def test_training_outputs_are_required(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    files = [f for f in discover(tmp_path, MODELS, BOARDS) if not f.endswith("sfc_w1a1/train/history.csv")]
    with pytest.raises(ReportInputError, match="results/sfc_w1a1/train/history.csv"):
        load_inputs(files, MODELS, BOARDS)


def test_given_but_missing_file_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS, full=False)
    missing = str(tmp_path / "hw_builds/tfc_w1a1/Pynq-Z1/summary.json")
    with pytest.raises(ReportInputError, match="summary.json: missing"):
        load_inputs(discover(tmp_path, MODELS, BOARDS) + [missing], MODELS, BOARDS)


def test_corrupt_json_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS)
    bad = tmp_path / "results/sfc_w1a1/ZCU104/validation.json"
    bad.write_text('{"model": "sfc_w1a1", ')
    with pytest.raises(ReportInputError, match=r"sfc_w1a1/ZCU104/validation.json: not valid JSON"):
        load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)
    bad.write_text("[1, 2]")
    with pytest.raises(ReportInputError, match="expected a JSON object"):
        load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)


def test_history_without_accuracy_column(tmp_path: Path) -> None:
    write_tree(tmp_path, MODELS, BOARDS, full=False)
    history = tmp_path / "results/tfc_w1a1/train/history.csv"
    history.write_text("epoch,train_loss,val_loss\n1,0.5,0.6\n")
    with pytest.raises(ReportInputError, match=r"history.csv: columns \['train_accuracy', 'val_accuracy'\] missing"):
        load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)


def test_predictions_must_be_integer_labels(tmp_path: Path) -> None:
    import numpy as np

    write_tree(tmp_path, MODELS, BOARDS, full=False)
    np.savez(tmp_path / "results/tfc_w1a1/report/test_predictions.npz", y_true=np.zeros(3), y_pred=np.zeros(3))
    with pytest.raises(ReportInputError, match="y_true must be a 1-D integer array"):
        load_inputs(discover(tmp_path, MODELS, BOARDS), MODELS, BOARDS)


def test_layers_fall_back_to_finn_reports(tmp_path: Path) -> None:
    """A summary.json without per-layer fields: the per-layer figures come from FINN's report/*.json."""
    summary = write_build(tmp_path, "tfc_w1a1", "Pynq-Z1")
    path = tmp_path / "hw_builds/tfc_w1a1/Pynq-Z1/summary.json"
    from_summary = layer_table(summary, path)
    stripped = {k: v for k, v in summary.items() if k not in ("cycles_per_layer", "resources_per_layer")}
    path.write_text(json.dumps(stripped))
    from_reports = layer_table(stripped, path)
    assert from_reports.equals(from_summary)
    (path.parent / "report" / "estimate_layer_cycles.json").unlink()
    (path.parent / "report" / "estimate_layer_resources.json").unlink()
    assert layer_table(stripped, path) is None
