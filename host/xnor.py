"""Software XNOR-popcount reference for w1a1 and w1a2 MLPs (TFC/SFC/LFC): the labels hardware is checked against.

It computes exactly what FINN's dataflow accelerator computes, in integers:

1. Input Thresholding of raw uint8 pixels: bit = (pixel >= t), FINN's MultiThreshold with one
   threshold (the Brevitas model's x/255*2-1 and sign quantizer, folded by streamlining).
2. Per hidden layer: acc = popcount(XNOR(x_bits, w_bits)) (FINN's XnorPopcountMatMul: the number of
   agreeing positions), then bit = (acc >= t) (MultiThreshold / MVAU thresholds).
3. Last layer: acc, then logits = acc * output_mul + output_add (float32), top-1 = first argmax.

2-bit activations (w1a2): the activation code c (a threshold count, value c + act_bias) is split into
bit planes b_j, and each +1/-1 dot product is sum_j 2**j (2 popcount(b_j AND w+) - popcount(b_j)) +
act_bias (2 popcount(w+) - K), exactly FINN's integer MVAU (see :func:`bitplane_dot_numpy`; numpy path
on every backend, the numba kernels serve the 1-bit layers).

Bits are packed 64 per little-endian uint64 word (``# (N, ceil(K/64))``); padding bits are 0 in both
operands, so they never count as a mismatch and acc = K - popcount(x XOR w).

Two backends compute the same integers: ``numpy`` (everywhere, numpy 1.21+; ``np.bitwise_count`` on
numpy >= 2, a 16-bit lookup table before) and ``numba`` (an optional compiled kernel, see
``host/xnor_numba.py``; used when numba imports, else the numpy path). Only numpy is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from host.xnor_format import XnorModel, load_xnor_model

# np.bitwise_count exists from numpy 2.0 on; the board image has numpy 1.x, hence the table fallback.
_BITWISE_COUNT = getattr(np, "bitwise_count", None)
_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)

# Cap on the temporary (n, M, W) XOR block of the numpy path, in uint64 words (32 MiB).
_NUMPY_BLOCK_WORDS = 1 << 22


def popcount(words: np.ndarray, use_table: bool | None = None) -> np.ndarray:
    """Per-element popcount of a uint64 array as uint8; ``use_table`` forces (True) or forbids the table."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if use_table is None:
        use_table = _BITWISE_COUNT is None
    if not use_table:
        if _BITWISE_COUNT is None:
            raise RuntimeError(f"numpy {np.__version__} has no bitwise_count; use the table fallback")
        return _BITWISE_COUNT(words)
    halves = words.view(np.uint16).reshape(words.shape + (4,))  # (..., 4) 16-bit pieces
    return _POPCOUNT16[halves].sum(axis=-1, dtype=np.uint8)


def words_for(k: int) -> int:
    """Number of uint64 words that hold k bits."""
    return (k + 63) // 64


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, K) 0/1 -> (N, ceil(K/64)) little-endian uint64 words; bit j of the row is bit j%64 of word j//64."""
    bits = np.asarray(bits)
    k = bits.shape[1]
    packed = np.packbits(bits.astype(bool), axis=1, bitorder="little")  # (N, ceil(K/8)) uint8
    return bytes_to_words(packed, k)


