"""A small numpy interpreter of the QONNX subset larq_models.convert writes: a second, independent path to
Keras / Larq for the Larq world's tests (qonnx itself needs numpy 2 and runs in the main world's proof).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _conv(x: np.ndarray, w: np.ndarray, strides) -> np.ndarray:
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    sh, sw = strides
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i: i + sh * oh: sh, j: j + sw * ow: sw]  # (n, c, oh, ow)
            out += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    return out


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Execute the graph on x (float, the graph's input shape) in float64; returns the graph output."""
    env = {init.name: numpy_helper.to_array(init).astype(np.float64) for init in model.graph.initializer}
    env[model.graph.input[0].name] = x.astype(np.float64)
    for node in model.graph.node:
        a = [env[i] for i in node.input]
        attrs = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        op = node.op_type
        if op == "Mul":
            y = a[0] * a[1]
        elif op == "Add":
            y = a[0] + a[1]
        elif op == "Sub":
            y = a[0] - a[1]
        elif op == "Div":
            y = a[0] / a[1]
        elif op == "BipolarQuant":
            y = np.where(a[0] >= 0, 1.0, -1.0) * a[1]
        elif op == "Quant":
            scale, zp, bits = a[1], a[2], int(a[3])
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if attrs["signed"] else (0, 2**bits - 1)
            y = (np.clip(np.round(a[0] / scale + zp), lo, hi) - zp) * scale
        elif op == "MatMul":
            y = a[0] @ a[1]
        elif op == "Conv":
            y = _conv(a[0], a[1], attrs["strides"])
        elif op == "BatchNormalization":
            shape = (1, -1) + (1,) * (a[0].ndim - 2)
            g, b, m, v = (p.reshape(shape) for p in a[1:5])
            y = (a[0] - m) / np.sqrt(v + attrs["epsilon"]) * g + b
        elif op == "MaxPool":
            (kh, kw), (sh, sw) = attrs["kernel_shape"], attrs["strides"]
            n, c, h, w = a[0].shape
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
            y = np.full((n, c, oh, ow), -np.inf)
            for i in range(kh):
                for j in range(kw):
                    y = np.maximum(y, a[0][:, :, i: i + sh * oh: sh, j: j + sw * ow: sw])
        elif op == "Reshape":
            y = a[0].reshape(a[1].astype(np.int64))
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = y
    return env[model.graph.output[0].name]
