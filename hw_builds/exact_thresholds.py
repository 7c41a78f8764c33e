"""Exact integer thresholds in FINN's graph: the hardware computes the network's exact function.

FINN folds batch norm and the activation quantizer into float32 thresholds and rounds them up
(RoundAndClipThresholds), so at a decision boundary float32 and a half-up rule decide, not the
network (a threshold of -10.0000196 on the dot product becomes an integer popcount threshold; a
2-bit value of exactly 0.5 rounds up). Here every threshold is replaced by the exact integer one of
hw_builds/exact_function.py, expressed on FINN's own accumulator:

* an XNOR layer (binaryXnorMode / XnorPopcountMatMul) accumulates popcount = (I_F + K) / 2 with
  I_F = sigma * I, sigma = -1 where streamlining negated the neuron's weights (negative gamma);
* a bit-plane layer (multi-bit input) accumulates I_F = sigma * I itself;
* ``I >= t`` (gamma > 0) needs sigma = +1, ``I <= t`` (gamma < 0) needs sigma = -1; a constant neuron
  (gamma = 0, or saturated over the reachable range) gets the always-on / always-off threshold of its
  own accumulator range with either sign.

Two steps, FINN-style ``(model, cfg) -> model``: :func:`step_record_exact_function` before
step_qonnx_to_finn (computes the definition from the QONNX graph, stores it in the model's
metadata, and restates constant neurons' batch norm so that streamlining keeps its usual graph
shape) and :func:`step_exact_thresholds` after step_convert_to_hw. The XNOR export calls
:func:`prepare_qonnx` and :func:`set_exact_thresholds` itself.
"""

from __future__ import annotations

import math

import numpy as np

from hw_builds.exact_function import META_PROP, ExactFunctionError, ExactNetwork, exact_network, row_hash
from host.refusal import RefusedInput


class ExactThresholdError(RefusedInput):
    """FINN's graph cannot carry the exact thresholds; the message names layer, neuron and cause."""


def _constant_neurons(layer) -> np.ndarray:
    """(M,) bool: neurons whose every step is always or never passed over the reachable I."""
    lo, hi = layer.i_range[:, 0:1], layer.i_range[:, 1:2]
    t = layer.thresholds
    up = layer.direction[:, None] > 0
    on = np.where(up, t <= lo, t >= hi)
    off = np.where(up, t > hi, t < lo)
    return np.all(on | off, axis=1)


def prepare_qonnx(model) -> tuple[object, ExactNetwork]:
    """Compute the exact network of a QONNX ModelWrapper, store it as metadata, restate constant neurons.

    A constant neuron (zero gamma, or saturated) has a batch norm that FINN's streamlining cannot
    always fold (zero gamma leaves a standalone Mul by zero, hence a standalone Thresholding or NaN
    thresholds). Its batch norm is restated as gamma 1, mean 0, var (4 R)^2 and beta = its constant
    output value, with R bounding |s_in * I|: y stays within 1/4 of that value, so the function is
    unchanged (no tie anywhere) and streamlining folds it like any other neuron; the exact always-on /
    always-off threshold is then set after conversion. Returns (model, network).
    """
    net = exact_network(model)
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    # FINN-ONNX thresholds straight on a dot product have no batch norm to restate (FINN streamlines them as is)
    hidden = [l for l in net.layers if l.out_quant is not None and not l.integer_thresholds]
    if len(bns) != len(hidden):
        raise ExactFunctionError(f"{len(bns)} BatchNormalization nodes for {len(hidden)} hidden layers")
    for node, layer in zip(bns, hidden):
        const = _constant_neurons(layer)
        if not const.any():
            continue
        params = [np.array(model.get_initializer(name), dtype=np.float32) for name in node.input[1:5]]
        lo, hi = layer.i_range[:, 0], layer.i_range[:, 1]
        scale = float(layer.in_quant.scale)
        for n in np.flatnonzero(const):
            up = layer.direction[n] > 0
            count = int(np.sum(layer.thresholds[n] <= lo[n])) if up else int(np.sum(layer.thresholds[n] >= hi[n]))
            value = float(layer.out_quant.code(np.int64(count)) * layer.out_quant.scale)
            r = max(abs(int(lo[n])), abs(int(hi[n]))) * scale + 1.0
            for arr, v in zip(params, (1.0, value, 0.0, (4.0 * r) ** 2)):
                arr[n] = v
        for name, arr in zip(node.input[1:5], params):
            model.set_initializer(name, arr)
    model.set_metadata_prop(META_PROP, net.thresholds_json())
    return model, net