def bytes_to_words(packed: np.ndarray, k: int) -> np.ndarray:
    """(N, ceil(K/8)) uint8 little-bit-order rows -> (N, ceil(K/64)) uint64 words (zero padded)."""
    n = packed.shape[0]
    out = np.zeros((n, words_for(k) * 8), dtype=np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (N, W) uint64 -> (N, K) uint8 0/1."""
    as_bytes = np.ascontiguousarray(words).astype("<u8", copy=False).view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, count=k, bitorder="little")


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


def pack_planes(codes: np.ndarray, bits: int) -> np.ndarray:
    """(N, K) non-negative integer codes -> (bits, N, ceil(K/64)) packed bit planes, plane j = bit j."""
    codes = np.asarray(codes)
    return np.stack([pack_bits((codes >> j) & 1) for j in range(bits)])


def threshold_count(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """FINN MultiThreshold without scale/bias: the number of thresholds t with value >= t, int32 (N, C).

    ``thresholds`` is (C or 1, T): one row per channel or one row for all.
    """
    cmp = values[:, :, None] >= thresholds[None, :, :]  # (N, C, T)
    return np.count_nonzero(cmp, axis=-1).astype(np.int32)


def _numba_module():
    """The compiled kernels, or None where numba is missing or disabled (BNNFLOW_XNOR_BACKEND=numpy)."""
    if os.environ.get("BNNFLOW_XNOR_BACKEND", "").lower() == "numpy":
        return None
    try:
        from host import xnor_numba
    except ImportError:
        return None
    return xnor_numba


def available_backends() -> list[str]:
    """Backends usable here: always ``numpy``, plus ``numba`` where it imports."""
    return ["numpy"] + (["numba"] if _numba_module() is not None else [])


class XnorReference:
    """Runs an :class:`XnorModel` on raw uint8 pixels, in batches (the last one may be partial)."""

    def __init__(self, model: XnorModel, backend: str = "auto", use_table: bool | None = None):
        if backend not in ("auto", "numpy", "numba"):
            raise ValueError(f"backend must be auto, numpy or numba, not {backend!r}")
        kernels = _numba_module() if backend in ("auto", "numba") else None
        if backend == "numba" and kernels is None:
            raise RuntimeError("backend 'numba' requested but numba is not importable here")
        self.model = model
        self.backend = "numba" if kernels is not None else "numpy"
        self._kernels = kernels
        self.use_table = use_table
        self.in_features = model.in_features
        self._in_thr = np.ascontiguousarray(model.input_thresholds[:, 0], dtype=np.int32)  # (C,)
        self._w = [bytes_to_words(layer.weights_packed, layer.in_features) for layer in model.layers]  # (M, W)
        # the compiled kernels read the weights transposed, (W, M): contiguous over neurons
        self._w_t = [np.ascontiguousarray(w.T) for w in self._w] if kernels is not None else None
        self._thr = [
            None if layer.thresholds is None
            else np.ascontiguousarray(np.broadcast_to(layer.thresholds[:, 0], (layer.out_features,)), dtype=np.int32)
            for layer in model.layers
        ]
        # multi-bit activations (w1a2): every threshold column, (C or 1, T), for threshold_count
        self._bits = [int(layer.act_bits) for layer in model.layers]
        self._in_thr_all = np.ascontiguousarray(model.input_thresholds, dtype=np.int32)
        self._thr_all = [None if layer.thresholds is None else np.ascontiguousarray(layer.thresholds, dtype=np.int32)
                         for layer in model.layers]

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto") -> XnorReference:
        """Load and check ``xnor_model.npz`` (see host/xnor_format.py), then build the engine."""
        return cls(load_xnor_model(path), backend=backend)

    # --- the layers, one packed batch at a time -------------------------------------------------
    def _flat_pixels(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.uint8:
            raise TypeError(f"XNOR reference input must be uint8 raw pixels, got {x.dtype}")
        flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (N, K0)
        if flat.shape[1] != self.in_features:
            raise ValueError(f"input has {flat.shape[1]} values per image, model expects {self.in_features}")
        return np.ascontiguousarray(flat)

    def _input_codes(self, flat: np.ndarray) -> np.ndarray:
        """Input activation codes of layer 0, uint8 (N, K0): 0/1 bits, or threshold counts (multi-bit)."""
        if self._bits[0] == 1:
            return (flat >= self._in_thr[None, :]).astype(np.uint8)
        return threshold_count(flat, self._in_thr_all).astype(np.uint8)

    def _codes_after(self, i: int, acc: np.ndarray) -> np.ndarray:
        """Output activation codes of hidden layer i (the input codes of layer i+1), uint8 (N, M)."""
        if self._bits[i + 1] == 1:
            return (acc >= self._thr[i][None, :]).astype(np.uint8)
        return threshold_count(acc, self._thr_all[i]).astype(np.uint8)

    def _encode(self, i: int, codes: np.ndarray) -> np.ndarray:
        """Codes -> what dense layer i reads: packed words (N, W) for 1 bit, bit planes (P, N, W) else."""
        if self._bits[i] == 1:
            return pack_bits(codes)
        return pack_planes(codes, self._bits[i])

    def _input_bits(self, flat: np.ndarray) -> np.ndarray:
        if self._bits[0] != 1:
            return self._encode(0, self._input_codes(flat))
        if self._kernels is not None:
            return self._kernels.threshold_pack_u8(flat, self._in_thr)
        return pack_bits(flat >= self._in_thr[None, :])

    def _dense(self, i: int, x_words: np.ndarray) -> np.ndarray:
        """Accumulators of dense layer i, int32 (N, M)."""
        layer = self.model.layers[i]
        if self._bits[i] != 1:
            return bitplane_dot_numpy(x_words, self._w[i], layer.in_features, layer.act_bias, self.use_table)
        if self._kernels is not None:
            return self._kernels.xnor_popcount(x_words, self._w_t[i], layer.in_features)
        return xnor_popcount_numpy(x_words, self._w[i], layer.in_features, self.use_table)

    def _hidden(self, i: int, x_words: np.ndarray) -> np.ndarray:
        """Dense layer i plus its thresholds, straight to the packed input of layer i+1."""
        if self._bits[i] == 1 and self._bits[i + 1] == 1:
            if self._kernels is not None:
                return self._kernels.xnor_popcount_threshold_pack(
                    x_words, self._w_t[i], self.model.layers[i].in_features, self._thr[i]
                )
            return pack_bits(self._dense(i, x_words) >= self._thr[i][None, :])
        return self._encode(i + 1, self._codes_after(i, self._dense(i, x_words)))

    def _logits_of(self, acc: np.ndarray) -> np.ndarray:
        return acc.astype(np.float32) * self.model.output_mul + self.model.output_add

    # --- public API -------------------------------------------------------------------------------
    def batches(self, x: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start, flat uint8 batch) pairs covering every image, the last batch possibly partial."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        flat = self._flat_pixels(x)
        for lo in range(0, flat.shape[0], batch_size):
            yield lo, flat[lo : lo + batch_size]

    def accumulators(self, x: np.ndarray) -> list[np.ndarray]:
        """Every dense layer's integer accumulator for a batch: list of int32 (N, M_i), for verification."""
        words = self._input_bits(self._flat_pixels(x))
        out = []
        for i in range(len(self.model.layers)):
            acc = self._dense(i, words)
            out.append(acc)
            if self._thr[i] is not None:
                words = self._encode(i + 1, self._codes_after(i, acc))
        return out

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every intermediate of a batch, by name, in execution order (for naming a differing layer).

        ``layer{i}.in_bits`` uint8 (N, K_i) input codes of dense layer i (0/1 bits for XNOR layers, the
        threshold count for multi-bit layers; value = code + act_bias), ``layer{i}.acc`` int32 (N, M_i)
        accumulators (popcount for XNOR layers, signed dot product for bit-plane layers), ``logits``
        float32 (N, M_last).
        """
        flat = self._flat_pixels(x)
        bits = self._input_codes(flat)
        out: dict[str, np.ndarray] = {}
        for i in range(len(self.model.layers)):
            out[f"layer{i}.in_bits"] = bits
            acc = self._dense(i, self._encode(i, bits))
            out[f"layer{i}.acc"] = acc
            if self._thr[i] is not None:
                bits = self._codes_after(i, acc)
        out["logits"] = self._logits_of(out[f"layer{len(self.model.layers) - 1}.acc"])
        return out

    def final_accumulators(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """The last layer's popcount accumulators, int32 (N, M_last), the fast fused path."""
        parts = []
        for _, flat in self.batches(x, batch_size):
            words = self._input_bits(flat)
            for i in range(len(self.model.layers) - 1):
                words = self._hidden(i, words)
            parts.append(self._dense(len(self.model.layers) - 1, words))
        m = self.model.layers[-1].out_features
        return np.concatenate(parts) if parts else np.zeros((0, m), np.int32)

    def logits(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """float32 (N, M_last): acc * output_mul + output_add, as FINN's trailing Mul/Add compute it."""
        return self._logits_of(self.final_accumulators(x, batch_size))

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Top-1 class per image, int64 (N,); ties go to the lowest index (np.argmax)."""
        return np.argmax(self.logits(x, batch_size), axis=1).astype(np.int64)
