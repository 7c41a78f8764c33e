"""Convolution layers (CNV): FINN's im2col window order and max pooling, on codes or on packed words.

A conv layer is a dense (XNOR, bit-plane or ternary) matrix applied to every im2col window of an NHWC
feature map, read (kh, kw, c) with c fastest. When a pixel's channels fill whole uint64 words the window of
packed pixels is the packed im2col row, and 2x2 max pooling of binary maps is an OR of words.
Only numpy is imported.
"""

from __future__ import annotations

import numpy as np


def im2col(a: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(N, H, W, D) -> (N, OH, OW, KH*KW*D): every valid window, read (kh, kw, d) with d fastest.

    FINN's Im2Col / ConvolutionInputGenerator order. ``a`` may hold codes (D = channels) or packed
    words (D = words per pixel): when a pixel's channels fill whole words, the packed window is the
    packed im2col row, so binary layers never unpack (``XnorReference`` uses that).
    """
    n, h, w, d = a.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = np.empty((n, oh, ow, kh, kw, d), dtype=a.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = a[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
    return cols.reshape(n, oh, ow, kh * kw * d)


def max_pool(a: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], packed: bool = False) -> np.ndarray:
    """Max pooling of (N, H, W, D) codes, no padding, floor mode; on packed bits (``packed``) it is OR."""
    n, h, w, d = a.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    op = np.bitwise_or if packed else np.maximum
    out = None
    for i in range(kh):
        for j in range(kw):
            part = a[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
            out = part.copy() if out is None else op(out, part, out=out)
    return out
