"""The training benchmark writes one figure per (model, epoch budget), with the published reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.bench_training import bench_training


def test_bench_writes_every_run(small_mnist: Path, tmp_path: Path, tiny_recipe: dict) -> None:
    out = tmp_path / "bench" / "training.json"
    report = bench_training(small_mnist, out, tmp_path / "runs", {"tfc_w1a1": [1, 2], "sfc_w1a1": [1]},
                            {k: v for k, v in tiny_recipe.items() if k != "epochs"}, jobs=2)
    assert json.loads(out.read_text()) == report
    assert [(r["model"], r["epochs"]) for r in report["runs"]] == [("sfc_w1a1", 1), ("tfc_w1a1", 1), ("tfc_w1a1", 2)]
    for run in report["runs"]:
        assert 0 < run["test_accuracy_pct"] <= 100 and run["train_seconds"] > 0
        metrics = json.loads((tmp_path / "runs" / f"{run['model']}_e{run['epochs']}" / "metrics.json").read_text())
        assert run["test_accuracy_pct"] == round(100 * metrics["test_accuracy"], 2) and metrics["epochs"] == run["epochs"]
    assert report["published_test_accuracy_pct"] == {"tfc_w1a1": 93.17, "sfc_w1a1": 97.81}


def test_bench_needs_budgets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one model"):
        bench_training(tmp_path / "x.npz", tmp_path / "out.json", tmp_path, {}, {})
