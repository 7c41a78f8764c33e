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


MLP_BLOCK = 256  # images run layer by layer together in _mlp_forward (one layer's weights stay in cache)


@njit(cache=True, nogil=True)
def _mlp_widths(k0, layout):
    """(max words, max neurons) over the MLP's input and layers (``layout`` as in :func:`_mlp_forward`)."""
    max_w = (k0 + 63) // 64
    max_m = 1
    for layer in range(layout.shape[0]):
        max_w = max(max_w, (layout[layer, 2] + 63) // 64)
        max_m = max(max_m, layout[layer, 2])
    return max_w, max_m


@njit(cache=True, nogil=True)
def _mlp_scratch_words(n, k0, layout):
    """uint64 words of scratch :func:`_mlp_forward` needs for ``n`` images."""
    max_w, max_m = _mlp_widths(k0, layout)
    return 2 * min(n, MLP_BLOCK) * max_w + 2 * max_m + 8 * max_w


_PACK8 = np.uint64(0x0102040810204080)  # (8 bytes of 0/1) * _PACK8 >> 56: byte b's bit at bit b (no carries)


@njit(cache=True, nogil=True, inline="always")
def _pack_flags(flags, words, out):
    """0/1 bytes ``flags`` (uint8, 64 * words, the tail past the last real bit 0) -> ``words`` packed uint64 into
    ``out``, bit b of word q = flags[64 q + b]. Eight flags a multiply: (bytes as u64) * _PACK8 >> 56."""
    f64 = flags.view(np.uint64)
    for q in range(words):
        word = np.uint64(0)
        for byte in range(8):
            word |= ((f64[q * 8 + byte] * _PACK8) >> np.uint64(56)) << np.uint64(8 * byte)
        out[q] = word


@njit(cache=True, nogil=True)
def _mlp_forward(x, thr0, w, layout, thr, mul, add, logits, labels, scratch):
    """Whole w1a1 MLP: x (N, K0) uint8 pixels, thr0 (K0,) int16 (the input thresholds clipped to [0, 256], the
    same comparisons) -> labels (N,) int64 and, where ``logits`` has N rows (else 0), logits (N, M_last) float32.

    ``w``: every layer's transposed words (W, M) back to back, uint64; ``layout`` (L, 5) int64 rows
    (word offset, W, M, K, threshold offset); ``thr`` every hidden layer's (M,) int32 thresholds back to back.
    Images go through in blocks of MLP_BLOCK, layer by layer, activations packed throughout, in ``scratch``
    (uint64, at least :func:`_mlp_scratch_words`); the input's comparisons write 0/1 bytes (16-lane vector
    compares) that :func:`_pack_flags` packs, the hidden layers' thresholds pack branch-free.
    """
    n, k0 = x.shape
    n_layers = layout.shape[0]
    want_logits = logits.shape[0] == n
    max_w, max_m = _mlp_widths(k0, layout)
    block = min(n, MLP_BLOCK)
    # activations a and b (block, max_w), acc (max_m,), flags (64 max_w bytes), last row (max_m,)
    a = scratch[: block * max_w].reshape(block, max_w)
    b = scratch[block * max_w : 2 * block * max_w].reshape(block, max_w)
    acc = scratch[2 * block * max_w : 2 * block * max_w + max_m]
    flags64 = scratch[2 * block * max_w + max_m : 2 * block * max_w + max_m + 8 * max_w]
    flags = flags64.view(np.uint8)
    row = scratch[2 * block * max_w + max_m + 8 * max_w :].view(np.float32)
    words0 = (k0 + 63) // 64
    for lo in range(0, n, MLP_BLOCK):
        rows = min(MLP_BLOCK, n - lo)
        flags64[:] = 0  # the tail past k0 stays 0 for _pack_flags
        for r in range(rows):  # input thresholding: 16 compares a vector, then packed
            for j in range(k0):
                flags[j] = np.int16(x[lo + r, j]) >= thr0[j]
            _pack_flags(flags, words0, a[r])
        for layer in range(n_layers):
            off, words, m, k, toff = layout[layer, 0], layout[layer, 1], layout[layer, 2], layout[layer, 3], layout[layer, 4]
            w_t = w[off : off + words * m].reshape(words, m)
            acc_m = acc[:m]
            last = layer == n_layers - 1
            for r in range(rows):
                _popcount_row(a[r], w_t, acc_m)
                if not last:
                    for q in range((m + 63) // 64):  # fused threshold (matches = k - mismatches) + pack, branchless
                        word = np.uint64(0)
                        for bit in range(min(64, m - q * 64)):
                            j = q * 64 + bit
                            word |= np.uint64(np.int64(k) - np.int64(acc[j]) >= thr[toff + j]) << np.uint64(bit)
                        b[r, q] = word
                else:  # acc * output_mul + output_add in float32 (two roundings, as numpy), first argmax
                    best = 0
                    for j in range(m):
                        row[j] = np.float32(np.int32(k) - np.int32(acc[j])) * mul[j] + add[j]
                    for j in range(m):
                        if row[j] > row[best]:
                            best = j
                    labels[lo + r] = best
                    if want_logits:
                        for j in range(m):
                            logits[lo + r, j] = row[j]
            a, b = b, a


MLP_META_LAYOUT = 15  # meta: k0, m_last, L, 5 x (byte offset, length) of thr0 / w / thr / mul / add, scratch's, layout


@njit(cache=True, nogil=True, inline="always")
def _mlp_meta(blob):
    """The int64 ``meta`` index at the head of an MlpNet blob: k0, m_last, L, byte offset and length of thr0, w,
    thr, mul, add and the scratch area, then the (L, 5) layout (a view, no copy)."""
    n_layers = blob[: 8 * MLP_META_LAYOUT].view(np.int64)[2]
    return blob[: 8 * (MLP_META_LAYOUT + 5 * n_layers)].view(np.int64)


@njit(cache=True, nogil=True, inline="always")
def _mlp_unpack(blob):
    """The constant arrays of one network from its blob (see :class:`MlpNet`): meta, thr0, w, layout, thr, mul,
    add, views of the blob (no copy)."""
    meta = _mlp_meta(blob)
    n_layers = meta[2]
    thr0 = blob[meta[3] : meta[3] + meta[4]].view(np.int16)
    w = blob[meta[5] : meta[5] + meta[6]].view(np.uint64)
    thr = blob[meta[7] : meta[7] + meta[8]].view(np.int32)
    mul = blob[meta[9] : meta[9] + meta[10]].view(np.float32)
    add = blob[meta[11] : meta[11] + meta[12]].view(np.float32)
    layout = meta[MLP_META_LAYOUT : MLP_META_LAYOUT + 5 * n_layers].reshape(n_layers, 5)
    return meta, thr0, w, layout, thr, mul, add


def _mlp_into(x, blob, labels, logits):
    """XnorReference's call of a w1a1 MLP (compiled by :func:`mlp_into_kernel`): x (N, K0) or (N, C, H, W) uint8
    C-contiguous with K0 values per image -> top-1 into labels (N,) int64 and, where ``logits`` has N rows (not 0),
    the logits into logits (N, M_last) float32. Returns False, computing nothing, where a size does not fit.

    No allocation: the scratch is the blob's own area. That is safe because this kernel keeps the GIL (no
    ``nogil``): two threads never run it at once, and it never calls back into Python.
    """
    n = x.shape[0]
    per_image = 1
    for d in x.shape[1:]:
        per_image *= d
    meta, thr0, w, layout, thr, mul, add = _mlp_unpack(blob)
    if per_image != meta[0] or labels.shape[0] != n or (logits.shape[0] != 0 and logits.shape[0] != n) \
            or logits.shape[1] != meta[1]:
        return False
    scratch = blob[meta[13] : meta[13] + meta[14]].view(np.uint64)
    _mlp_forward(x.reshape(n, per_image), thr0, w, layout, thr, mul, add, logits, labels, scratch)
    return True


_MLP_INTO = None


def mlp_into_kernel():
    """:func:`_mlp_into` compiled for exactly uint8 C-contiguous (N, K0) and (N, C, H, W) images (the bench's and
    the validation's test sets) and nothing else: numba's dispatcher refuses any other type with a TypeError instead
    of compiling for it (its type check is the input check). Two signatures only: each one is a full LLVM
    optimization of the network kernel (about 5 s of CPU when numba's cache is cold, then loaded from the cache).
    Built on first use."""
    global _MLP_INTO
    if _MLP_INTO is None:
        sigs = [f"boolean(uint8[{x}], uint8[::1], int64[::1], float32[:, ::1])" for x in (":, ::1", ":, :, :, ::1")]
        _MLP_INTO = njit(sigs, cache=True)(_mlp_into)  # keeps the GIL: see _mlp_into
    return _MLP_INTO


class MlpNet:
    """A w1a1 MLP as one compiled call: the arrays of :func:`_mlp_forward`, laid out once when it is built in one
    8-byte-aligned byte ``blob`` headed by its int64 ``meta`` index (see :func:`_mlp_meta`).

    ``weights_t``: per layer (W, M) uint64 transposed words; ``thresholds``: per hidden layer (M,) int32;
    ``k``: per layer K; ``thr0`` (K0,) int32 input thresholds; ``mul`` / ``add`` (M_last,) float32.
    ``into`` (:func:`mlp_into_kernel`) with ``blob`` and ``no_logits`` ((0, M_last), labels only) is the
    allocation-free call XnorReference's fast path makes.
    """

    def __init__(self, weights_t: list[np.ndarray], k: list[int], thresholds: list[np.ndarray],
                 thr0: np.ndarray, mul: np.ndarray, add: np.ndarray):
        offsets = np.cumsum([0] + [w.size for w in weights_t])
        t_offsets = np.cumsum([0] + [t.size for t in thresholds] + [0])
        layout = np.array([[offsets[i], w.shape[0], w.shape[1], k[i], t_offsets[i]]
                           for i, w in enumerate(weights_t)], dtype=np.int64)
        # pixel >= t for a uint8 pixel is the same comparison with t clipped to [0, 256]: int16, 16 lanes a vector
        thr16 = np.clip(np.asarray(thr0, dtype=np.int64), 0, 256).astype(np.int16)
        scratch = np.zeros(int(_mlp_scratch_words(MLP_BLOCK, thr16.shape[0], layout)), np.uint64)
        parts = [thr16,
                 np.concatenate([w.reshape(-1) for w in weights_t]).astype(np.uint64),
                 np.concatenate(thresholds).astype(np.int32) if thresholds else np.zeros(1, np.int32),
                 np.ascontiguousarray(mul, dtype=np.float32), np.ascontiguousarray(add, dtype=np.float32), scratch]
        header = 8 * (MLP_META_LAYOUT + layout.size)
        chunks, spans, pos = [], [], header
        for part in parts:
            raw = part.view(np.uint8).reshape(-1)
            spans += [pos, raw.size]
            pad = (-raw.size) % 8  # every section starts 8-byte aligned (the uint64 weights need it)
            chunks += [raw, np.zeros(pad, np.uint8)]
            pos += raw.size + pad
        meta = np.array([thr0.shape[0], weights_t[-1].shape[1], len(weights_t), *spans, *layout.reshape(-1)],
                        dtype=np.int64)
        assert meta.nbytes == header
        self.blob = np.concatenate([meta.view(np.uint8)] + chunks)
        self.meta = self.blob[:header].view(np.int64)
        self.m_last = int(weights_t[-1].shape[1])
        self.no_logits = np.empty((0, self.m_last), np.float32)
        self.into = mlp_into_kernel()

    def __call__(self, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K0) uint8 C-contiguous pixels -> (logits float32 (N, M_last), labels int64 (N,))."""
        logits, labels = np.empty((len(px), self.m_last), np.float32), np.empty(len(px), np.int64)
        self._run(px, labels, logits)
        return logits, labels

    def _run(self, px: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> None:
        if not px.flags.writeable:  # the kernel is typed for writable arrays (numba types read-only ones apart)
            px = px.copy()
        if not self.into(px, self.blob, labels, logits):
            raise ValueError(f"MlpNet: input {px.shape} does not have {int(self.meta[0])} values per image")


INT_CONV_PIXELS = 4  # output pixels of one row per pass in _int_conv (each weight row loaded once for all four)


@njit(cache=True, nogil=True)
def _int_conv(codes, w, kh, kw, sh, sw, act_bias, thr, pack, acc, acc_out, words_out):
    """Direct integer convolution of multi-bit codes with +1/-1 weights (no im2col, no bit planes).

    codes (N, H, W, C) uint8 NHWC, value = code + act_bias; w (K, M) int32 +1/-1 with rows k = (kh*KW + kw)*C + c
    (FINN's window order); ``pack``: out bit = (acc >= thr[j]) packed 64 a word into words_out (N, OH, OW, ceil(M/64)),
    else acc_out (N, OH, OW, M) int32. ``acc`` (INT_CONV_PIXELS, M) scratch of w's dtype: int16 where
    |acc| <= K * max|value| fits (16 lanes a vector instead of 8; the products wrap nowhere), else int32.

    Register blocking over output pixels: INT_CONV_PIXELS neighbours in a row share each weight row load
    (measured 1.5x over one pixel a pass on CNV's first layer, AVX2). At a row's end the missing pixels repeat the
    last one (computed, never written).
    """
    n, h, wd, c = codes.shape
    m = w.shape[1]
    oh = (h - kh) // sh + 1
    ow = (wd - kw) // sw + 1
    for i in range(n):
        for y in range(oh):
            for x0 in range(0, ow, INT_CONV_PIXELS):
                c0 = x0 * sw
                c1 = min(x0 + 1, ow - 1) * sw
                c2 = min(x0 + 2, ow - 1) * sw
                c3 = min(x0 + 3, ow - 1) * sw
                acc[:] = 0
                for a in range(kh):
                    yy = y * sh + a
                    for b in range(kw):
                        base = (a * kw + b) * c
                        for ch in range(c):
                            v0 = np.int32(codes[i, yy, c0 + b, ch]) + act_bias  # in [-2**15, 2**15)
                            v1 = np.int32(codes[i, yy, c1 + b, ch]) + act_bias
                            v2 = np.int32(codes[i, yy, c2 + b, ch]) + act_bias
                            v3 = np.int32(codes[i, yy, c3 + b, ch]) + act_bias
                            for j in range(m):  # contiguous in j: vector multiply-add over the output channels
                                wj = w[base + ch, j]
                                acc[0, j] += v0 * wj
                                acc[1, j] += v1 * wj
                                acc[2, j] += v2 * wj
                                acc[3, j] += v3 * wj
                for p in range(min(INT_CONV_PIXELS, ow - x0)):
                    if pack:
                        for q in range((m + 63) // 64):
                            word = np.uint64(0)
                            for bit in range(min(64, m - q * 64)):
                                j = q * 64 + bit
                                word |= np.uint64(acc[p, j] >= thr[j]) << np.uint64(bit)
                            words_out[i, y, x0 + p, q] = word
                    else:
                        for j in range(m):
                            acc_out[i, y, x0 + p, j] = acc[p, j]


def int_conv(codes: np.ndarray, w_km: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], act_bias: int,
             thr: np.ndarray | None = None) -> np.ndarray:
    """Conv of (N, H, W, C) uint8 codes (value code + act_bias) with (K, M) +1/-1 weights (int16 or int32: the
    accumulator's type, see :func:`int_weights`).

    Returns the accumulators int32 (N, OH, OW, M), or with ``thr`` ((M,) int32) the packed output bits
    (N, OH, OW, ceil(M/64)) uint64, bit = (acc >= thr). The same integers as the bit-plane path (tested).
    """
    n, h, wd, _ = codes.shape
    m = w_km.shape[1]
    oh, ow = (h - kernel[0]) // stride[0] + 1, (wd - kernel[1]) // stride[1] + 1
    pack = thr is not None
    acc = np.empty((n, oh, ow, m) if not pack else (0, 0, 0, 0), dtype=np.int32)
    words = np.empty((n, oh, ow, (m + 63) // 64) if pack else (0, 0, 0, 0), dtype=np.uint64)
    _int_conv(np.ascontiguousarray(codes), w_km, kernel[0], kernel[1], stride[0], stride[1], np.int32(act_bias),
              thr if pack else np.zeros(1, np.int32), pack, np.empty((INT_CONV_PIXELS, m), w_km.dtype), acc, words)
    return words if pack else acc


@njit(cache=True, nogil=True)
def _xnor_conv_pack(words, w_t, kh, kw, sh, sw, k, thr, out):
    """XNOR conv straight from packed pixels (no im2col copy), fused threshold + pack.

    words (N, H, W, WC) uint64, a pixel's channels packed (WC whole words); w_t (KH*KW*WC, M) uint64 transposed
    weights, row (kh*KW + kw)*WC + q (FINN's window order, as the packed im2col row); thr (M,) int32 on the
    popcount acc = k - mismatches; out (N, OH, OW, ceil(M/64)) uint64.
    """
    n, h, wd, wc = words.shape
    m = w_t.shape[1]
    oh = (h - kh) // sh + 1
    ow = (wd - kw) // sw + 1
    acc = np.empty(m, np.uint64)
    for i in range(n):
        for y in range(oh):
            for x in range(ow):
                for j in range(m):
                    acc[j] = 0
                for a in range(kh):
                    for b in range(kw):
                        base = (a * kw + b) * wc
                        for q in range(wc):
                            xq = words[i, y * sh + a, x * sw + b, q]
                            for j in range(m):  # contiguous in j, as in _popcount_row
                                acc[j] += _ctpop64(xq ^ w_t[base + q, j])
                for q in range((m + 63) // 64):
                    word = np.uint64(0)
                    for bit in range(min(64, m - q * 64)):
                        j = q * 64 + bit
                        if k - np.int32(acc[j]) >= thr[j]:
                            word |= np.uint64(1) << np.uint64(bit)
                    out[i, y, x, q] = word


def xnor_conv_pack(words: np.ndarray, w_t: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], k: int,
                   thr: np.ndarray) -> np.ndarray:
    """Binary conv of packed pixels (N, H, W, WC) with transposed weights (KH*KW*WC, M), bit = (acc >= thr):
    packed output pixels (N, OH, OW, ceil(M/64)) uint64. The same words as im2col + xnor_popcount_threshold_pack."""
    n, h, wd, _ = words.shape
    m = w_t.shape[1]
    oh, ow = (h - kernel[0]) // stride[0] + 1, (wd - kernel[1]) // stride[1] + 1
    out = np.empty((n, oh, ow, (m + 63) // 64), dtype=np.uint64)
    _xnor_conv_pack(np.ascontiguousarray(words), w_t, kernel[0], kernel[1], stride[0], stride[1], np.int32(k), thr, out)
    return out


def int_weights(w_int: np.ndarray, act_bits: int, act_bias: int) -> np.ndarray:
    """(M, K) +1/-1 weights -> (K, M) for :func:`int_conv`: int16 where every accumulator fits in int16
    (K * max|code + act_bias| < 2**15; CNV's first layer: 27 * 128), else int32."""
    k = w_int.shape[1]
    top = max(abs(act_bias), abs((1 << act_bits) - 1 + act_bias))
    dtype = np.int16 if k * top < (1 << 15) else np.int32
    return np.ascontiguousarray(w_int.T, dtype=dtype)


@njit(cache=True, nogil=True)
def _or_pool(words, kh, kw, sh, sw, out):
    """2-d max pooling of packed binary pixels (N, H, W, WC) uint64 as OR of the words, no padding, floor mode."""
    n, _, _, wc = words.shape
    oh, ow = out.shape[1], out.shape[2]
    for i in range(n):
        for y in range(oh):
            for x in range(ow):
                for q in range(wc):
                    out[i, y, x, q] = words[i, y * sh, x * sw, q]
                for a in range(kh):
                    for b in range(kw):
                        if a or b:
                            for q in range(wc):
                                out[i, y, x, q] |= words[i, y * sh + a, x * sw + b, q]


def or_pool(words: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """host.xnor_conv.max_pool(..., packed=True) compiled: (N, H, W, WC) uint64 -> (N, OH, OW, WC) uint64."""
    n, h, w, wc = words.shape
    oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.empty((n, oh, ow, wc), dtype=np.uint64)
    _or_pool(np.ascontiguousarray(words), kernel[0], kernel[1], stride[0], stride[1], out)
    return out


@njit(cache=True, nogil=True)
def _pixel_codes(x, lut, out):
    """x (N, H, W, C) uint8 raw pixels, lut (C or 1, 256) uint8 -> out (N, H, W, C) uint8 input codes."""
    n, h, w, c = x.shape
    per_channel = lut.shape[0] != 1
    for i in range(n):
        for y in range(h):
            for z in range(w):
                for ch in range(c):
                    out[i, y, z, ch] = lut[ch if per_channel else 0, x[i, y, z, ch]]


def pixel_codes(x_nhwc: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Raw uint8 pixels (N, H, W, C) through the input thresholds' table (C or 1, 256) uint8 -> input codes, same
    shape, uint8 (host.xnor's _codes(0) for a conv net, compiled)."""
    out = np.empty(x_nhwc.shape, dtype=np.uint8)
    _pixel_codes(np.ascontiguousarray(x_nhwc), np.ascontiguousarray(lut), out)
    return out
