"""predict_testset: the checkpoint's test-set predictions, refused unless they reproduce metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402 - the torch world, installed in bnnflow's .venv

from models.predict import PredictionMismatchError, main, predict_testset  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A randomly initialised TFC-w1a1 checkpoint, a small MNIST-shaped data set, and metrics.json whose
    test accuracy comes from models.train.evaluate (training's own scoring, an independent path)."""
    from host.inputs import to_model_input
    from models.topologies import build_model
    from models.checkpoint import save_checkpoint
    from models.train import LOSSES, evaluate

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pred")
    rng = np.random.default_rng(0)
    data = {"x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 20).astype(np.uint8),
            "x_test": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), "y_test": rng.integers(0, 10, 300).astype(np.uint8)}
    np.savez(root / "data.npz", **data)
    torch.manual_seed(0)
    model = build_model("tfc_w1a1").eval()
    save_checkpoint(model, root / "checkpoint.pt")
    figures = {}
    for n in (300, 120):
        x = torch.from_numpy(to_model_input(data["x_test"][:n], (1, 28, 28))).float()
        _, acc = evaluate(model, x, torch.from_numpy(data["y_test"][:n].astype(np.int64)), LOSSES["cross_entropy"])
        (root / f"metrics_{n}.json").write_text(json.dumps({"test_accuracy": acc, "n_test": n}))
        figures[n] = acc
    return {"root": root, "data": data, "accuracy": figures}


def test_predictions_reproduce_training_accuracy(trained: dict) -> None:
    root = trained["root"]
    out = root / "out" / "test_predictions.npz"
    figures = predict_testset(root / "checkpoint.pt", root / "data.npz", root / "metrics_300.json", out)
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["y_true"], trained["data"]["y_test"].astype(np.int64))
        assert npz["y_pred"].dtype == np.int64 and npz["logits"].shape == (300, 10)
        np.testing.assert_array_equal(npz["y_pred"], npz["logits"].argmax(1))
        assert (npz["y_pred"] == npz["y_true"]).mean() == trained["accuracy"][300] == figures["test_accuracy"]


def test_test_subset_is_honoured(trained: dict) -> None:
    root = trained["root"]
    figures = predict_testset(root / "checkpoint.pt", root / "data.npz", root / "metrics_120.json", root / "sub.npz", test_subset=120)
    assert figures["images"] == 120 and figures["test_accuracy"] == trained["accuracy"][120]


def test_mismatch_writes_nothing(trained: dict, tmp_path: Path) -> None:
    root = trained["root"]
    wrong = tmp_path / "metrics.json"
    ties = predict_testset(root / "checkpoint.pt", root / "data.npz", root / "metrics_300.json", tmp_path / "ok.npz")["ties"]
    (tmp_path / "ok.npz").unlink()
    off = (ties + 1) / 300  # more images than numerical ties can explain
    accuracy = trained["accuracy"][300]
    wrong.write_text(json.dumps({"test_accuracy": accuracy + off if accuracy + off <= 1 else accuracy - off, "n_test": 300}))
    with pytest.raises(PredictionMismatchError, match="metrics.json records test_accuracy"):
        predict_testset(root / "checkpoint.pt", root / "data.npz", wrong, tmp_path / "p.npz")
    # a subset different from the one training scored is the same error
    assert main(["--checkpoint", str(root / "checkpoint.pt"), "--dataset", str(root / "data.npz"),
                 "--metrics", str(root / "metrics_120.json"), "--out", str(tmp_path / "p.npz"), "--test-subset", "null"]) == 1
    assert list(tmp_path.iterdir()) == [wrong]
