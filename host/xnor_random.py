"""Random w1a1 MLPs in the xnor_model format: for property tests and the speed benchmark (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from host.xnor_format import DenseLayer, XnorModel

# Layer widths of the bnn_pynq MLPs (input 784 pixels, 10 classes).
MLP_WIDTHS = {"tfc": [784, 64, 64, 64, 10], "sfc": [784, 256, 256, 256, 10], "lfc": [784, 1024, 1024, 1024, 10]}


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
        bits = rng.integers(0, 2, size=(m, k), dtype=np.uint8)
        packed = np.packbits(bits, axis=1, bitorder="little")
        last = i == len(widths) - 2
        thr = None
        if not last:
            rows = m if per_channel else 1
            # mostly near K/2 (where real BNN thresholds sit), sometimes anywhere in [0, K+1]
            near = rng.integers(max(0, k // 2 - 8), k // 2 + 9, size=(rows, 1))
            wide = rng.integers(0, k + 2, size=(rows, 1))
            thr = np.where(rng.random((rows, 1)) < 0.8, near, wide).astype(np.int32)
        layers.append(DenseLayer(int(k), int(m), packed, thr))
    m_last = int(widths[-1])
    return XnorModel(
        input_thresholds=rng.integers(0, 257, size=(c0, 1)).astype(np.int32),
        layers=layers,
        output_mul=rng.uniform(0.1, 2.0, size=m_last).astype(np.float32),
        output_add=rng.normal(size=m_last).astype(np.float32),
        input_shape=input_shape or (k0,),
        meta={"source": "random"},
    )
