"""Import a model made elsewhere (config ``imports:``): a checked QONNX or FINN-ONNX graph, not trained.

The file is read, its format detected (QONNX: Quant / BipolarQuant nodes; FINN-ONNX: MultiThreshold /
XnorPopcountMatMul nodes or integer tensor annotations), tidied as the Brevitas export tidies its own
(qonnx's ``cleanup_model``: shape and datatype inference, constant folding, unique names) and checked before
any long stage runs:

- one graph input (the pixels), of the declared shape (1, C, H, W), which the data set's images must feed;
- one output (1, classes), classes = the data set's (a classification output);
- the declared pixel mapping ``x = p * scale + bias`` (how raw uint8 pixels p become the model's input) is
  put in front of the graph as a Mul and an Add, so the graph takes raw pixels as the trained models do;
- the whole graph inside bnnflow's exact definition (hw_builds/exact_function.py: quantized weights and
  activations, batch norm before each activation quantizer, unpadded convs, max pools on quantized maps,
  a positive output affine), which is what FINN streamlines into integer HW layers and the XNOR reference
  computes; the first node outside it is named with the reason.

A FINN-ONNX graph (what FINN's ConvertQONNXtoFINN writes: integer-annotated weights, MultiThreshold activations)
is read into the same exact definition (hw_builds.exact_function.exact_network) and then goes the same way:
FINN's step_qonnx_to_finn leaves it as it is, and streamlining starts from it.

Then qonnx executes the graph on the declared data: the golden sample (``golden.npz``) and every (subset)
test image (``test_logits.npz``: the reference the XNOR verification compares with, as a Larq model's is).
Everything goes to a temp folder and is renamed into place only when every check passed.

Exit status of ``python -m hw_builds.model_import``: 0 done, 2 refused (ImportRefusedError: the message
names the file, and the node where one is at fault).
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

from host.refusal import RefusedInput, exit_on_refusal

QONNX_QUANT_OPS = ("Quant", "BipolarQuant", "BinaryQuant", "Trunc", "IntQuant")
FINN_ONNX_OPS = ("MultiThreshold", "XnorPopcountMatMul")
EXEC_BATCH = 100  # images per qonnx execution of the test set (the larq proof's PROOF_BATCH)


class ImportRefusedError(RefusedInput):
    """The imported file cannot be taken (the message names the file, the node and why): exit 2."""


def detect_format(model) -> str:
    """"qonnx" or "finn-onnx" for a qonnx ModelWrapper; ImportRefusedError for a graph with no quantization."""
    ops = {n.op_type for n in model.graph.node}
    floating = next((n for n in model.graph.node if n.op_type == "FloatQuant"), None)
    if floating is not None:
        raise ImportRefusedError(f"node {floating.name} (FloatQuant): a floating-point (minifloat) quantizer; FINN's "
                                 "integer HW layers and the XNOR reference take integer / bipolar quantizers only")
    if ops & set(FINN_ONNX_OPS) or any(
            model.get_tensor_datatype(t.name).name not in ("FLOAT32",) for t in model.graph.input):
        return "finn-onnx"
    if ops & set(QONNX_QUANT_OPS):
        return "qonnx"
    raise ImportRefusedError("no quantizer (QONNX Quant / BipolarQuant) and no FINN-ONNX MultiThreshold: a float "
                             "model, which FINN would leave as float layers")


def _load(path: Path):
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    if not path.is_file():
        raise ImportRefusedError(f"{path}: file not found (imports: declares it)")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as err:  # noqa: BLE001 - protobuf, checker and OS errors all mean: not a model we can read
        raise ImportRefusedError(f"{path}: not a readable ONNX model ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from err
    try:
        return ModelWrapper(proto)
    except Exception as err:  # noqa: BLE001 - qonnx asserts on graphs it cannot wrap (a tensor declared twice)
        raise ImportRefusedError(f"{path}: qonnx cannot read the model ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from err


def _prepend_pixel_mapping(model, scale: float, bias: float):
    """Put x = p * scale + bias (float32 constants) in front of the graph: its input becomes raw pixels p."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType

    graph = model.graph
    inp = graph.input[0].name
    scaled, mapped = f"{inp}_pixels_scaled", f"{inp}_pixels_mapped"
    for node in graph.node:
        node.input[:] = [mapped if name == inp else name for name in node.input]
    model.set_initializer("import_pixel_scale", np.asarray(scale, dtype=np.float32))
    model.set_initializer("import_pixel_bias", np.asarray(bias, dtype=np.float32))
    nodes = [helper.make_node("Mul", [inp, "import_pixel_scale"], [scaled], name="ImportPixelScale"),
             helper.make_node("Add", [scaled, "import_pixel_bias"], [mapped], name="ImportPixelBias")]
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)
    graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    model.set_tensor_datatype(inp, DataType["FLOAT32"])  # raw pixels now; a FINN-ONNX annotation was the mapped input's
    return model


