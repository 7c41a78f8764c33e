"""Weight export: the FINN HW model of a w1a1/w1a2/w2a2 MLP or CNV -> ``xnor_model.npz`` for host/xnor.py.

The weights and thresholds are taken from FINN's own HW-layer graph, the model's front end
(``hw_builds.frontend``: ``step_streamline``, ``step_convert_to_hw`` and bnnflow's steps among them,
the same graph every per-board build starts from), not from the PyTorch model: the reference must
compute what the accelerator computes, including FINN's folding of batch norm, the pixel scaling and
the sign quantizer into integer thresholds. No FINN step runs here.

What is read, node by node, in graph order:

- ``Thresholding`` on the raw pixels (FINN: out = #{t : x >= t} + ActVal): thresholds -> int32.
- ``MVAU`` with ``binaryXnorMode=1`` (FINN: acc = XnorPopcountMatMul(x, W), then MultiThreshold on
  acc for hidden layers): weights (MW, MH) in {0, 1} -> packed rows, thresholds -> int32.
- ``MVAU`` with ``binaryXnorMode=0`` and BIPOLAR weights on a multi-bit input (w1a2: Thresholding /
  MVAU output INT2 with T=2 thresholds and ActVal -1): weights (MW, MH) in {-1, +1} -> packed rows
  (bit 1 = +1), the input's code width and ActVal -> ``act_bits`` / ``act_bias`` of the layer; the
  accumulator is the signed dot product, its thresholds are clipped to [-K*max|a|, K*max|a| + 1].
- ``MVAU`` with ``binaryXnorMode=0`` and INT2 (or TERNARY) weights in {-1, 0, +1} on a multi-bit
  input (w2a2: Brevitas' narrow-range 2-bit weights, scale 1): the same bit-plane layer with ternary
  weights, a +1 mask and a -1 mask (``weight_bits`` 2); any other weight value is refused.
- CNV: the leading ``Transpose`` (NCHW -> NHWC, the reference transposes the pixels the same way);
  ``ConvolutionInputGenerator`` (depthwise=0) before an MVAU -> that layer's conv geometry (kernel,
  stride, input H/W/C; the MVAU's weight rows are FINN's im2col window order); a depthwise
  ``ConvolutionInputGenerator`` + ``Pool`` (MaxPool), or a ``StreamingMaxPool``, after a layer -> its
  ``pool``. The first conv layer reads CNV's 8-bit input (INT8, 255 thresholds, ActVal -128) with
  bipolar weights: a bit-plane layer with 8-bit codes.
- The trailing ``ElementwiseMul`` / ``ElementwiseAdd`` (or ONNX ``Mul`` / ``Add``) with constant
  operands -> output_mul, output_add. A ``LabelSelect``/``TopK`` after them is an argmax and ignored.

Inputs and accumulators are integers, so ``x >= t`` is the same as ``x >= ceil(t)``: thresholds are
stored as ``ceil(t)`` clipped to the reachable range ([0, 256] for pixels, [0, K + 1] for a
popcount of K bits), which keeps the comparison exact without floats on the board.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from host.atomic import write_json_atomic
from host.refusal import RefusedInput
from host.xnor_format import (ConvGeometry, PoolGeometry, XnorFormatError, XnorLayer, XnorModel, load_xnor_model,
                              save_xnor_model, validate_model)


class XnorExportError(RefusedInput):
    """The FINN graph is not a w1a1/w1a2/w2a2 MLP or CNV the reference understands; the message names the node."""


def _ceil_thresholds(thr: np.ndarray, lo: int, hi: int, where: str) -> np.ndarray:
    """float thresholds -> int32 ceil, clipped to [lo, hi]; exact for integer inputs in [lo, hi-1]."""
    thr = np.asarray(thr, dtype=np.float64)
    if np.isnan(thr).any():
        raise XnorExportError(f"{where}: NaN threshold")
    return np.clip(np.ceil(thr), lo, hi).astype(np.int32)


def _const(model, name: str, where: str) -> np.ndarray:
    value = model.get_initializer(name)
    if value is None:
        raise XnorExportError(f"{where}: input {name!r} is not a constant initializer")
    return np.asarray(value)


def _act_spec(inst, thr: np.ndarray, where: str) -> tuple[int, int]:
    """(act_bits, act_bias) of the activation a Thresholding / MVAU with thresholds ``thr`` (C, T) outputs.

    BINARY with one threshold: the 1-bit code of an XNOR layer. A (signed) integer type: the threshold
    count c in [0, T], value c + ActVal (FINN's MultiThreshold out_bias), read as ceil(log2(T+1)) bits.
    """
    dtype, bias, t = inst.get_nodeattr("outputDataType"), int(inst.get_nodeattr("ActVal")), int(thr.shape[1])
    if dtype == "BINARY" and bias == 0:
        if t != 1:
            raise XnorExportError(f"{where}: BINARY output with {t} thresholds per channel, expected 1")
        return 1, 0
    if not dtype.startswith(("INT", "UINT")) or t < 2 or t.bit_length() > 8:
        raise XnorExportError(f"{where}: output {dtype} with {t} thresholds is not a BINARY (a1) or "
                              f"multi-bit integer (a2) activation the reference supports")
    return t.bit_length(), bias


def _weight_masks(inst, w: np.ndarray, in_bits: int, where: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    """An MVAU's weight matrix (MW, MH) -> (+1 mask, -1 mask or None, weight_bits) for the reference.

    binaryXnorMode=1 (w1a1): weights in {0, 1}, bit 1 = +1, on a 1-bit input. binaryXnorMode=0 on a
    multi-bit input: BIPOLAR weights {-1, +1} (w1a2) or INT2 / TERNARY weights {-1, 0, +1} (w2a2,
    Brevitas' 2-bit narrow range with scale 1), read into a +1 and a -1 mask.
    """
    wdt = inst.get_nodeattr("weightDataType")
    if inst.get_nodeattr("binaryXnorMode"):
        if in_bits != 1:
            raise XnorExportError(f"{where}: XNOR MVAU on a {in_bits}-bit input")
        if not np.isin(w, (0, 1)).all():
            raise XnorExportError(f"{where}: weights are not binary {{0, 1}}")
        return w.astype(bool), None, 1
    if in_bits == 1:
        raise XnorExportError(f"{where}: binaryXnorMode=0 MVAU on a 1-bit input; the reference supports "
                              f"XNOR-popcount (w1a1) and bit-plane (a2, CNV's 8-bit input) layers only")
    if wdt == "BIPOLAR":
        if not np.isin(w, (-1, 1)).all():
            raise XnorExportError(f"{where}: BIPOLAR weights outside {{-1, +1}}: {_sample_bad(w, (-1, 1))}")
        return w > 0, None, 1
    if wdt in ("INT2", "TERNARY"):
        if not np.isin(w, (-1, 0, 1)).all():  # INT2 also holds -2: not Brevitas' narrow range
            raise XnorExportError(f"{where}: {wdt} weights outside the ternary {{-1, 0, +1}}: "
                                  f"{_sample_bad(w, (-1, 0, 1))}; only narrow-range 2-bit weights are supported")
        return w > 0, w < 0, 2
    raise XnorExportError(f"{where}: weightDataType {wdt} is not supported; only 1-bit (w1a1/w1a2, "
                          f"BIPOLAR) and ternary 2-bit (w2a2, INT2 in {{-1, 0, +1}}) weights are")


def _sample_bad(w: np.ndarray, allowed: tuple[int, ...]) -> str:
    """The distinct offending values (at most 5), for an error message."""
    return "[" + ", ".join(f"{v:g}" for v in np.unique(w[~np.isin(w, allowed)])[:5]) + "]"


def extract_xnor_model(hw_model, input_shape: tuple[int, ...], meta: dict | None = None) -> XnorModel:
    """Read the Thresholding / MVAU / Mul / Add nodes of a FINN HW model into an :class:`XnorModel`."""
    from qonnx.custom_op.registry import getCustomOp

    input_thr = None
    layers: list[XnorLayer] = []
    mul = add = None
    act = None  # (bits, bias) of the activation the next MVAU reads
    window: ConvGeometry | None = None  # a ConvolutionInputGenerator waiting for its MVAU
    pool_window = None  # a depthwise ConvolutionInputGenerator waiting for its Pool
    for index, node in enumerate(hw_model.graph.node):
        op = node.op_type.removesuffix("_hls").removesuffix("_rtl")
        where = f"node {node.name} ({node.op_type})"
        if op in ("Reshape", "Flatten"):
            continue
        if op == "Transpose":
            perm = [int(v) for a in node.attribute if a.name == "perm" for v in a.ints]
            if index != 0 or perm != [0, 2, 3, 1]:
                raise XnorExportError(f"{where}: only the leading NCHW -> NHWC Transpose is supported (perm {perm})")
            continue
        if op == "ConvolutionInputGenerator":
            inst = getCustomOp(node)
            if list(inst.get_nodeattr("Dilation")) != [1, 1]:
                raise XnorExportError(f"{where}: dilation {inst.get_nodeattr('Dilation')} is not supported")
            geom = ConvGeometry(in_dim=_pair(inst.get_nodeattr("IFMDim")), in_channels=int(inst.get_nodeattr("IFMChannels")),
                                kernel=_pair(inst.get_nodeattr("ConvKernelDim")), stride=_pair(inst.get_nodeattr("Stride")))
            if inst.get_nodeattr("depthwise"):
                pool_window = geom  # the window of the Pool that follows
            else:
                window = geom
            continue
        if op in ("Pool", "StreamingMaxPool"):
            _attach_pool(node, layers, pool_window, where)
            pool_window = None
            continue
        if op in ("LabelSelect", "TopK"):
            continue  # argmax of the logits: the reference's predict() is the same
        if op == "Thresholding":
            inst = getCustomOp(node)
            if layers or input_thr is not None:
                raise XnorExportError(f"{where}: standalone thresholds between layers are not supported")
            thr = _const(hw_model, node.input[1], where)
            act = _act_spec(inst, thr, where)
            input_thr = _ceil_thresholds(thr, 0, 256, where)
        elif op == "MVAU":
            inst = getCustomOp(node)
            if mul is not None:
                raise XnorExportError(f"{where}: MVAU after the output Mul/Add")
            if act is None:
                raise XnorExportError(f"{where}: MVAU without a preceding activation")
            w = _const(hw_model, node.input[1], where)  # (MW, MH)
            if window is not None and window.window != w.shape[0]:
                raise XnorExportError(f"{where}: MW {w.shape[0]} does not match the preceding window {window}")
            bits, neg, weight_bits = _weight_masks(inst, w, act[0], where)
            k, m = w.shape
            packed = np.packbits(bits.T.astype(np.uint8), axis=1, bitorder="little")  # (MH, ceil(MW/8))
            if neg is not None:
                neg = np.packbits(neg.T.astype(np.uint8), axis=1, bitorder="little")
            thr = None
            in_bits, in_bias = act
            if inst.get_nodeattr("noActivation") == 0:
                t = _const(hw_model, node.input[2], where)
                if t.ndim != 2 or t.shape[0] not in (1, m):
                    raise XnorExportError(f"{where}: thresholds of shape {t.shape}, expected (MH or 1, T)")
                act = _act_spec(inst, t, where)
                if in_bits == 1:
                    thr = _ceil_thresholds(t, 0, k + 1, where)
                else:  # |acc| <= K * max|value|
                    amax = k * max(abs(in_bias), abs((1 << in_bits) - 1 + in_bias))
                    thr = _ceil_thresholds(t, -amax, amax + 1, where)
            layers.append(XnorLayer(int(k), int(m), packed, thr, act_bits=in_bits, act_bias=in_bias, conv=window,
                                    weight_bits=weight_bits, weights_neg=neg))
            window = None
        elif op in ("ElementwiseMul", "Mul", "ElementwiseAdd", "Add"):
            if not layers:
                raise XnorExportError(f"{where}: arithmetic before the first MVAU was not streamlined away")
            operand = _const(hw_model, node.input[1], where).astype(np.float64)
            m_last = layers[-1].out_features
            operand = np.broadcast_to(operand.reshape(-1), (m_last,)) if operand.size in (1, m_last) else None
            if operand is None:
                raise XnorExportError(f"{where}: constant must be scalar or per-class")
            if mul is None:
                mul, add = np.ones(m_last), np.zeros(m_last)
            if op.endswith("Mul"):
                mul, add = mul * operand, add * operand
            else:
                add = add + operand
        else:
            raise XnorExportError(f"{where}: node type not supported by the XNOR reference "
                                  f"(w1a1/w1a2/w2a2 MLPs and CNV)")
    if input_thr is None:
        raise XnorExportError("no input Thresholding node found (expected FINN's binarisation of the pixels)")
    if not layers:
        raise XnorExportError("no MVAU node found")
    if window is not None or pool_window is not None:
        raise XnorExportError("a ConvolutionInputGenerator at the end of the graph has no MVAU / Pool after it")
    if mul is None:
        mul, add = np.ones(layers[-1].out_features), np.zeros(layers[-1].out_features)
    model = XnorModel(
        input_thresholds=input_thr,
        layers=layers,
        output_mul=mul.astype(np.float32),
        output_add=add.astype(np.float32),
        input_shape=tuple(int(d) for d in input_shape),
        meta=dict(meta or {}),
    )
    try:
        validate_model(model)
    except XnorFormatError as err:
        raise XnorExportError(f"the FINN graph does not chain into a valid XNOR model: {err}") from err
    return model


def _pair(values) -> tuple[int, int]:
    values = [int(v) for v in values]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _attach_pool(node, layers: list[XnorLayer], pool_window: ConvGeometry | None, where: str) -> None:
    """A max pool (Pool after a depthwise window, or StreamingMaxPool) -> ``pool`` of the last layer."""
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    if node.op_type.startswith("Pool"):
        if inst.get_nodeattr("Function") != "MaxPool" or pool_window is None:
            raise XnorExportError(f"{where}: only MaxPool after a depthwise ConvolutionInputGenerator is supported")
        pool = PoolGeometry(kernel=_pair(inst.get_nodeattr("KernelSize")), stride=pool_window.stride)
        if pool.kernel != pool_window.kernel:
            raise XnorExportError(f"{where}: pool kernel {pool.kernel} differs from its window {pool_window.kernel}")
    else:  # StreamingMaxPool: kernel = stride = PoolDim
        kernel = _pair(inst.get_nodeattr("PoolDim"))
        pool = PoolGeometry(kernel=kernel, stride=kernel)
    if not layers or layers[-1].conv is None or layers[-1].thresholds is None or layers[-1].pool is not None:
        raise XnorExportError(f"{where}: max pooling must follow a hidden conv layer's activations")
    if pool_window is not None and pool_window.in_dim != layers[-1].conv.out_dim:
        raise XnorExportError(f"{where}: pools a {pool_window.in_dim} map, the layer before outputs {layers[-1].conv.out_dim}")
    layers[-1].pool = pool


def export_xnor(frontend_dir: str | Path, out_npz: str | Path, model_name: str,
                summary_json: str | Path | None = None) -> dict:
    """The export_xnor stage: read the front end's HW graph, extract, write the npz.

    Writes ``out_npz`` (format in host/xnor_format.py) and ``summary_json`` (sizes, layer shapes);
    returns that summary. Raises FrontendError for a missing or altered front end and
    XnorExportError for a graph the reference does not understand (the node is named).
    """
    from hw_builds.execute import load_model
    from hw_builds.frontend import load_frontend

    record, hw_path = load_frontend(frontend_dir)
    hw = load_model(hw_path)
    in_shape = hw.get_tensor_shape(hw.graph.input[0].name)  # (1, C, H, W)
    xnor = extract_xnor_model(
        hw, input_shape=tuple(in_shape[1:]),
        meta={"model": model_name, "source": record["source"], "finn_steps": record["steps"],
              "frontend": str(hw_path)},
    )
    manifest = save_xnor_model(xnor, out_npz)
    load_xnor_model(out_npz)  # read back: the file on disk passes its own checks
    summary = {
        "model": model_name,
        "xnor_model": str(out_npz),
        "format_version": manifest["format_version"],
        "layers": manifest["layers"],
        **manifest["sizes"],
        "npz_file_bytes": os.path.getsize(out_npz),
    }
    if summary_json is not None:
        write_json_atomic(summary_json, summary, sort_keys=True)
    return summary
