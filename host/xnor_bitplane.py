"""Bit-plane layers (multi-bit activations, +1/-1 weights: w1a2, CNV's 8-bit first layer), FINN's MVAU with binaryXnorMode=0.

The activation code c (value c + act_bias) is split into bit planes b_j (:func:`host.xnor_bits.pack_planes`),
and the +1/-1 dot product is sum_j 2**j (2 popcount(b_j AND w+) - popcount(b_j)) + act_bias (2 popcount(w+) - K),
all in integers. Only numpy is imported.
"""

from __future__ import annotations

import numpy as np

from host.xnor_bits import _NUMPY_BLOCK_WORDS, popcount


def bitplane_dot_numpy(planes: np.ndarray, w_words: np.ndarray, k: int, act_bias: int = 0,
                       use_table: bool | None = None) -> np.ndarray:
    """Signed dot products of multi-bit activations with +1/-1 weights, int32 (N, M), from bit planes.

    ``planes`` (P, N, W): bit plane j of the activation codes c (c = sum_j 2**j b_j), packed like
    :func:`pack_bits`; ``w_words`` (M, W): bit 1 = weight +1. The activation value is c + act_bias:

        sum_i w_i (c_i + act_bias) = sum_j 2**j (2 popcount(b_j AND w+) - popcount(b_j))
                                     + act_bias (2 popcount(w+) - k)

    all in integers, what FINN's MVAU (binaryXnorMode=0) with bipolar weights computes.
    """
    p, n, w = planes.shape
    m = w_words.shape[0]
    w_pos = popcount(w_words, use_table).sum(axis=-1, dtype=np.int64)  # (M,)
    acc = np.empty((n, m), dtype=np.int64)
    step = max(1, _NUMPY_BLOCK_WORDS // max(1, m * w))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        total = np.zeros((hi - lo, m), dtype=np.int64)
        for j in range(p):
            both = popcount(planes[j, lo:hi, None, :] & w_words[None, :, :], use_table).sum(axis=-1, dtype=np.int64)
            ones = popcount(planes[j, lo:hi], use_table).sum(axis=-1, dtype=np.int64)  # (n,)
            total += (2 * both - ones[:, None]) << j
        acc[lo:hi] = total + act_bias * (2 * w_pos[None, :] - k)
    return acc.astype(np.int32)
