"""QONNX export of a trained BNN as ONE self-contained .onnx file that finn-plus accepts.

Why the TorchScript exporter (``dynamo=False``): on torch >= 2.9 Brevitas otherwise goes through the
dynamo exporter, which writes an external ``.onnx.data`` file next to the model and takes ~20x longer;
the TorchScript path writes one file with MatMul nodes, the form FINN's bnn_pynq flow was built on.
The exported graph is then tidied with qonnx's ``cleanup_model`` (shape inference, unique names,
constant folding of everything but the quantizers) and written atomically (host.atomic: a temp file, then a rename).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from host.atomic import atomic_path

INPUT_NAME = "global_in"
OUTPUT_NAME = "global_out"


def export_qonnx(model: nn.Module, onnx_path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """Export ``model`` (eval mode is set here) for a fixed input shape such as (1, 1, 28, 28).

    The model keeps its training flag afterwards. Returns the path written. The file holds every
    initializer inline (no external data) so it can be copied around as the one artefact of the stage.
    """
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".export_") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
            brevitas_export_qonnx(
                model,
                torch.zeros(input_shape, dtype=torch.float32),
                str(raw),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
            )
        model.train(was_training)
        wrapper = cleanup_model(ModelWrapper(str(raw)))
        for tensor in wrapper.model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise RuntimeError(f"export of {onnx_path} produced external data for {tensor.name!r}")
        with atomic_path(onnx_path, keep_suffix=True) as staged:
            onnx.save(wrapper.model, str(staged))
    return onnx_path


def execute_qonnx(onnx_path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run qonnx's own executor on a batch, one sample at a time (the graph has batch size 1).

    x: float32 (N, C, H, W) raw pixels -> float32 (N, 10). This is the second, independent path that
    the export stage compares with the Brevitas forward.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(str(onnx_path))
    in_name = wrapper.graph.input[0].name
    out_name = wrapper.graph.output[0].name
    want = tuple(wrapper.get_tensor_shape(in_name))
    x = np.asarray(x, dtype=np.float32)
    if tuple(x.shape[1:]) != want[1:]:
        raise ValueError(f"{onnx_path}: input shape {x.shape[1:]} does not match the model's {want[1:]}")
    outputs = [execute_onnx(wrapper, {in_name: sample[None]})[out_name] for sample in x]
    return np.concatenate(outputs, axis=0).astype(np.float32)