def step_record_exact_function(model, cfg):
    """Record the network's exact thresholds (hw_builds.exact_function) in the QONNX model's metadata.

    Runs before step_qonnx_to_finn, on the exported graph, so the thresholds come from the trained
    parameters as stored; constant neurons' batch norm is restated (same function, see :func:`prepare_qonnx`).
    """
    from hw_builds.custom_steps import UnsupportedModelError

    try:
        model, _ = prepare_qonnx(model)
    except ExactFunctionError as exc:
        raise UnsupportedModelError(f"exact function: {exc}") from exc
    return model


def step_exact_thresholds(model, cfg):
    """Set every threshold of the HW graph to the exact integer threshold recorded before streamlining.

    Replaces FINN's float32, round-half-up thresholds (and clips nothing: the exact thresholds lie in
    each neuron's accumulator range, always-on / always-off included). Refuses, naming layer, neuron
    and cause, a neuron whose FINN weights are neither the trained row nor its negation, or whose sign
    does not match the direction of its batch norm.
    """
    from hw_builds.custom_steps import UnsupportedModelError

    text = model.get_metadata_prop(META_PROP)
    if not text:
        raise UnsupportedModelError(f"no {META_PROP} metadata: step_record_exact_function must run first")
    try:
        return set_exact_thresholds(model, ExactNetwork.from_json(text))
    except ExactThresholdError as exc:
        raise UnsupportedModelError(str(exc)) from exc


def _base(op: str) -> str:
    return op.removesuffix("_hls").removesuffix("_rtl")


def _signs(layer, w_f: np.ndarray, li: int) -> np.ndarray:
    """FINN's (K, M) integer weights -> sigma (M,): +1 the trained row, -1 its negation, 0 a zero row."""
    m = w_f.shape[1]
    if m != len(layer.row_hash):
        raise ExactThresholdError(f"layer {li}: FINN has {m} neurons, the exported model {len(layer.row_hash)}")
    sigma = np.zeros(m, dtype=np.int64)
    for n in range(m):
        col = w_f[:, n]
        if row_hash(col) == layer.row_hash[n]:
            sigma[n] = 1
        elif row_hash(-col) == layer.row_hash[n]:
            sigma[n] = -1
        elif not col.any():
            sigma[n] = 0
        else:
            raise ExactThresholdError(f"layer {li} neuron {n}: FINN's weights are neither the trained weights nor "
                                      f"their negation, so its thresholds cannot be mapped")
    return sigma