def check_import(path: str | Path, input_shape: list[int], scale: float, bias: float, classes: int):
    """Load, detect, tidy and check an imported model; return (qonnx ModelWrapper taking raw pixels, format).

    ``input_shape``: the declared (C, H, W); ``scale``, ``bias``: the declared pixel mapping; ``classes``:
    the data set's class count. Raises ImportRefusedError (file, node, reason) for: an unreadable or truncated
    file, a float model, a second graph input, an input of another shape, an output that is not (1, classes),
    any node outside the exact definition (for FINN-ONNX: a multi-bit MultiThreshold, a nonzero threshold after
    a float batch norm, float weights; hw_builds/exact_function.py).
    """
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    from hw_builds.admission import admit_qonnx
    from hw_builds.custom_steps import UnsupportedModelError

    path = Path(path)
    model = _load(path)
    inputs = [i.name for i in model.graph.input if model.get_initializer(i.name) is None]
    if len(inputs) != 1:
        raise ImportRefusedError(f"{path}: graph inputs {inputs}: one graph input (the image) is required; "
                                 f"a second input {inputs[1:]} has no data to come from" if inputs else
                                 f"{path}: the graph has no input")
    if len(model.graph.output) != 1:
        raise ImportRefusedError(f"{path}: graph outputs {[o.name for o in model.graph.output]}: one output "
                                 "(the class scores) is required")
    try:
        fmt = detect_format(model)
    except ImportRefusedError as err:
        raise ImportRefusedError(f"{path}: {err}") from None
    try:
        model = cleanup_model(model)
        model = model.transform(InferShapes()).transform(InferDataTypes())
    except Exception as err:  # noqa: BLE001 - qonnx raises many types for graphs it cannot infer
        raise ImportRefusedError(f"{path}: qonnx clean-up / shape inference failed ({type(err).__name__}: {err})") from err
    in_shape = tuple(model.get_tensor_shape(model.graph.input[0].name) or ())
    if in_shape != (1, *input_shape):
        raise ImportRefusedError(f"{path}: graph input {model.graph.input[0].name!r} has shape {list(in_shape)}, "
                                 f"the declared input is {[1, *input_shape]} (imports: input_shape)")
    out_shape = tuple(model.get_tensor_shape(model.graph.output[0].name) or ())
    if out_shape != (1, classes):
        raise ImportRefusedError(f"{path}: graph output {model.graph.output[0].name!r} has shape {list(out_shape)}, "
                                 f"not (1, {classes}): not a classification output over the data set's {classes} classes")
    model = _prepend_pixel_mapping(model, scale, bias)
    model = model.transform(InferShapes()).transform(InferDataTypes())
    try:  # the front end's own admission (hw_builds/admission.py): ONNX defaults written out, exact definition
        model = admit_qonnx(model, path)
    except UnsupportedModelError as err:
        raise ImportRefusedError(f"{err} (FINN would not streamline it into integer HW layers that the XNOR "
                                 "reference computes)") from err
    return model, fmt


def qonnx_logits(model, x: np.ndarray, desc: str, batch: int = 1) -> np.ndarray:
    """qonnx's executor on uint8 (N, C, H, W) raw pixels -> float32 (N, classes); ``batch`` > 1 runs a copy of
    the graph with that batch dimension (hw_builds.larq_proof.with_batch; qonnx runs node by node, so batch 1
    is slow), the last chunk padded with zeros."""
    from qonnx.core.onnx_exec import execute_onnx

    from hw_builds.larq_proof import with_batch

    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    graph = model if batch == 1 else with_batch(model, batch)
    out = []
    with tqdm(total=len(x), desc=desc, unit="img", mininterval=10.0) as bar:
        for lo in range(0, len(x), batch):
            chunk = x[lo: lo + batch].astype(np.float32)
            padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
            out.append(execute_onnx(graph, {in_name: padded})[out_name][: len(chunk)])
            bar.update(len(chunk))
    return np.concatenate(out, axis=0).astype(np.float32)


