"""Run a FINN model (any build stage, the folded HW model included) on uint8 pixels in Python.

FINN's python execution is the reference semantics of every HW layer, and the one execution mode
that needs no Xilinx tools. Two things stand in its way after ``step_specialize_layers``: the
``*_hls`` / ``*_rtl`` variants refuse ``exec_mode="python"``, and a dataflow parent points at
child files that hold exactly such nodes. Renaming each variant back to its base op type (domain
``finn.custom_op.fpgadataflow``) keeps every attribute, weight and threshold and selects the
base class's python ``execute_node``; nothing is approximated. The XNOR-reference and emulation
stages use :func:`run_finn_model` to run "the FINN HW model" on the same inputs as the board.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from host.refusal import InputFileError, MissingFileError, one_line
from hw_builds.finn_env import import_build_steps

HW_DOMAIN = "finn.custom_op.fpgadataflow"
VARIANT_SUFFIXES = ("_hls", "_rtl")


class FinnExecutionError(RuntimeError):
    """A FINN model could not be loaded or executed; the message names the file and the cause."""


class OnnxFileError(FinnExecutionError, InputFileError):
    """An ONNX file that is missing, truncated, empty or not a model (refused input: exit status 2)."""


class MissingOnnxFileError(OnnxFileError, MissingFileError):
    """An ONNX file that does not exist."""


def load_model(onnx_path: str | Path, hint: str = ""):
    """Load an ONNX file as a qonnx ModelWrapper: the one ONNX reader of every stage (FINN build, XNOR export).

    Raises :class:`OnnxFileError` naming the file for a missing file or directory, bytes that are not an
    ONNX protobuf (truncated, empty, another format), or a graph without nodes, inputs or outputs;
    ``hint`` (which rule makes the file) is added to the missing-file message.
    """
    import_build_steps()  # registers every FINN op (HW Reshape, say, is only imported there)
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(onnx_path)
    if not path.is_file():
        what = "is a directory, expected an ONNX file" if path.is_dir() else "no such ONNX file"
        raise MissingOnnxFileError(f"{path}: {what}{'; ' + hint if hint else ''}")
    if path.stat().st_size == 0:
        raise OnnxFileError(f"{path}: not a readable ONNX model (the file is empty)")
    try:
        model = ModelWrapper(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for corrupt files
        raise OnnxFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {one_line(exc, 300)})") from exc
    if len(model.graph.node) == 0:
        raise OnnxFileError(f"{path}: not a readable ONNX model (the graph has no nodes)")
    if len(model.graph.input) == 0 or len(model.graph.output) == 0:
        raise OnnxFileError(f"{path}: not a readable ONNX model (the graph has no input or no output)")
    return model


def python_executable(model):
    """A copy of ``model`` whose HLS/RTL layers are their base HW ops, run by their python code."""
    import_build_steps()
    from qonnx.custom_op.registry import getCustomOp

    model = copy.deepcopy(model)
    for node in model.graph.node:
        if node.domain.startswith(HW_DOMAIN):
            for suffix in VARIANT_SUFFIXES:
                if node.op_type.endswith(suffix):
                    node.op_type = node.op_type[: -len(suffix)]
                    node.domain = HW_DOMAIN
            # "" is the base ops' python reference execution ("cppsim"/"rtlsim" need Xilinx tools)
            getCustomOp(node).set_nodeattr("exec_mode", "")
    if any(model.get_tensor_shape(t) is None for n in model.graph.node for t in n.output):
        from qonnx.transformation.infer_shapes import InferShapes

        model = model.transform(InferShapes())  # a fresh QONNX export has no shapes annotated
    return model


@contextmanager
def unsanitized_execution() -> Iterator[None]:
    """Run qonnx/FINN execution without its "sanitizing" of integer-typed tensors.

    qonnx rounds near-integer values of every integer-typed tensor around every node, and takes a
    Python max over each weight tensor to do it: on LFC-w1a1 that is over 90 % of the run time (9.9 s
    against 0.7 s for 40 images, identical outputs). FINN's HW layers compute exact integers, so the
    values are taken as FINN computes them; the verification stages refuse any non-integer instead.
    """
    saved = os.environ.get("SANITIZE_QUANT_TENSORS")
    os.environ["SANITIZE_QUANT_TENSORS"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SANITIZE_QUANT_TENSORS", None)
        else:
            os.environ["SANITIZE_QUANT_TENSORS"] = saved


def _partition_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type == "StreamingDataflowPartition"]


def _executable_parent(parent, child, workdir: Path):
    """Point every dataflow partition of ``parent`` at a python-executable child saved in workdir.

    With ``child`` given (a single-partition build) it replaces the partition's model; otherwise
    each partition's own file is loaded, converted and saved next to the others.
    """
    from qonnx.custom_op.registry import getCustomOp

    parent = copy.deepcopy(parent)
    sdps = _partition_nodes(parent)
    if child is not None and len(sdps) != 1:
        raise FinnExecutionError(f"expected one dataflow partition to replace, found {len(sdps)}")
    for i, sdp in enumerate(sdps):
        inst = getCustomOp(sdp)
        sub = child if child is not None else load_model(inst.get_nodeattr("model"))
        if _partition_nodes(sub):
            raise FinnExecutionError("nested dataflow partitions are not supported")
        path = workdir / f"partition_{i}.onnx"
        python_executable(sub).save(str(path))
        inst.set_nodeattr("model", str(path))
    return parent


def _is_hw_graph(model) -> bool:
    return any(n.domain.startswith(HW_DOMAIN) or n.op_type == "StreamingDataflowPartition" for n in model.graph.node)


def _batched(model, n: int):
    """The graph with batch size n, or None where a layer's shape inference cannot take it.

    Graphs of standard / QONNX ops run the whole batch at once (about 30x faster than sample
    by sample); FINN's HW layers, and some of qonnx's (MaxPoolNHWC), assume batch 1.
    """
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    try:
        return model.transform(ChangeBatchSize(n)).transform(InferShapes())
    except Exception:  # shape inference of a batch-1-only op: run per sample instead
        return None


def execute_model(model, x_uint8: np.ndarray, parent=None, capture: str | None = None):
    """Execute ``model`` on uint8 pixels (N, ...); returns outputs (N, k), or (outputs, captured).

    ``capture`` names an inner tensor to return as well, (N, m). ``parent`` (the build's
    dataflow_parent model) is needed when ``model`` is a dataflow partition that does not span
    the whole network; the partition then runs inside it.
    """
    from finn.core.onnx_exec import execute_onnx

    x = np.asarray(x_uint8)
    if x.dtype != np.uint8 or x.ndim < 2:
        raise FinnExecutionError(f"inputs must be uint8 raw pixels (N, ...), got {x.dtype} {x.shape}")
    n = len(x)
    with tempfile.TemporaryDirectory(prefix="bnnflow_exec_") as tmp, unsanitized_execution():
        if parent is not None:
            runnable = _executable_parent(parent, model, Path(tmp))
        elif _partition_nodes(model):
            runnable = _executable_parent(model, None, Path(tmp))
        else:
            runnable = python_executable(model)
        in_name, out_name = runnable.graph.input[0].name, runnable.graph.output[0].name
        in_shape = tuple(runnable.get_tensor_shape(in_name))
        if x[0].size != int(np.prod(in_shape)):
            raise FinnExecutionError(f"inputs of shape {x.shape[1:]} do not fit the model's input {in_shape}")
        wanted = [out_name] + ([capture] if capture else [])
        batched = None if _is_hw_graph(runnable) else _batched(runnable, n)
        if batched is not None:
            batch_in = x.astype(np.float32).reshape((n,) + in_shape[1:])
            ctx = execute_onnx(batched, {in_name: batch_in}, return_full_exec_context=bool(capture))
            results = [np.asarray(ctx[t]).reshape(n, -1) for t in wanted]
        else:
            rows: list[list[np.ndarray]] = [[] for _ in wanted]
            for sample in x:
                feed = {in_name: sample.astype(np.float32).reshape(in_shape)}
                ctx = execute_onnx(runnable, feed, return_full_exec_context=bool(capture))
                for row, t in zip(rows, wanted):
                    row.append(np.asarray(ctx[t]).reshape(-1))
            results = [np.stack(row) for row in rows]
    return (results[0], results[1]) if capture else results[0]


def run_finn_model(onnx_path: str | Path, x_uint8: np.ndarray, parent_path: str | Path | None = None) -> np.ndarray:
    """Run a FINN ONNX file on uint8 pixels (N, C, H, W) in python mode; returns (N, outputs).

    For a bnnflow build, pass ``hw_builds/<model>/<board>/intermediate_models/
    step_generate_estimate_reports.onnx`` (the folded, bit-width-minimized HW model, i.e. the
    dataflow partition child that becomes the accelerator): it outputs the top-1 class index.
    ``parent_path`` is the build's ``intermediate_models/dataflow_parent.onnx``, needed only
    where summary.json says the partition does not span the whole network.
    """
    model = load_model(onnx_path)
    parent = load_model(parent_path) if parent_path is not None else None
    try:
        return execute_model(model, x_uint8, parent=parent)
    except FinnExecutionError:
        raise
    except Exception as exc:
        raise FinnExecutionError(f"{onnx_path}: FINN python execution failed ({type(exc).__name__}: {exc})") from exc