def finn_thresholds(layer, li: int, sigma: np.ndarray, xnor: bool, k: int) -> np.ndarray:
    """Exact thresholds (M, T) on FINN's accumulator (popcount for ``xnor``, else sigma * I)."""
    lo, hi = layer.i_range[:, 0], layer.i_range[:, 1]
    const = _constant_neurons(layer)
    out = np.zeros_like(layer.thresholds)
    for n in range(len(out)):
        d, t = int(layer.direction[n]), layer.thresholds[n]
        if const[n] or sigma[n] == 0:
            if not const[n]:
                raise ExactThresholdError(f"layer {li} neuron {n}: FINN's weight row is all zero but the "
                                          f"neuron is not constant in the exported model")
            on = (t <= lo[n]) if d > 0 else (t >= hi[n])
            if sigma[n] == 0:
                a_lo = a_hi = (k // 2 if xnor else 0)
                if xnor and k % 2:
                    raise ExactThresholdError(f"layer {li} neuron {n}: zero row in an XNOR layer of odd K")
            else:
                a_lo, a_hi = (0, k) if xnor else (int(min(sigma[n] * lo[n], sigma[n] * hi[n])),
                                                  int(max(sigma[n] * lo[n], sigma[n] * hi[n])))
            out[n] = np.where(on, a_lo, a_hi + 1)
            continue
        if d != sigma[n]:
            raise ExactThresholdError(
                f"layer {li} neuron {n}: batch norm gamma is {'positive' if d > 0 else 'negative'} but FINN "
                f"{'negated' if sigma[n] < 0 else 'kept'} its weights, so 'fires' is not acc >= T")
        i_thr = t if d > 0 else -t  # sigma * I >= sigma * t
        out[n] = [math.ceil((int(v) + k) / 2) for v in i_thr] if xnor else i_thr
    if np.any(np.diff(out, axis=1) < 0):
        raise ExactThresholdError(f"layer {li}: exact thresholds are not ascending per neuron")
    return out


def set_exact_thresholds(model, net: ExactNetwork):
    """Write ``net``'s exact thresholds into a streamlined (MultiThreshold) or HW (Thresholding / MVAU) graph.

    Layer i is the i-th XnorPopcountMatMul / MatMul / MVAU in graph order; the input thresholds go to
    the first MultiThreshold / Thresholding before any layer. Returns the model (changed in place).
    """
    from qonnx.custom_op.registry import getCustomOp

    li = 0
    input_done = False
    pending = None  # (layer index, thresholds) of a streamlined layer waiting for its MultiThreshold
    for node in model.graph.node:
        op = _base(node.op_type)
        if op in ("MultiThreshold", "Thresholding"):
            thr_name = node.input[1]
            if not input_done and li == 0:
                want = net.input_thresholds[None, :].astype(np.float32)
                old = model.get_initializer(thr_name)
                if old is None or old.shape[1] != want.shape[1]:
                    raise ExactThresholdError(f"input thresholds of {node.name}: FINN has "
                                              f"{None if old is None else old.shape} steps, the exported model "
                                              f"{want.shape[1]}")
                model.set_initializer(thr_name, np.tile(want, (old.shape[0], 1)))
                input_done = True
            elif pending is not None:
                pli, thr = pending
                old = model.get_initializer(thr_name)
                if old is None or old.shape[1] != thr.shape[1]:
                    raise ExactThresholdError(f"layer {pli}: {node.name} has {None if old is None else old.shape} "
                                              f"thresholds, the exact function {thr.shape}")
                model.set_initializer(thr_name, thr.astype(np.float32))
                pending = None
            else:
                raise ExactThresholdError(f"node {node.name}: standalone thresholds between layers (the exported "
                                          f"model's layer {li - 1} should have absorbed them)")
            continue
        if op not in ("XnorPopcountMatMul", "MatMul", "MVAU"):
            continue
        if li >= len(net.layers):
            raise ExactThresholdError(f"node {node.name}: more layers in FINN's graph than in the exported model")
        layer = net.layers[li]
        w = model.get_initializer(node.input[1])
        if w is None:
            raise ExactThresholdError(f"layer {li} ({node.name}): weights are not a constant")
        w = np.asarray(w)
        xnor = op == "XnorPopcountMatMul" or (op == "MVAU" and getCustomOp(node).get_nodeattr("binaryXnorMode"))
        w_int = np.rint(2 * w - 1 if xnor else w).astype(np.int64)  # (K, M)
        k = w_int.shape[0]
        if layer.out_quant is not None:
            thr = finn_thresholds(layer, li, _signs(layer, w_int, li), bool(xnor), k)
            if op == "MVAU":
                inst = getCustomOp(node)
                if inst.get_nodeattr("noActivation") or len(node.input) < 3:
                    raise ExactThresholdError(f"layer {li} ({node.name}): MVAU without thresholds")
                old = model.get_initializer(node.input[2])
                if old is None or old.shape[1] != thr.shape[1]:
                    raise ExactThresholdError(f"layer {li} ({node.name}): {None if old is None else old.shape} "
                                              f"thresholds, the exact function {thr.shape}")
                model.set_initializer(node.input[2], thr.astype(np.float32))
            else:
                pending = (li, thr)
        else:
            _signs(layer, w_int, li)  # the last layer's weights must still be the trained ones (or negated)
        li += 1
    if li != len(net.layers) or not input_done or pending is not None:
        raise ExactThresholdError(f"FINN's graph has {li} of the exported model's {len(net.layers)} layers "
                                  f"(input thresholds {'found' if input_done else 'missing'})")
    return model