def _loss_accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (nats) and top-1 accuracy of float32 (N, classes) logits against int labels (N,)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(y)), y])), float(np.mean(logits.argmax(1) == y))


def _check_exact_function(model, x: np.ndarray, logits: np.ndarray, indices: np.ndarray, path: Path) -> None:
    """The exact function read from the graph (hw_builds/exact_function.py) against qonnx's execution of it on the
    golden images ``x`` (uint8 (N, C, H, W), test-set ``indices``; ``logits`` float32 (N, classes)): the same top-1
    on every image that is not a float tie. Raises ImportRefusedError naming the file and the first image that
    differs: the graph then computes something the reader did not see, and the chain would fail later."""
    from hw_builds.exact_function import exact_forward, exact_network, near_boundary_images

    net = exact_network(model)
    exact = exact_forward(net, x)["I_last"].reshape(len(x), -1).argmax(1)
    differ = np.flatnonzero((exact != logits.argmax(1)) & ~near_boundary_images(net, x))
    if len(differ):
        i = int(differ[0])
        raise ImportRefusedError(f"{path}: the exact function read from the graph and qonnx's execution of it give "
                                 f"another top-1 on {len(differ)} of {len(x)} golden images (first: test image "
                                 f"{int(indices[i])}, class {int(exact[i])} vs {int(logits[i].argmax())}): the graph "
                                 f"computes something outside the exact definition")


