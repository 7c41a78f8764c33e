"""Consistency checks of an :class:`~host.xnor_layers.XnorModel`: shapes chain, masks fit, geometry fits.

Run on every model written or read (``host/xnor_format.py``) and on every model an engine is built
from (``host/xnor.py``). Only numpy is imported: this runs on the board.
"""

from __future__ import annotations

import numpy as np

from host.refusal import RefusedInput
from host.xnor_layers import XnorLayer, XnorModel


class XnorFormatError(RefusedInput):
    """An ``xnor_model.npz`` that cannot be used: corrupted, truncated, wrong version or inconsistent."""



def _validate_geometry(i: int, layer: XnorLayer, shape: tuple[int, ...]) -> None:
    """A layer's window / pooling fits the activation ``shape`` it receives ((H, W, C) or (K,))."""
    conv, where = layer.conv, f"layer{i}"
    if conv is None:
        if layer.pool is not None:
            raise XnorFormatError(f"{where}: pooling after a dense layer")
        if layer.in_features != int(np.prod(shape)):
            raise XnorFormatError(f"{where} expects {layer.in_features} inputs but receives {int(np.prod(shape))}")
        return
    if len(shape) != 3 or tuple(shape) != (*conv.in_dim, conv.in_channels):
        raise XnorFormatError(f"{where}: conv expects an (H, W, C) = {(*conv.in_dim, conv.in_channels)} "
                              f"feature map but receives {tuple(shape)}")
    if min(conv.stride) < 1 or any(k < 1 or k > d for k, d in zip(conv.kernel, conv.in_dim)):
        raise XnorFormatError(f"{where}: kernel {conv.kernel} / stride {conv.stride} do not fit {conv.in_dim}")
    if layer.in_features != conv.window:
        raise XnorFormatError(f"{where}: in_features {layer.in_features} != kernel window "
                              f"{conv.kernel[0]}x{conv.kernel[1]}x{conv.in_channels}")
    pool = layer.pool
    if pool is not None:
        if layer.thresholds is None:
            raise XnorFormatError(f"{where}: pooling needs the layer's activations (thresholds)")
        if min(pool.stride) < 1 or any(k < 1 or k > d for k, d in zip(pool.kernel, conv.out_dim)):
            raise XnorFormatError(f"{where}: pool {pool.kernel} / stride {pool.stride} do not fit {conv.out_dim}")


def _validate_mask(name: str, mask, layer: XnorLayer) -> None:
    """A packed weight mask: uint8 (M, ceil(K/8)) with the padding bits past K zero (they would count)."""
    want = (layer.out_features, (layer.in_features + 7) // 8)
    if not isinstance(mask, np.ndarray) or mask.shape != want or mask.dtype != np.uint8:
        got = f"{mask.dtype}{mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise XnorFormatError(f"{name} is {got}, expected uint8{want}")
    pad = 8 * want[1] - layer.in_features
    if pad and want[0] and np.any(mask[:, -1] >> (8 - pad)):
        raise XnorFormatError(f"{name} has bits set past in_features {layer.in_features} (padding must be 0)")


def _validate_weights(i: int, layer: XnorLayer) -> None:
    """The weight masks of layer i: shapes, zero padding; a ternary layer's two masks disjoint."""
    _validate_mask(f"layer{i}_weights", layer.weights_packed, layer)
    if layer.weight_bits == 1:
        if layer.weights_neg is not None:
            raise XnorFormatError(f"layer{i}: a 1-bit (+1/-1) layer has no layer{i}_weights_neg")
        return
    if layer.weight_bits != 2:
        raise XnorFormatError(f"layer{i}: weight_bits {layer.weight_bits} is not 1 (+1/-1) or 2 (ternary)")
    if layer.act_bits < 2:
        raise XnorFormatError(f"layer{i}: ternary weights need a multi-bit (bit-plane) input, act_bits is "
                              f"{layer.act_bits} (FINN: MVAU with binaryXnorMode=0)")
    if layer.weights_neg is None:
        raise XnorFormatError(f"layer{i}: ternary layer (weight_bits 2) without its -1 mask layer{i}_weights_neg")
    _validate_mask(f"layer{i}_weights_neg", layer.weights_neg, layer)
    both = np.bitwise_and(layer.weights_packed, layer.weights_neg)
    if both.any():
        m, byte = (int(v[0]) for v in np.nonzero(both))
        raise XnorFormatError(f"layer{i}: weight masks overlap (neuron {m}, byte {byte} is both +1 and -1)")


def validate_model(model: XnorModel) -> None:
    """Check shapes chain together; raise :class:`XnorFormatError` naming what is wrong."""
    if not model.layers:
        raise XnorFormatError("xnor model has no layers")
    thr = model.input_thresholds
    c_in = model.input_channels()
    if thr.ndim != 2 or thr.shape[0] not in (1, c_in) or thr.shape[1] < 1:
        raise XnorFormatError(f"input_thresholds has shape {thr.shape}, expected (1 or {c_in}, T>=1)")
    if model.is_conv and len(model.input_shape) != 3:
        raise XnorFormatError(f"a conv net needs input_shape (C, H, W), got {model.input_shape}")
    # what layer i receives: an NHWC feature map (H, W, C) or a vector (K,)
    shape: tuple[int, ...] = (*model.input_shape[1:], model.input_shape[0]) if model.is_conv else (model.in_features,)
    t_in = thr.shape[1]  # thresholds feeding the current layer
    for i, layer in enumerate(model.layers):
        src = "input_thresholds" if i == 0 else f"layer{i - 1}_thresholds"
        if layer.act_bits < 1 or layer.act_bits > 8:
            raise XnorFormatError(f"layer{i}: act_bits {layer.act_bits} outside 1..8")
        if layer.act_bits == 1 and (t_in != 1 or layer.act_bias != 0):
            raise XnorFormatError(f"layer{i}: 1-bit (XNOR) input needs one threshold in {src} and act_bias 0")
        if t_in > (1 << layer.act_bits) - 1:
            raise XnorFormatError(f"{src} has {t_in} thresholds per channel, more than layer{i}'s "
                                  f"{layer.act_bits}-bit input code holds")
        _validate_geometry(i, layer, shape)
        _validate_weights(i, layer)
        last = i == len(model.layers) - 1
        if last and layer.thresholds is not None:
            raise XnorFormatError(f"layer{i} is the last layer and must not have thresholds")
        if not last:
            t = layer.thresholds
            if t is None:
                raise XnorFormatError(f"layer{i} is a hidden layer without thresholds")
            if t.ndim != 2 or t.shape[0] not in (1, layer.out_features) or t.shape[1] < 1:
                raise XnorFormatError(
                    f"layer{i}_thresholds has shape {t.shape}, expected (1 or {layer.out_features}, T>=1)"
                )
            t_in = t.shape[1]
        shape = layer.out_shape()
    k = model.layers[-1].out_features
    if len(shape) != 1:
        raise XnorFormatError(f"the last layer outputs a feature map {shape}; it must be dense (class scores)")
    for name in ("output_mul", "output_add"):
        arr = getattr(model, name)
        if arr.shape != (k,):
            raise XnorFormatError(f"{name} has shape {arr.shape}, expected ({k},)")
