"""Optional compiled kernels for host/xnor.py (numba); importing this module raises ImportError without numba.

Why: the numpy path materialises an (N, M, W) XOR block and runs near 0.1x of PyTorch fp32 on
an LFC-sized net. Here the weights are stored transposed, (W, M), so for one image and one input
word the loop over the M neurons is contiguous: LLVM turns it into vector XOR + VPOPCNTQ + add
(AVX-512 VPOPCNTDQ where the CPU has it) with no horizontal sums. Thresholds and output bit
packing are fused, so hidden activations never leave packed form. Single-threaded on purpose: on
a shared 2-core machine a parallel loop waits for its slowest thread (measured 4x slower), and
the board's CPU is small anyway. Results are the same integers as the numpy path (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _ctpop64(typingctx, x):
    """LLVM's ctpop on a uint64 (becomes POPCNT / VPOPCNTQ)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True, nogil=True)
def _threshold_pack_u8(x, thr, out):  # x (N, K) uint8, thr (C,) int32 with C in {1, K}; out (N, W) uint64
    n, k = x.shape
    per_channel = thr.shape[0] != 1
    for i in range(n):
        for q in range((k + 63) // 64):
            word = np.uint64(0)
            for b in range(min(64, k - q * 64)):
                j = q * 64 + b
                t = thr[j] if per_channel else thr[0]
                if np.int32(x[i, j]) >= t:
                    word |= np.uint64(1) << np.uint64(b)
            out[i, q] = word


@njit(cache=True, nogil=True)
def _popcount_row(xrow, w_t, acc):  # acc[j] = mismatching bits of xrow against weight column j
    acc[:] = 0
    for q in range(w_t.shape[0]):
        xq = xrow[q]
        for j in range(w_t.shape[1]):  # contiguous in j: vector XOR + VPOPCNTQ, no horizontal sums
            acc[j] += _ctpop64(xq ^ w_t[q, j])


@njit(cache=True, nogil=True)
def _xnor_popcount(x, w_t, k, out):  # x (N, W) u64, w_t (W, M) u64 -> out (N, M) int32 matches
    acc = np.empty(w_t.shape[1], np.uint64)
    for i in range(x.shape[0]):
        _popcount_row(x[i], w_t, acc)
        for j in range(w_t.shape[1]):
            out[i, j] = k - np.int32(acc[j])


@njit(cache=True, nogil=True)
def _xnor_popcount_threshold_pack(x, w_t, k, thr, out):  # thr (M,) int32; out (N, ceil(M/64)) u64
    m = w_t.shape[1]
    acc = np.empty(m, np.uint64)
    for i in range(x.shape[0]):
        _popcount_row(x[i], w_t, acc)
        for q in range((m + 63) // 64):
            word = np.uint64(0)
            for b in range(min(64, m - q * 64)):
                j = q * 64 + b
                if k - np.int32(acc[j]) >= thr[j]:
                    word |= np.uint64(1) << np.uint64(b)
            out[i, q] = word


def threshold_pack_u8(x: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(N, K) uint8 pixels, (C,) int32 thresholds -> packed bits (N, ceil(K/64)) uint64."""
    out = np.empty((x.shape[0], (x.shape[1] + 63) // 64), dtype=np.uint64)
    _threshold_pack_u8(x, thr, out)
    return out


def xnor_popcount(x: np.ndarray, w_t: np.ndarray, k: int) -> np.ndarray:
    """Accumulators int32 (N, M): matching bits of each image row against each weight column of w_t (W, M)."""
    out = np.empty((x.shape[0], w_t.shape[1]), dtype=np.int32)
    _xnor_popcount(np.ascontiguousarray(x), w_t, np.int32(k), out)
    return out


def xnor_popcount_threshold_pack(x: np.ndarray, w_t: np.ndarray, k: int, thr: np.ndarray) -> np.ndarray:
    """Fused dense + threshold: packed output bits (N, ceil(M/64)) uint64, bit = (acc >= thr)."""
    out = np.empty((x.shape[0], (w_t.shape[1] + 63) // 64), dtype=np.uint64)
    _xnor_popcount_threshold_pack(np.ascontiguousarray(x), w_t, np.int32(k), thr, out)
    return out


@njit(cache=True, nogil=True)
def _bitplane_dot(planes, w_t, k, act_bias, out):  # planes (P, N, W) u64, w_t (W, M) u64 -> out (N, M) int32
    p, n, words = planes.shape
    m = w_t.shape[1]
    w_pos = np.zeros(m, np.int64)
    for q in range(words):
        for j in range(m):
            w_pos[j] += _ctpop64(w_t[q, j])
    both = np.empty(m, np.uint64)
    acc = np.empty(m, np.int64)
    for i in range(n):
        for j in range(m):
            acc[j] = act_bias * (2 * w_pos[j] - k)
        for b in range(p):
            both[:] = 0
            ones = 0
            for q in range(words):
                xq = planes[b, i, q]
                ones += _ctpop64(xq)
                for j in range(m):  # contiguous in j, as in _popcount_row
                    both[j] += _ctpop64(xq & w_t[q, j])
            for j in range(m):
                acc[j] += (2 * np.int64(both[j]) - np.int64(ones)) << b
        for j in range(m):
            out[i, j] = np.int32(acc[j])


def bitplane_dot(planes: np.ndarray, w_t: np.ndarray, k: int, act_bias: int) -> np.ndarray:
    """Signed dot products int32 (N, M) of bit-plane activations (P, N, W) with +1/-1 weight columns (W, M).

    The same sum as host.xnor.bitplane_dot_numpy: sum_b 2**b (2 popcount(plane_b AND w+) - popcount(plane_b))
    + act_bias (2 popcount(w+) - k).
    """
    out = np.empty((planes.shape[1], w_t.shape[1]), dtype=np.int32)
    _bitplane_dot(np.ascontiguousarray(planes), w_t, np.int64(k), np.int64(act_bias), out)
    return out


@njit(cache=True, nogil=True)
def _ternary_dot(planes, wp_t, wn_t, act_bias, out):  # planes (P, N, W) u64, wp_t / wn_t (W, M) u64 -> (N, M) int32
    p, n, words = planes.shape
    m = wp_t.shape[1]
    w_sum = np.zeros(m, np.int64)  # |w+| - |w-| per neuron
    for q in range(words):
        for j in range(m):
            w_sum[j] += np.int64(_ctpop64(wp_t[q, j])) - np.int64(_ctpop64(wn_t[q, j]))
    pos = np.empty(m, np.uint64)
    neg = np.empty(m, np.uint64)
    acc = np.empty(m, np.int64)
    for i in range(n):
        for j in range(m):
            acc[j] = act_bias * w_sum[j]
        for b in range(p):
            pos[:] = 0
            neg[:] = 0
            for q in range(words):
                xq = planes[b, i, q]
                for j in range(m):  # contiguous in j, as in _bitplane_dot
                    pos[j] += _ctpop64(xq & wp_t[q, j])
                    neg[j] += _ctpop64(xq & wn_t[q, j])
            for j in range(m):
                acc[j] += (np.int64(pos[j]) - np.int64(neg[j])) << b
        for j in range(m):
            out[i, j] = np.int32(acc[j])


def ternary_dot(planes: np.ndarray, wp_t: np.ndarray, wn_t: np.ndarray, act_bias: int) -> np.ndarray:
    """Signed dot products int32 (N, M) of bit-plane activations (P, N, W) with ternary weight columns.

    ``wp_t`` / ``wn_t`` (W, M): the +1 and -1 masks, transposed. The same sum as
    host.xnor.ternary_dot_numpy: sum_b 2**b (popcount(plane_b AND w+) - popcount(plane_b AND w-))
    + act_bias (popcount(w+) - popcount(w-)).
    """
    out = np.empty((planes.shape[1], wp_t.shape[1]), dtype=np.int32)
    _ternary_dot(np.ascontiguousarray(planes), wp_t, wn_t, np.int64(act_bias), out)
    return out