def import_model(onnx_path: str | Path, dataset_npz: str | Path, out_dir: str | Path, metrics_dir: str | Path,
                 declared: dict[str, Any], classes: int, n_golden: int = 100, seed: int = 0,
                 test_subset: int | None = None, train_subset: int | None = None, val_size: int = 0,
                 split_seed: int = 0) -> dict[str, Any]:
    """Check and import ``onnx_path``; write ``out_dir``/{model.onnx, golden.npz, roundtrip.json, test_logits.npz}
    and ``metrics_dir``/{metrics.json, history.csv} (the report's per-model contract: one row, epoch 0, the
    imported model's loss and accuracy on the training split and on the validation split that training would
    hold out: ``val_size`` images chosen by ``split_seed`` as models.train.make_splits does).

    ``declared``: the config entry (input_shape, pixel_scale, pixel_bias). Raises ImportRefusedError (see
    check_import; also when the data set's images cannot feed the declared input). Nothing is written unless
    every check passed.
    """
    import onnx

    from host.atomic import write_json_atomic
    from host.inputs import to_model_input
    from models.datasets import DataError, load_npz
    from models.export_stage import golden_sample

    t0 = time.perf_counter()
    onnx_path, out_dir, metrics_dir = Path(onnx_path), Path(out_dir), Path(metrics_dir)
    shape = [int(d) for d in declared["input_shape"]]
    model, fmt = check_import(onnx_path, shape, float(declared["pixel_scale"]), float(declared["pixel_bias"]), classes)
    try:
        data = load_npz(dataset_npz, train_subset=0, test_subset=test_subset)
    except DataError as err:
        raise ImportRefusedError(str(err)) from err
    try:
        x = to_model_input(data["x_test"], tuple(shape))
    except ValueError as err:
        raise ImportRefusedError(f"{onnx_path}: declared input {shape} and data set {dataset_npz}: {err}") from err
    try:
        train = load_npz(dataset_npz, train_subset=train_subset, test_subset=0)
    except DataError as err:
        raise ImportRefusedError(str(err)) from err
    y = data["y_test"].astype(np.int64)
    indices = golden_sample(len(x), n_golden, seed)
    # the golden images through the published graph itself (batch 1), every test image through its batched copy;
    # the two must agree exactly where they overlap, else the batched copy is not trusted and batch 1 runs all
    golden = qonnx_logits(model, x[indices], f"qonnx {onnx_path.name} (golden, batch 1)")
    _check_exact_function(model, x[indices], golden, indices, onnx_path)
    logits = qonnx_logits(model, x, f"qonnx {onnx_path.name} (test set)", batch=EXEC_BATCH)
    batched_exact = bool(np.array_equal(logits[indices], golden))
    if not batched_exact:
        logits = qonnx_logits(model, x, f"qonnx {onnx_path.name} (test set, batch 1)")
    accuracy = float(np.mean(logits.argmax(1) == y))
    train_logits = qonnx_logits(model, to_model_input(train["x_train"], tuple(shape)), f"qonnx {onnx_path.name} (train)",
                                batch=EXEC_BATCH)
    y_train = train["y_train"].astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(y_train))
    val_idx, train_idx = order[:min(val_size, len(order))], order[min(val_size, len(order)):]
    history = {"epoch": 0}
    for split, idx in (("train", train_idx), ("val", val_idx)):
        loss, acc = _loss_accuracy(train_logits[idx], y_train[idx]) if len(idx) else (float("nan"), float("nan"))
        history |= {f"{split}_loss": loss, f"{split}_accuracy": acc}
    result = {
        "model": out_dir.parent.name, "source": str(onnx_path), "format": fmt, "framework": "import",
        "input_shape": shape, "pixel_scale": float(declared["pixel_scale"]), "pixel_bias": float(declared["pixel_bias"]),
        "classes": classes, "images": int(len(x)), "qonnx_top1_accuracy": accuracy, "samples": int(len(indices)),
        "batched_execution_equal_to_batch_1": batched_exact,
        "passed": True, "seconds": round(time.perf_counter() - t0, 3),
    }
    metrics = {"model": result["model"], "framework": "import", "format": fmt, "source": str(onnx_path),
               "dataset": Path(dataset_npz).stem, "num_classes": classes, "test_accuracy": accuracy,
               "n_test": int(len(x)), "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "epochs": 0,
               "val_accuracy": history["val_accuracy"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".stage_") as tmp:
        tmp = Path(tmp)
        onnx.save(model.model, str(tmp / "model.onnx"))
        np.savez(tmp / "golden.npz", x=x[indices], labels=y[indices], logits=logits[indices], indices=indices)
        np.savez(tmp / "test_logits.npz", y_true=y, y_pred=logits.argmax(1).astype(np.int64), logits=logits,
                 source=np.array(f"qonnx execution of the imported {fmt} graph"), framework=np.array("import"))
        (tmp / "roundtrip.json").write_text(json.dumps(result, indent=2) + "\n")
        (tmp / "history.csv").write_text(",".join(history) + "\n" + ",".join(str(v) for v in history.values()) + "\n")
        for name in ("model.onnx", "golden.npz", "test_logits.npz", "roundtrip.json"):
            os.replace(tmp / name, out_dir / name)
        os.replace(tmp / "history.csv", metrics_dir / "history.csv")
    write_json_atomic(metrics_dir / "metrics.json", metrics)
    print(json.dumps(result, indent=2), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_builds.model_import", description=__doc__.splitlines()[0])
    p.add_argument("--model-file", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", required=True, help="results/<model>/export")
    p.add_argument("--metrics-dir", required=True, help="results/<model>/train (the report's per-model files)")
    p.add_argument("--declared", required=True, help="the imports: entry as JSON")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--golden-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-subset", default="null")
    p.add_argument("--train-subset", default="null")
    p.add_argument("--val-size", type=int, default=0, help="train.val_size: the validation split of history.csv")
    p.add_argument("--split-seed", type=int, default=0, help="train.seed: the validation split's seed")
    args = p.parse_args(argv)
    subset = None if args.test_subset in ("null", "None", "") else int(args.test_subset)
    train_subset = None if args.train_subset in ("null", "None", "") else int(args.train_subset)
    with exit_on_refusal("model_import"):  # a refused input: one line on stderr, exit status 2
        import_model(args.model_file, args.dataset, args.out_dir, args.metrics_dir, json.loads(args.declared),
                     args.classes, args.golden_samples, args.seed, subset, train_subset, args.val_size, args.split_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
