"""Dense XNOR layers (1-bit activations, +1/-1 weights): acc = popcount(XNOR(x, w)), FINN's XnorPopcountMatMul.

Padding bits are 0 in both operands, so they never count as a mismatch and acc = K - popcount(x XOR w).
A conv layer is the same matrix on its im2col rows (host/xnor_conv.py). Only numpy is imported.
"""

from __future__ import annotations

import numpy as np

from host.xnor_bits import _NUMPY_BLOCK_WORDS, popcount


def xnor_popcount_numpy(x_words: np.ndarray, w_words: np.ndarray, k: int, use_table: bool | None = None) -> np.ndarray:
    """acc[n, m] = #positions where x bit == w bit, over the k real bits; int32 (N, M)."""
    n, w = x_words.shape
    m = w_words.shape[0]
    acc = np.empty((n, m), dtype=np.int32)
    step = max(1, _NUMPY_BLOCK_WORDS // max(1, m * w))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        diff = x_words[lo:hi, None, :] ^ w_words[None, :, :]  # (n, M, W)
        acc[lo:hi] = k - popcount(diff, use_table).sum(axis=-1, dtype=np.int32)
    return acc
