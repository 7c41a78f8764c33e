"""Test-set predictions of the trained Brevitas model, for the report's confusion matrix.

No earlier stage keeps per-image predictions (training keeps only the accuracy), so this runs the
checkpoint over the same test images training scored, and refuses to write anything unless its
accuracy equals metrics.json's ``test_accuracy`` (up to images whose two best logits tie, which float
summation order may break either way): two passes over the same model and data must agree, or the
checkpoint, data set or subset is not the one the report claims.

Run by the predict_testset rule (or as ``python -m models.predict ...``); its output,
``results/{model}/report/test_predictions.npz``, is a stage output the report reads like any other,
so the report itself never imports torch or this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from host.atomic import atomic_path


class PredictionMismatchError(RuntimeError):
    """The recomputed test accuracy differs from the one training recorded."""


def predict_testset(
    checkpoint: str | Path,
    dataset_npz: str | Path,
    metrics_json: str | Path,
    out_npz: str | Path,
    test_subset: int | None = None,
    batch_size: int = 1000,
) -> dict:
    """Write ``y_true``, ``y_pred`` (int64), ``logits`` (float32) of the test set to ``out_npz``; return figures."""
    import torch

    from models.datasets import load_npz, model_images
    from models.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    metrics_path = Path(metrics_json)
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: training metrics not found")
    metrics = json.loads(metrics_path.read_text())
    model = load_checkpoint(checkpoint)
    arrays = load_npz(dataset_npz, train_subset=0, test_subset=test_subset)
    x = model_images(arrays["x_test"], model.spec.topology.input_shape, dataset_npz)  # uint8 (N, C, H, W)
    y_true = arrays["y_test"].astype(np.int64)
    logits = []
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            logits.append(model(torch.from_numpy(x[lo : lo + batch_size]).float()).numpy().astype(np.float32))
    logits = np.concatenate(logits)  # (N, 10)
    y_pred = logits.argmax(1).astype(np.int64)
    correct = int((y_pred == y_true).sum())
    top2 = np.sort(logits, axis=1)[:, -2:]  # (N, 2)
    # A BNN's logits tie exactly in exact arithmetic; float summation order (threads) may break such a tie
    # either way, so only those images may score differently from training's own pass.
    ties = int(np.sum(top2[:, 1] - top2[:, 0] <= 1e-4 * np.maximum(1.0, np.abs(top2[:, 1]))))
    recorded = metrics.get("test_accuracy")
    if (recorded is None or metrics.get("n_test", len(y_true)) != len(y_true)
            or abs(round(float(recorded) * len(y_true)) - correct) > ties):
        raise PredictionMismatchError(
            f"{checkpoint}: {correct}/{len(y_true)} test images correct here ({ties} numerical ties), but "
            f"{metrics_path} records test_accuracy {recorded} on {metrics.get('n_test')} images; "
            "checkpoint, data set or test_subset differ"
        )
    out = Path(out_npz)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz"
        np.savez(f, y_true=y_true, y_pred=y_pred, logits=logits,
                 source=np.array(f"Brevitas checkpoint {Path(checkpoint).as_posix()}"))
    figures = {"images": len(y_true), "correct": correct, "test_accuracy": correct / len(y_true), "ties": ties, "out": str(out)}
    print(json.dumps(figures), flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.predict", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True, help="prepared data set .npz (resources/<dataset>.npz)")
    p.add_argument("--metrics", required=True, help="the training stage's metrics.json (its test_accuracy is checked)")
    p.add_argument("--out", required=True, help="test_predictions.npz to write")
    p.add_argument("--test-subset", default="null", help="first N test images, or null for all (as data.test_subset)")
    args = p.parse_args(argv)
    subset = None if args.test_subset in ("null", "None", "") else int(args.test_subset)
    try:
        predict_testset(args.checkpoint, args.dataset, args.metrics, args.out, subset)
    except (FileNotFoundError, ValueError, PredictionMismatchError) as err:
        print(f"predict_testset: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
