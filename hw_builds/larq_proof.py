"""The proof of a Larq model's conversion, in the main world: qonnx's execution of the converted graph equals
Larq's own forward on every test image, or nothing reaches ``results/<model>/export/``.

The Larq world (larq_models.export, its own environment) writes ``results/<model>/larq/``: ``model.onnx`` (the
converted graph, unproven), ``golden.npz`` and ``test_logits.npz`` (Larq's logits under
``larq.context.quantized_scope(True)`` for the whole (subset) test set). Here, with qonnx (numpy 2, which the
Larq world cannot load), the graph is tidied exactly as the Brevitas export tidies its own (qonnx's
``cleanup_model``) and run image by image by qonnx's executor. The stage passes only if every top-1 is
identical and every logit lies within ``atol`` of Larq's; then ``model.onnx``, ``golden.npz`` and
``roundtrip.json`` are published together into ``export/``, the contract of models/export_stage.py, so FINN's
front end (hw_builds/frontend.py), its per-board builds and the XNOR stages take the graph unchanged. On failure the report goes to the
log and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from host.refusal import InputFileError, RefusedInput, read_npz


class LarqProofError(RuntimeError):
    """The proof did not pass: LarqInputError (refused input, exit 2) or LarqMismatchError (a failed proof, exit 1)."""


class LarqInputError(LarqProofError, RefusedInput):
    """A proof input (the Larq export's files, the data set) is missing, unreadable or inconsistent with the others
    (labels, golden images or logits not the test set's, a graph qonnx cannot load or of batch > 1): refused, exit 2."""


class LarqMismatchError(LarqProofError):
    """qonnx's execution of the converted graph differs from Larq's forward (a failed proof: exit 1)."""


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:  # host.refusal's .npz reader: a missing, truncated or incomplete file is one line naming it
        return read_npz(path, "Larq export file", keys, hint="run the Larq export (larq_models export) first")
    except InputFileError as err:
        raise LarqInputError(str(err)) from err


def compare(larq: np.ndarray, qonnx: np.ndarray, atol: float) -> dict[str, Any]:
    """Figures of the comparison (logits float32 (N, classes) each); ``passed``: all top-1 equal, all |diff| <= atol."""
    diff = np.abs(larq.astype(np.float64) - qonnx.astype(np.float64))
    top1 = larq.argmax(1) == qonnx.argmax(1)
    ok = (diff <= atol).all(axis=1) & top1
    return {
        "images": int(len(larq)),
        "top1_identical": int(top1.sum()),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "bit_exact_images": int((diff == 0).all(axis=1).sum()),
        "mismatched_indices": np.flatnonzero(~ok).tolist()[:20],
        "atol": atol,
        "passed": bool(ok.all()),
    }


# Images per qonnx call over the test set (the batched copy of the graph, see with_batch).
PROOF_BATCH = 250


def with_batch(wrapper, batch: int):
    """A copy of a batch-1 graph for ``batch`` images: the input / output leading 1 and each Reshape's leading 1
    become ``batch``; nothing else changes (every node computes each image independently). Shapes re-inferred.
    """
    import copy

    from onnx import numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    proto = copy.deepcopy(wrapper.model)
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            raise LarqInputError(f"graph {value.name!r} has batch {dim.dim_value}, expected 1")
        dim.dim_value = batch
    inits = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape[0] == 1:
                shape[0] = batch
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    del proto.graph.value_info[:]
    return ModelWrapper(proto).transform(InferShapes())


def prove_larq_export(larq_dir: str | Path, dataset_npz: str | Path, out_dir: str | Path, atol: float = 0.0,
                      test_subset: int | None = None) -> dict[str, Any]:
    """Run the proof; write out_dir/model.onnx, golden.npz, roundtrip.json if it passes, else raise LarqProofError.

    ``dataset_npz`` / ``test_subset``: the labels the Larq export scored must be the data set's first N.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from host.inputs import to_model_input

    t0 = time.perf_counter()
    larq_dir, out_dir = Path(larq_dir), Path(out_dir)
    onnx_path = larq_dir / "model.onnx"
    if not onnx_path.is_file():
        raise LarqInputError(f"{onnx_path}: missing; run the Larq export (larq_models export) first")
    test = _load_npz(larq_dir / "test_logits.npz", ("y_true", "logits"))
    golden = _load_npz(larq_dir / "golden.npz", ("x", "labels", "logits", "indices"))
    data = _load_npz(Path(dataset_npz), ("x_test", "y_test"))
    x_test, y_test = data["x_test"], data["y_test"]
    if test_subset is not None:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    if not np.array_equal(test["y_true"], y_test.astype(np.int64)):
        raise LarqInputError(f"{larq_dir / 'test_logits.npz'}: its labels are not the first {len(y_test)} test labels "
                             f"of {dataset_npz}; the Larq export ran on another data set or subset")
    if not np.array_equal(golden["logits"], test["logits"][golden["indices"]]):
        raise LarqInputError(f"{larq_dir / 'golden.npz'}: its logits are not Larq's test logits at its indices")
    try:
        wrapper = cleanup_model(ModelWrapper(str(onnx_path)))
    except Exception as err:  # noqa: BLE001 - onnx / qonnx raise many kinds for a bad graph
        raise LarqInputError(f"{onnx_path}: qonnx cannot load it ({type(err).__name__}: {err})") from err
    in_name, out_name = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    shape = tuple(wrapper.get_tensor_shape(in_name))
    x = to_model_input(x_test, shape[1:])  # uint8 (N, C, H, W), as golden.npz and every other stage
    if not np.array_equal(golden["x"], x[golden["indices"]]):
        raise LarqInputError(f"{larq_dir / 'golden.npz'}: its images are not the test images at its indices")
    # 1. the published graph itself, batch 1, on the golden images
    golden_qonnx = np.concatenate([execute_onnx(wrapper, {in_name: s[None].astype(np.float32)})[out_name]
                                   for s in golden["x"]]).astype(np.float32)
    golden_result = compare(golden["logits"], golden_qonnx, atol)
    # 2. the same graph with a batch dimension, on every test image (qonnx runs node by node: batch 1 is ~10 img/s)
    batched = with_batch(wrapper, PROOF_BATCH)
    outputs = []
    with tqdm(total=len(x), desc=f"qonnx vs Larq {larq_dir.parent.name}", unit="img", mininterval=10.0) as bar:
        for lo in range(0, len(x), PROOF_BATCH):
            chunk = x[lo: lo + PROOF_BATCH].astype(np.float32)
            padded = np.concatenate([chunk, np.zeros((PROOF_BATCH - len(chunk), *chunk.shape[1:]), np.float32)])
            outputs.append(execute_onnx(batched, {in_name: padded})[out_name][: len(chunk)])
            bar.update(len(chunk))
    qonnx_logits = np.concatenate(outputs).astype(np.float32)
    result = compare(test["logits"], qonnx_logits, atol)
    result["golden_batch1"] = golden_result
    result["passed"] = result["passed"] and golden_result["passed"]
    labels = y_test.astype(np.int64)
    result.update({
        "model": larq_dir.parent.name,
        "framework": "larq",
        "larq_top1_accuracy": float(np.mean(test["logits"].argmax(1) == labels)),
        "qonnx_top1_accuracy": float(np.mean(qonnx_logits.argmax(1) == labels)),
        "samples": int(len(golden["indices"])),  # golden images (batch 1), as the Brevitas roundtrip.json counts them
        "test_batch": PROOF_BATCH,
        "seconds": round(time.perf_counter() - t0, 3),
    })
    print(json.dumps(result, indent=2), flush=True)
    if not result["passed"]:
        raise LarqMismatchError(
            f"{onnx_path}: qonnx's execution differs from Larq on {len(result['mismatched_indices'])}+ of "
            f"{result['images']} test images (top-1 identical on {result['top1_identical']}, max |diff| "
            f"{result['max_abs_diff']:.3g}, atol {atol}); nothing was written")
    out_dir.mkdir(parents=True, exist_ok=True)
    import onnx

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".stage_") as tmp:
        tmp = Path(tmp)
        onnx.save(wrapper.model, str(tmp / "model.onnx"))
        np.savez(tmp / "golden.npz", x=golden["x"], labels=golden["labels"], logits=golden["logits"],
                 indices=golden["indices"])
        (tmp / "roundtrip.json").write_text(json.dumps(result, indent=2) + "\n")
        for name in ("model.onnx", "golden.npz", "roundtrip.json"):
            os.replace(tmp / name, out_dir / name)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_builds.larq_proof", description=__doc__.splitlines()[0])
    p.add_argument("--larq-dir", required=True, help="results/<model>/larq (the Larq world's export)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", required=True, help="results/<model>/export")
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--test-subset", default="null")
    args = p.parse_args(argv)
    subset = None if args.test_subset in ("null", "None", "") else int(args.test_subset)
    try:
        prove_larq_export(args.larq_dir, args.dataset, args.out_dir, args.atol, subset)
    except LarqProofError as err:
        print(f"larq_proof: {err}", file=sys.stderr)
        return 1 if isinstance(err, LarqMismatchError) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
