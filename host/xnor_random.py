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
