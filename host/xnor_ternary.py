"""Ternary-weight layers (w2a2: weights {-1, 0, +1} as a +1 and a -1 mask, always on bit planes).

dot = sum_j 2**j (popcount(b_j AND w+) - popcount(b_j AND w-)) + act_bias (|w+| - |w-|), FINN's MVAU
(binaryXnorMode=0) with INT2 weights, for dense and conv layers alike. Only numpy is imported.
"""

from __future__ import annotations

import numpy as np

from host.xnor_bits import _NUMPY_BLOCK_WORDS, popcount


def ternary_dot_numpy(planes: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, act_bias: int = 0,
                      use_table: bool | None = None) -> np.ndarray:
    """Signed dot products of multi-bit activations with ternary {-1, 0, +1} weights, int32 (N, M).

    ``planes`` (P, N, W) as in :func:`bitplane_dot_numpy`; ``w_pos`` / ``w_neg`` (M, W): the +1 and -1
    masks (a zero weight has neither bit). With value c + act_bias and c = sum_j 2**j b_j:

        sum_i w_i (c_i + act_bias) = sum_j 2**j (popcount(b_j AND w+) - popcount(b_j AND w-))
                                     + act_bias (popcount(w+) - popcount(w-))

    what FINN's MVAU (binaryXnorMode=0) with INT2 weights computes. Unlike the +1/-1 case no K appears:
    a position outside both masks (a zero weight, or padding) contributes nothing.
    """
    p, n, w = planes.shape
    m = w_pos.shape[0]
    w_sum = (popcount(w_pos, use_table).sum(axis=-1, dtype=np.int64)
             - popcount(w_neg, use_table).sum(axis=-1, dtype=np.int64))  # (M,)
    acc = np.empty((n, m), dtype=np.int64)
    step = max(1, _NUMPY_BLOCK_WORDS // max(1, 2 * m * w))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        total = np.zeros((hi - lo, m), dtype=np.int64)
        for j in range(p):
            plane = planes[j, lo:hi, None, :]
            pos = popcount(plane & w_pos[None, :, :], use_table).sum(axis=-1, dtype=np.int64)
            neg = popcount(plane & w_neg[None, :, :], use_table).sum(axis=-1, dtype=np.int64)
            total += (pos - neg) << j
        acc[lo:hi] = total + act_bias * w_sum[None, :]
    return acc.astype(np.int32)
