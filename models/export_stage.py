"""The export stage: trained checkpoint -> model.onnx + golden.npz, refused unless qonnx agrees.

golden.npz fixes a seeded sample of test images and what Brevitas says about them, so every later
stage (FINN build, XNOR reference, board) compares against the same numbers:
``x`` uint8 (N, C, H, W) raw pixels, ``labels`` int64 (N,), ``logits`` float32 (N, 10) from the
Brevitas forward, ``indices`` int64 (N,) positions in the (subset) test set.

Before anything is published, qonnx's own executor runs the exported file on those inputs; if any
logit differs from Brevitas by more than ``atol`` or any top-1 differs, the stage fails and writes
nothing (all three outputs are staged in a temp folder and renamed only after the check).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.datasets import load_npz, model_images
from models.export import execute_qonnx, export_qonnx
from models.checkpoint import load_checkpoint


class ExportMismatchError(RuntimeError):
    """qonnx's execution of the exported model disagrees with the Brevitas forward."""


def golden_sample(n_test: int, n_golden: int, seed: int) -> np.ndarray:
    """Sorted, seeded choice of test-set positions (all of them when the set is smaller)."""
    if n_golden >= n_test:
        return np.arange(n_test, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_test, size=n_golden, replace=False)).astype(np.int64)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, atol: float) -> dict[str, Any]:
    """Figures of the comparison; ``passed`` needs every logit within atol and every top-1 equal."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    top1_equal = reference.argmax(1) == candidate.argmax(1)
    per_sample_ok = (diff <= atol).all(axis=1) & top1_equal
    return {
        "samples": int(len(reference)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "bit_exact_samples": int((diff == 0).all(axis=1).sum()),
        "top1_agreement": float(top1_equal.mean()) if len(reference) else 1.0,
        "mismatched_indices": np.flatnonzero(~per_sample_ok).tolist()[:20],
        "atol": atol,
        "passed": bool(per_sample_ok.all()),
    }


def export_stage(
    checkpoint: str | Path,
    dataset_npz: str | Path,
    out_dir: str | Path,
    n_golden: int = 100,
    seed: int = 0,
    atol: float = 0.0,
    test_subset: int | None = None,
) -> dict[str, Any]:
    """Write out_dir/model.onnx, golden.npz and roundtrip.json; raise ExportMismatchError on disagreement."""
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(checkpoint)
    input_shape = model.spec.topology.input_shape
    arrays = load_npz(dataset_npz, train_subset=0, test_subset=test_subset)
    indices = golden_sample(len(arrays["x_test"]), n_golden, seed)
    x = model_images(arrays["x_test"][indices], input_shape, dataset_npz)  # uint8 (N, C, H, W)
    labels = arrays["y_test"][indices].astype(np.int64)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).float()).numpy().astype(np.float32)

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".stage_") as tmp:
        staged_onnx = export_qonnx(model, Path(tmp) / "model.onnx", (1, *input_shape))
        qonnx_logits = execute_qonnx(staged_onnx, x.astype(np.float32))
        result = compare_logits(logits, qonnx_logits, atol)
        result.update({
            "model": model.spec.name,
            "checkpoint": str(checkpoint),
            "brevitas_top1_accuracy": float((logits.argmax(1) == labels).mean()),
            "qonnx_top1_accuracy": float((qonnx_logits.argmax(1) == labels).mean()),
        })
        print(json.dumps(result, indent=2), flush=True)
        if not result["passed"]:
            raise ExportMismatchError(
                f"{checkpoint}: qonnx execution of the exported model differs from Brevitas on "
                f"{len(result['mismatched_indices'])}+ golden samples (max |diff| {result['max_abs_diff']:.3g} > atol {atol}); "
                "nothing was written"
            )
        np.savez(Path(tmp) / "golden.npz", x=x, labels=labels, logits=logits, indices=indices)
        (Path(tmp) / "roundtrip.json").write_text(json.dumps(result, indent=2) + "\n")
        for name in ("model.onnx", "golden.npz", "roundtrip.json"):
            os.replace(Path(tmp) / name, out_dir / name)
    return result
