"""The Larq world's export stage: a trained or user-supplied Larq model -> QONNX + Larq's own logits.

Writes, all or nothing (staged in a temp folder, renamed at the end), into ``out_dir``:

- ``model.onnx``: the converted graph (larq_models.convert), not yet proven;
- ``golden.npz``: the seeded sample of test images every later stage is checked on, as models/export_stage.py
  makes it (``x`` uint8 NCHW, ``labels``, ``logits`` float32 from Larq, ``indices``);
- ``test_logits.npz``: Larq's forward on the whole (subset) test set under ``larq.context.quantized_scope(True)``
  (``y_true``, ``y_pred``, ``logits``, ``source``), which the main world's proof compares with qonnx;
- ``convert.json``: the layer mapping and figures.

The proof itself (qonnx == Larq on every test image) runs in the main world (hw_builds/larq_proof.py), because
qonnx needs numpy 2; only a proven graph reaches ``results/<model>/export/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import larq as lq
import numpy as np
import onnx
import tensorflow as tf

from larq_models.convert import Conversion, convert, load_keras_model
from larq_models.data import load_npz, nhwc_to_nchw, to_nhwc


def golden_sample(n_test: int, n_golden: int, seed: int) -> np.ndarray:
    """Sorted, seeded choice of test-set positions (all of them when the set is smaller); as models/export_stage.py."""
    if n_golden >= n_test:
        return np.arange(n_test, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_test, size=n_golden, replace=False)).astype(np.int64)


def larq_logits(model: tf.keras.Model, conversion: Conversion, x_nhwc: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Larq's forward (inference, ``quantized_scope(True)``) up to the converted output: float32 (N, classes).

    x_nhwc: uint8 raw pixels (N, H, W, C). A final softmax the converter dropped is left out here too.
    """
    head = model if conversion.logits_layer == model.layers[-1].name else tf.keras.Model(
        model.inputs, model.get_layer(conversion.logits_layer).output)
    out = []
    with lq.context.quantized_scope(True):
        for lo in range(0, len(x_nhwc), batch_size):
            out.append(head(x_nhwc[lo: lo + batch_size].astype(np.float32), training=False).numpy())
    return np.concatenate(out).astype(np.float32)


def export_larq(model_file: str | Path, dataset_npz: str | Path, out_dir: str | Path, n_golden: int = 100,
                seed: int = 0, test_subset: int | None = None) -> dict[str, Any]:
    """Convert ``model_file`` and write model.onnx, golden.npz, test_logits.npz, convert.json into ``out_dir``.

    Raises ModelFileError (bad file), ConversionError (a layer that cannot be mapped exactly), DataError.
    """
    t0 = time.perf_counter()
    model = load_keras_model(model_file)
    conversion = convert(model)
    c, h, w = conversion.input_shape_nchw
    arrays = load_npz(dataset_npz, train_subset=0, test_subset=test_subset)
    x = to_nhwc(arrays["x_test"], (h, w, c))
    y = arrays["y_test"].astype(np.int64)
    logits = larq_logits(model, conversion, x)
    indices = golden_sample(len(x), n_golden, seed)
    summary = {
        "model_file": str(model_file),
        "onnx_nodes": len(conversion.onnx_model.graph.node),
        "layers": conversion.mapping,
        "dropped_final_softmax": conversion.dropped_softmax,
        "test_images": int(len(y)),
        "larq_top1_accuracy": float(np.mean(logits.argmax(1) == y)),
        "golden_samples": int(len(indices)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".stage_") as tmp:
        tmp = Path(tmp)
        onnx.save(conversion.onnx_model, str(tmp / "model.onnx"))
        np.savez(tmp / "golden.npz", x=nhwc_to_nchw(x[indices]), labels=y[indices], logits=logits[indices],
                 indices=indices)
        np.savez(tmp / "test_logits.npz", y_true=y, y_pred=logits.argmax(1).astype(np.int64), logits=logits,
                 source=np.array(f"Larq model {Path(model_file).as_posix()}"))
        (tmp / "convert.json").write_text(json.dumps(summary, indent=2) + "\n")
        for name in ("model.onnx", "golden.npz", "test_logits.npz", "convert.json"):
            os.replace(tmp / name, out_dir / name)
    print(json.dumps({k: v for k, v in summary.items() if k != "layers"}), flush=True)
    return summary
