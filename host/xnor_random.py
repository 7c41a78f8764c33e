"""Random w1a1 MLPs and CNV-style conv nets in the xnor_model format: for property tests and the benchmark.

numpy only (runs in the board environment, where the host tests also run).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from host.xnor_format import ConvGeometry, PoolGeometry, XnorLayer, XnorModel

# Layer widths of the bnn_pynq MLPs (input 784 pixels, 10 classes).
MLP_WIDTHS = {"tfc": [784, 64, 64, 64, 10], "sfc": [784, 256, 256, 256, 10], "lfc": [784, 1024, 1024, 1024, 10]}
# CNV (bnn_pynq CNV.py): (out_channels, kernel, stride, 2x2 max pool after) per conv, then the hidden FC widths.
CNV_CONVS = [(64, 3, 1, False), (64, 3, 1, True), (128, 3, 1, False), (128, 3, 1, True), (256, 3, 1, False),
             (256, 3, 1, False)]
CNV_FC = [512, 512]


def _random_weights(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    """(M, ceil(K/8)) packed random +1/-1 weights (bit 1 = +1)."""
    return np.packbits(rng.integers(0, 2, size=(m, k), dtype=np.uint8), axis=1, bitorder="little")


def _random_thresholds(rng: np.random.Generator, rows: int, k: int, signed_span: int = 0) -> np.ndarray:
    """One threshold per row, mostly near the middle of the accumulator range (where trained BNN
    thresholds sit), sometimes anywhere in it. Popcount range [0, K]; signed range +-signed_span."""
    lo, hi = (0, k) if signed_span == 0 else (-signed_span, signed_span)
    mid = (lo + hi) // 2
    spread = max(8, (hi - lo) // 16)
    near = rng.integers(mid - spread, mid + spread + 1, size=(rows, 1))
    wide = rng.integers(lo, hi + 2, size=(rows, 1))
    return np.where(rng.random((rows, 1)) < 0.8, near, wide).astype(np.int32)


def _random_output(rng: np.random.Generator, m_last: int) -> dict[str, np.ndarray]:
    return {"output_mul": rng.uniform(0.1, 2.0, size=m_last).astype(np.float32),
            "output_add": rng.normal(size=m_last).astype(np.float32)}


def random_xnor_model(widths: Sequence[int], rng: np.random.Generator, input_shape: tuple[int, ...] | None = None,
                      per_channel: bool = True) -> XnorModel:
    """A model with random +1/-1 weights and random thresholds in the reachable range of each layer.

    ``widths`` = [K0, M1, ..., M_last]; hidden thresholds are drawn from [0, K+1] so that both
    always-on/always-off and balanced neurons occur; input thresholds from [0, 256].
    """
    k0 = int(widths[0])
    c0 = k0 if per_channel else 1
    layers = []
    for i, (k, m) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        thr = None if last else _random_thresholds(rng, m if per_channel else 1, k)
        layers.append(XnorLayer(int(k), int(m), _random_weights(rng, m, k), thr))
    return XnorModel(
        input_thresholds=rng.integers(0, 257, size=(c0, 1)).astype(np.int32),
        layers=layers,
        **_random_output(rng, int(widths[-1])),
        input_shape=input_shape or (k0,),
        meta={"source": "random"},
    )


def random_conv_model(rng: np.random.Generator, input_shape: tuple[int, int, int] = (3, 32, 32),
                      convs: Sequence[tuple[int, int, int, bool]] = CNV_CONVS, fc: Sequence[int] = CNV_FC,
                      classes: int = 10, in_bits: int = 8) -> XnorModel:
    """A conv net shaped like CNV with random weights and thresholds: convs, then dense layers.

    ``convs``: (out_channels, kernel, stride, 2x2/2 max pool after) per layer. ``in_bits`` 8: CNV's
    input (255 sorted thresholds per image channel, code - 128 as value, a bit-plane first layer);
    1: one threshold per channel and an XNOR first layer. Every later layer is binary (w1a1).
    """
    c, h, w = input_shape
    if in_bits == 1:
        input_thr = rng.integers(0, 257, size=(c, 1)).astype(np.int32)
        bias = 0
    else:
        t = (1 << in_bits) - 1
        input_thr = np.sort(rng.integers(0, 257, size=(c, t)), axis=1).astype(np.int32)
        bias = -(1 << (in_bits - 1))
    layers: list[XnorLayer] = []
    bits, dim, channels = in_bits, (h, w), c
    for out_ch, kernel, stride, pool in convs:
        geom = ConvGeometry(in_dim=dim, in_channels=channels, kernel=(kernel, kernel), stride=(stride, stride))
        k = geom.window
        span = 0 if bits == 1 else k * (1 << (bits - 1))  # |signed dot product| <= K * 2**(bits-1)
        layer = XnorLayer(k, out_ch, _random_weights(rng, out_ch, k), _random_thresholds(rng, out_ch, k, span),
                          act_bits=bits, act_bias=bias if bits > 1 else 0, conv=geom)
        dim = geom.out_dim
        if pool and min(dim) >= 2:
            layer.pool = PoolGeometry(kernel=(2, 2), stride=(2, 2))
            dim = (dim[0] // 2, dim[1] // 2)
        layers.append(layer)
        bits, channels = 1, out_ch
    k = dim[0] * dim[1] * channels
    for i, m in enumerate([*fc, classes]):
        last = i == len(fc)
        layers.append(XnorLayer(k, m, _random_weights(rng, m, k), None if last else _random_thresholds(rng, m, k),
                                act_bits=bits, act_bias=bias if bits > 1 else 0))
        bits, k = 1, m
    return XnorModel(input_thresholds=input_thr, layers=layers, **_random_output(rng, classes),
                     input_shape=tuple(input_shape), meta={"source": "random"})


FAMILIES = ("tfc", "sfc", "lfc", "cnv")


def _sorted_thresholds(rng: np.random.Generator, rows: int, t: int, centre: float, scale: float) -> np.ndarray:
    """(rows, t) sorted int32 thresholds drawn around ``centre`` with spread ``scale`` (where trained ones sit)."""
    return np.sort(np.rint(rng.normal(centre, scale, size=(rows, t))), axis=1).astype(np.int32)


def _family_layer(rng: np.random.Generator, k: int, m: int, weight_bits: int, act_bits: int, act_bias: int,
                  conv: ConvGeometry | None) -> XnorLayer:
    """One layer: +1/-1 weights (weight_bits 1) or ternary {-1, 0, +1} as a +1 and a -1 mask (2)."""
    if weight_bits == 1:
        return XnorLayer(k, m, _random_weights(rng, m, k), None, act_bits=act_bits, act_bias=act_bias, conv=conv)
    w = rng.choice(np.array([-1, 1]), size=(m, k)) * (rng.random((m, k)) >= 0.3)  # about 30 % zeros
    pack = lambda b: np.packbits(b.astype(np.uint8), axis=1, bitorder="little")  # noqa: E731
    return XnorLayer(k, m, pack(w > 0), None, act_bits=act_bits, act_bias=act_bias, conv=conv, weight_bits=2,
                     weights_neg=pack(w < 0))


def random_family_model(family: str, weight_bits: int, act_bits: int, rng: np.random.Generator) -> XnorModel:
    """A random model shaped like a bnn_pynq family as FINN builds it: ``family`` in FAMILIES, w1a1 / w1a2 / w2a2.

    TFC/SFC/LFC: the widths of MLP_WIDTHS on a (1, 28, 28) image, the pixels thresholded to an
    ``act_bits``-bit code; CNV: CNV_CONVS and CNV_FC on a (3, 32, 32) image with the 8-bit input code
    (255 thresholds per channel, value code - 128). Hidden activations are ``act_bits`` wide: 1 = XNOR
    layers, 2 = bit-plane layers with values code - 2 ({-2, -1, 0, 1}, Brevitas' signed 2-bit
    activation). ``weight_bits`` 2 gives ternary weights. Thresholds are drawn around the middle of
    each layer's accumulator range so that every code occurs. Raises ValueError for other families or widths.
    """
    if family not in FAMILIES or (weight_bits, act_bits) not in ((1, 1), (1, 2), (2, 2)):
        raise ValueError(f"no {family}-w{weight_bits}a{act_bits} family: choose {', '.join(FAMILIES)} as w1a1, w1a2 or w2a2")
    hidden_bias = 0 if act_bits == 1 else -(1 << (act_bits - 1))
    t_hidden = (1 << act_bits) - 1  # thresholds per channel for an act_bits-bit code
    if family == "cnv":
        input_shape: tuple[int, ...] = (3, 32, 32)
        in_bits, in_bias = 8, -128
        input_thr = np.sort(rng.integers(0, 257, size=(3, 255)), axis=1).astype(np.int32)
    else:
        input_shape, in_bits, in_bias = (1, 28, 28), act_bits, hidden_bias
        input_thr = np.sort(rng.integers(0, 257, size=(784, t_hidden)), axis=1).astype(np.int32)
    layers: list[XnorLayer] = []
    bits, bias = in_bits, in_bias
    convs = CNV_CONVS if family == "cnv" else []
    dim, channels = input_shape[1:], input_shape[0]
    dense = [*CNV_FC, 10] if family == "cnv" else MLP_WIDTHS[family][1:]
    for j in range(len(convs) + len(dense)):
        last = j == len(convs) + len(dense) - 1
        if j < len(convs):
            out_ch, kernel, stride, pool = convs[j]
            geom = ConvGeometry(in_dim=tuple(dim), in_channels=channels, kernel=(kernel, kernel), stride=(stride, stride))
            k, m = geom.window, out_ch
        else:
            geom, m = None, dense[j - len(convs)]
            k = int(np.prod(dim)) * channels if j == len(convs) else channels
        layer = _family_layer(rng, k, m, weight_bits if bits > 1 else 1, bits, bias if bits > 1 else 0, geom)
        if not last:
            # the accumulator's spread: popcount K/2 +- sqrt(K)/2, a signed dot product 0 +- sqrt(K) * |value|
            centre = k / 2 if bits == 1 else 0.0
            scale = np.sqrt(k) * (0.5 if bits == 1 else max(abs(bias), abs((1 << bits) - 1 + bias)) / 2)
            layer.thresholds = _sorted_thresholds(rng, m, t_hidden, centre, scale)
        if geom is not None:
            dim = geom.out_dim
            if pool:
                layer.pool = PoolGeometry(kernel=(2, 2), stride=(2, 2))
                dim = (dim[0] // 2, dim[1] // 2)
        layers.append(layer)
        bits, bias, channels = act_bits, hidden_bias, m
        if geom is None:
            dim = (1, 1)
    return XnorModel(input_thresholds=input_thr, layers=layers, **_random_output(rng, 10), input_shape=input_shape,
                     meta={"source": "random", "family": f"{family}_w{weight_bits}a{act_bits}"})
