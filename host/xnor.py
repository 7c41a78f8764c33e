"""Software XNOR-popcount reference for w1a1/w1a2/w2a2 MLPs (TFC/SFC/LFC) and CNV: the labels hardware must match.

It computes exactly what FINN's dataflow accelerator computes, in integers:

1. Input Thresholding of raw uint8 pixels: bit = (pixel >= t), FINN's MultiThreshold with one
   threshold (the Brevitas model's x/255*2-1 and sign quantizer, folded by streamlining).
2. Per hidden layer: acc = popcount(XNOR(x_bits, w_bits)) (FINN's XnorPopcountMatMul: the number of
   agreeing positions), then bit = (acc >= t) (MultiThreshold / MVAU thresholds).
3. Last layer: acc, then logits = acc * output_mul + output_add (float32), top-1 = first argmax.

Ternary weights (w2a2: {-1, 0, +1}, a +1 and a -1 mask) only occur on bit-plane layers; there the dot
product is sum_j 2**j (popcount(b_j AND w+) - popcount(b_j AND w-)) + act_bias (|w+| - |w-|)
(:func:`ternary_dot_numpy`), for dense and conv layers alike.

2-bit activations (w1a2): the activation code c (a threshold count, value c + act_bias) is split into
bit planes b_j, and each +1/-1 dot product is sum_j 2**j (2 popcount(b_j AND w+) - popcount(b_j)) +
act_bias (2 popcount(w+) - K), exactly FINN's integer MVAU (see :func:`bitplane_dot_numpy`). CNV's
first layer is such a layer with 8-bit codes (its Q1.7 input, 255 thresholds on the pixels).

Convolutions (CNV) are the same matrix applied to every im2col window of an NHWC feature map, in
FINN's window order (kh, kw, c). Binary feature maps stay packed per pixel (64 channels a word):
when the channels fill whole words the window of packed pixels *is* the packed im2col row, so
hidden conv layers go from packed words to packed words (fused thresholds), and 2x2 max pooling
of binary activations is an OR of the packed words.

Bits are packed 64 per little-endian uint64 word (``# (N, ceil(K/64))``); padding bits are 0 in both
operands, so they never count as a mismatch and acc = K - popcount(x XOR w).

Two backends compute the same integers: ``numpy`` (everywhere, numpy 1.21+; ``np.bitwise_count`` on
numpy >= 2, a 16-bit lookup table before) and ``numba`` (an optional compiled kernel, see
``host/xnor_numba.py``; used when numba imports, else the numpy path). Only numpy is imported here.

This module is the engine (:class:`XnorReference`); the arithmetic of each layer kind lives beside it
and is re-exported here: ``host/xnor_bits.py`` (packing, popcount, thresholds), ``xnor_dense.py``
(XNOR popcount), ``xnor_bitplane.py`` (multi-bit activations), ``xnor_ternary.py`` (ternary weights)
and ``xnor_conv.py`` (im2col, max pooling).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np

from host.xnor_bitplane import bitplane_dot_numpy
from host.xnor_bits import bytes_to_words, pack_bits, pack_planes, popcount, threshold_count, unpack_bits, words_for
from host.xnor_conv import im2col, max_pool
from host.xnor_dense import xnor_popcount_numpy
from host.xnor_format import XnorModel, load_xnor_model, validate_model
from host.xnor_ternary import ternary_dot_numpy

__all__ = ["XnorReference", "available_backends", "bitplane_dot_numpy", "bytes_to_words", "im2col", "max_pool",
           "pack_bits", "pack_planes", "popcount", "ternary_dot_numpy", "threshold_count", "unpack_bits",
           "words_for", "xnor_popcount_numpy"]


_INT64, _FLOAT32 = np.dtype(np.int64), np.dtype(np.float32)  # dtype objects: np.empty skips a conversion per call


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int >= 1, the same for every backend: TypeError for anything but an integer (a float,
    None, a string, a bool), ValueError for one below 1."""
    if type(batch_size) is not int and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))):
        raise TypeError(f"batch_size must be an integer >= 1, got {batch_size!r} ({type(batch_size).__name__})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


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
    """Runs an :class:`XnorModel` on raw uint8 pixels, in batches (the last one may be partial).

    Activations between layers are either codes (uint8, (N, H, W, C) feature maps or (N, K) vectors)
    or, for 1-bit layers, packed words ((N, H, W, ceil(C/64)) per pixel or (N, ceil(K/64))). The
    fast path (:meth:`final_accumulators`) keeps binary activations packed from layer to layer:
    im2col on packed pixels where a pixel's channels fill whole words, fused threshold + pack, and
    max pooling as OR. :meth:`trace` goes through codes and keeps every intermediate.
    """

    def __init__(self, model: XnorModel, backend: str = "auto", use_table: bool | None = None):
        if backend not in ("auto", "numpy", "numba"):
            raise ValueError(f"backend must be auto, numpy or numba, not {backend!r}")
        kernels = _numba_module() if backend in ("auto", "numba") else None
        if backend == "numba" and kernels is None:
            raise RuntimeError("backend 'numba' requested but numba is not importable here")
        validate_model(model)  # a model built in memory gets the same checks as a loaded file
        self.model = model
        self.backend = "numba" if kernels is not None else "numpy"
        self._kernels = kernels
        self.use_table = use_table
        self.in_features = model.in_features
        layers = model.layers
        self._w = [bytes_to_words(layer.weights_packed, layer.in_features) for layer in layers]  # (M, W)
        # ternary layers (weight_bits 2): the -1 mask; self._w is then the +1 mask
        self._w_neg = [None if layer.weights_neg is None else bytes_to_words(layer.weights_neg, layer.in_features)
                       for layer in layers]
        # the compiled kernels read the weights transposed, (W, M): contiguous over neurons
        self._w_t = [np.ascontiguousarray(w.T) for w in self._w] if kernels is not None else None
        self._w_neg_t = ([None if w is None else np.ascontiguousarray(w.T) for w in self._w_neg]
                         if kernels is not None else None)
        self._bits = [int(layer.act_bits) for layer in layers]
        # numpy path, multi-bit input and +1/-1 weights (CNV's 8-bit first layer, w1a2): (K, M) float32 weights for one
        # BLAS matmul of the values, exact because every product and partial sum is an integer below 2**24 in
        # magnitude (K * max|code + act_bias| < 2**24, checked here); trace() keeps the bit-plane arithmetic
        self._w_f32 = [np.ascontiguousarray(layer.weights_int().T, dtype=np.float32)
                       if kernels is None and layer.act_bits > 1 and layer.weight_bits == 1
                       and layer.in_features * max(abs(layer.act_bias), abs((1 << layer.act_bits) - 1 + layer.act_bias))
                       < (1 << 24) else None for layer in layers]
        # multi-bit conv layers with +1/-1 weights (CNV's 8-bit first layer) on the compiled backend: a direct integer
        # convolution of the codes, (K, M) int16 / int32 weights; None where the bit-plane path runs
        self._w_int = [kernels.int_weights(layer.weights_int(), layer.act_bits, layer.act_bias)
                       if kernels is not None and layer.conv is not None and layer.act_bits > 1
                       and layer.weight_bits == 1 else None for layer in layers]
        # thresholds feeding layer i's input: the pixels' for i = 0, layer i-1's after; (C or 1, T)
        self._thr_in = [np.ascontiguousarray(t, dtype=np.int32)
                        for t in [model.input_thresholds] + [layer.thresholds for layer in layers[:-1]]]
        # first threshold column broadcast over the channels: the 1-bit comparison, (C,)
        self._thr1 = [np.ascontiguousarray(t[:, 0]) for t in self._thr_in]
        self._thr1[1:] = [np.ascontiguousarray(np.broadcast_to(t, (layer.out_features,)))
                          for t, layer in zip(self._thr1[1:], layers)]
        # what each layer receives: (H, W, C) feature map or (K,) vector
        shapes = [(*model.input_shape[1:], model.input_shape[0]) if model.is_conv else (model.in_features,)]
        self._in_shape = shapes + [layer.out_shape() for layer in layers[:-1]]
        self._packed_route = [self._can_stay_packed(i) for i in range(len(layers))]
        # pixel -> input code per channel row, (C or 1, 256): 255 thresholds (CNV's 8-bit input) on a
        # whole batch would be an (N, H, W, C, T) comparison; a table lookup is one gather
        self._pixel_lut = threshold_count(np.arange(256, dtype=np.int32)[:, None], self._thr_in[0]).T.astype(np.uint8)
        # images per internal chunk: the largest per-image accumulator block stays near 2**22 values
        per_image = max(layer.out_features * (int(np.prod(layer.conv.out_dim)) if layer.conv else 1)
                        for layer in layers)
        self._chunk = max(1, (1 << 22) // per_image)
        # a w1a1 MLP on the compiled backend runs as one compiled call per batch (no per-layer Python)
        self._net = self._compiled_mlp() if kernels is not None else None
        # predict / logits' fast path: the whole-network kernel's allocation-free calls and its constants
        net = self._net
        self._fast = None if net is None else (net.into, net.blob, net.no_logits, net.m_last)

    def _compiled_mlp(self):
        """The whole-network kernel (host/xnor_numba.MlpNet) where every layer is dense w1a1, else None."""
        layers = self.model.layers
        if any(la.conv is not None or la.act_bits != 1 or la.weight_bits != 1 for la in layers):
            return None
        thr0 = np.broadcast_to(self._thr1[0], (self.in_features,))
        return self._kernels.MlpNet(self._w_t, [la.in_features for la in layers], self._thr1[1:], thr0,
                                    self.model.output_mul, self.model.output_add)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto") -> XnorReference:
        """Load and check ``xnor_model.npz`` (see host/xnor_format.py), then build the engine."""
        return cls(load_xnor_model(path), backend=backend)

    def _can_stay_packed(self, i: int) -> bool:
        """Layer i can read per-pixel packed words as its packed rows (1-bit input, word-aligned channels)."""
        shape = self._in_shape[i]
        if self._bits[i] != 1:
            return False
        if len(shape) == 1 or shape[-1] % 64 == 0:  # a vector, or whole words per pixel (packed im2col / flatten)
            return True
        return self.model.layers[i].conv is None and shape[0] * shape[1] == 1  # dense on a 1x1 map

    # --- activations --------------------------------------------------------------------------
    def _pixels(self, x: np.ndarray) -> np.ndarray:
        """Raw uint8 images -> (N, K0) values for an MLP, NHWC (N, H, W, C) for a conv net."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype != np.uint8:
            raise TypeError(f"XNOR reference input must be uint8 raw pixels, got {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"input must be a batch of images (N, ...), got a {x.ndim}-d array")
        per_image = math.prod(x.shape[1:])
        if per_image != self.in_features:
            raise ValueError(f"input has {per_image} values per image, model expects {self.in_features}")
        if self.model.is_conv:
            return np.ascontiguousarray(x.reshape((x.shape[0], *self.model.input_shape)).transpose(0, 2, 3, 1))
        x = x.reshape(x.shape[0], per_image)
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    def _codes(self, i: int, values: np.ndarray) -> np.ndarray:
        """Threshold ``values`` (pixels for i = 0, layer i-1's accumulators) into layer i's input codes."""
        if i == 0:
            lut = self._pixel_lut
            return lut[0][values] if lut.shape[0] == 1 else lut[np.arange(lut.shape[0]), values]
        if self._bits[i] == 1:
            codes = (values >= self._thr1[i]).astype(np.uint8)
        else:
            codes = threshold_count(values, self._thr_in[i]).astype(np.uint8)
        pool = self.model.layers[i - 1].pool if i > 0 else None
        return codes if pool is None else max_pool(codes, pool.kernel, pool.stride)

    def _to_words(self, codes: np.ndarray) -> np.ndarray:
        """1-bit codes -> packed words, per pixel for a feature map (N, H, W, C)."""
        if codes.ndim == 4:
            n, h, w, c = codes.shape
            return pack_bits(codes.reshape(n * h * w, c)).reshape(n, h, w, words_for(c))
        return pack_bits(codes)

    def _to_codes(self, i: int, words: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_to_words` for layer i's input shape."""
        shape = self._in_shape[i]
        if words.ndim == 4:
            n, h, w, wc = words.shape
            return unpack_bits(words.reshape(n * h * w, wc), shape[-1]).reshape(n, h, w, shape[-1])
        return unpack_bits(words, int(np.prod(shape)))

    # --- one layer ------------------------------------------------------------------------------
    def _rows(self, i: int, a: np.ndarray) -> np.ndarray:
        """Codes or packed words layer i receives -> its matrix rows: im2col windows (conv) or flattened."""
        conv = self.model.layers[i].conv
        if conv is not None:
            a = im2col(a, conv.kernel, conv.stride)
        return np.ascontiguousarray(a.reshape(-1, a.shape[-1]) if conv is not None else a.reshape(len(a), -1))

    def _dense(self, i: int, x: np.ndarray) -> np.ndarray:
        """Accumulators int32 (R, M) of layer i's matrix on encoded rows (packed words or bit planes)."""
        layer = self.model.layers[i]
        if self._w_neg[i] is not None:  # ternary weights (always a bit-plane layer)
            if self._kernels is not None:
                return self._kernels.ternary_dot(x, self._w_t[i], self._w_neg_t[i], layer.act_bias)
            return ternary_dot_numpy(x, self._w[i], self._w_neg[i], layer.act_bias, self.use_table)
        if self._bits[i] != 1:
            if self._kernels is not None:
                return self._kernels.bitplane_dot(x, self._w_t[i], layer.in_features, layer.act_bias)
            return bitplane_dot_numpy(x, self._w[i], layer.in_features, layer.act_bias, self.use_table)
        if self._kernels is not None:
            return self._kernels.xnor_popcount(x, self._w_t[i], layer.in_features)
        return xnor_popcount_numpy(x, self._w[i], layer.in_features, self.use_table)

    def _shape_out(self, i: int, rows: np.ndarray, n: int) -> np.ndarray:
        """(R, X) per-window rows of layer i -> (N, OH, OW, X) for conv, (N, X) for dense."""
        conv = self.model.layers[i].conv
        return rows.reshape(n, *conv.out_dim, rows.shape[-1]) if conv is not None else rows

    def _acc_from_codes(self, i: int, codes: np.ndarray) -> np.ndarray:
        rows = self._rows(i, codes)
        enc = pack_bits(rows) if self._bits[i] == 1 else pack_planes(rows, self._bits[i])
        return self._shape_out(i, self._dense(i, enc), len(codes))

    def _acc(self, i: int, state: tuple[str, np.ndarray]) -> np.ndarray:
        """Fast path: layer i's accumulators, shaped, from its input state ('codes' | 'words', array)."""
        kind, a = state
        if self._w_int[i] is not None and kind == "codes":
            return self._int_conv(i, a)
        if not self._packed_route[i]:
            codes = a if kind == "codes" else self._to_codes(i, a)
            if self._w_f32[i] is not None:  # numpy path, multi-bit input: one exact float32 matmul (BLAS)
                layer = self.model.layers[i]
                rows = self._rows(i, codes).astype(np.float32) + np.float32(layer.act_bias)
                return self._shape_out(i, (rows @ self._w_f32[i]).astype(np.int32), len(codes))
            return self._acc_from_codes(i, codes)
        rows = self._rows(i, a if kind == "words" else self._to_words(a))
        return self._shape_out(i, self._dense(i, rows), len(a))

    def _int_conv(self, i: int, codes: np.ndarray, thr: np.ndarray | None = None) -> np.ndarray:
        """Layer i (multi-bit conv, compiled) on its input codes: accumulators, or packed bits with ``thr``."""
        layer = self.model.layers[i]
        return self._kernels.int_conv(codes, self._w_int[i], layer.conv.kernel, layer.conv.stride, layer.act_bias, thr)

    def _step(self, i: int, state: tuple[str, np.ndarray]) -> tuple[str, np.ndarray]:
        """Fast path: layer i's input state -> layer i+1's; binary to binary stays packed (fused thresholds)."""
        kind, a = state
        if self._w_int[i] is not None and kind == "codes":
            layer = self.model.layers[i]
            if self._bits[i + 1] != 1:
                return "codes", self._codes(i + 1, self._int_conv(i, a))
            out = self._int_conv(i, a, self._thr1[i + 1])  # fused threshold + pack
            if layer.pool is not None:
                out = self._or_pool(out, layer.pool)
            return "words", out
        if not (self._packed_route[i] and self._bits[i + 1] == 1):
            return "codes", self._codes(i + 1, self._acc(i, state))
        layer = self.model.layers[i]
        if self._kernels is not None and layer.conv is not None:  # straight from the packed map, no im2col copy
            out = self._kernels.xnor_conv_pack(a if kind == "words" else self._to_words(a), self._w_t[i],
                                               layer.conv.kernel, layer.conv.stride, layer.in_features,
                                               self._thr1[i + 1])
            if layer.pool is not None:
                out = self._or_pool(out, layer.pool)
            return "words", out
        rows = self._rows(i, a if kind == "words" else self._to_words(a))
        if self._kernels is not None:
            out = self._kernels.xnor_popcount_threshold_pack(rows, self._w_t[i], layer.in_features, self._thr1[i + 1])
        else:
            out = pack_bits(self._dense(i, rows) >= self._thr1[i + 1])
        out = self._shape_out(i, out, len(a))
        if layer.pool is not None:
            out = self._or_pool(out, layer.pool)
        return "words", out

    def _or_pool(self, words: np.ndarray, pool) -> np.ndarray:
        """Max pooling of packed binary pixels (OR of the words), compiled where the kernels are."""
        if self._kernels is not None:
            return self._kernels.or_pool(words, pool.kernel, pool.stride)
        return max_pool(words, pool.kernel, pool.stride, packed=True)

    def _input_state(self, px: np.ndarray) -> tuple[str, np.ndarray]:
        if self._packed_route[0] and self._kernels is not None and px.ndim == 2:
            return "words", self._kernels.threshold_pack_u8(px, self._thr1[0])
        if self._kernels is not None and px.ndim == 4:  # a conv net's NHWC pixels: the table lookup compiled
            return "codes", self._kernels.pixel_codes(px, self._pixel_lut)
        return "codes", self._codes(0, px)

    def _logits_of(self, acc: np.ndarray) -> np.ndarray:
        return acc.astype(np.float32) * self.model.output_mul + self.model.output_add

    # --- public API -------------------------------------------------------------------------------
    def batches(self, x: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start, batch of the raw uint8 images) pairs covering every image, the last batch possibly partial."""
        check_batch_size(batch_size)
        x = np.asarray(x)
        self._pixels(x[:0])  # dtype / size check up front
        for lo in range(0, x.shape[0], batch_size):
            yield lo, x[lo : lo + batch_size]

    def accumulators(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's integer accumulator for a batch: int32 (N, M_i), or (N, OH, OW, M_i) for conv."""
        trace = self.trace(x)
        return [trace[f"layer{i}.acc"] for i in range(len(self.model.layers))]

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every intermediate of a batch, by name, in execution order (for naming a differing layer).

        ``layer{i}.in_bits`` uint8 input codes of layer i, (N, K_i) or NHWC (N, H, W, C) after any
        pooling (0/1 bits for XNOR layers, the threshold count for multi-bit layers; value = code +
        act_bias), ``layer{i}.acc`` int32 (N, M_i) or (N, OH, OW, M_i) accumulators (popcount for XNOR
        layers, signed dot product for bit-plane layers), ``logits`` float32 (N, M_last).
        """
        codes = self._codes(0, self._pixels(x))
        out: dict[str, np.ndarray] = {}
        last = len(self.model.layers) - 1
        for i in range(last + 1):
            out[f"layer{i}.in_bits"] = codes
            acc = self._acc_from_codes(i, codes)
            out[f"layer{i}.acc"] = acc
            if i < last:
                codes = self._codes(i + 1, acc)
        out["logits"] = self._logits_of(out[f"layer{last}.acc"])
        return out

    def _checked(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """The one per-call check: ``batch_size`` >= 1 and uint8 raw pixels of the model's size; then :meth:`_pixels`.

        Everything else (the model's consistency) was checked once, when the engine was built.
        """
        check_batch_size(batch_size)
        return self._pixels(x)

    def _chunks(self, px: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        """Checked pixels in pieces of at most min(batch_size, internal chunk) images (the last may be partial)."""
        step = min(batch_size, self._chunk)
        for lo in range(0, px.shape[0], step):
            yield px[lo : lo + step]

    def _final_acc_of_pixels(self, px: np.ndarray) -> np.ndarray:
        last = len(self.model.layers) - 1
        state = self._input_state(px)
        for i in range(last):
            state = self._step(i, state)
        return self._acc(last, state)

    def final_accumulators(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """The last layer's accumulators, int32 (N, M_last), the fast path (activations stay packed)."""
        px = self._checked(x, batch_size)
        parts = [self._final_acc_of_pixels(p) for p in self._chunks(px, batch_size)]
        m = self.model.layers[-1].out_features
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros((0, m), np.int32)

    def _logits_labels(self, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits float32 (N, M_last), top-1 int64 (N,) or None where it is left to np.argmax)."""
        if self._net is not None:  # one compiled call, whatever the batch size (it works image by image)
            return self._net(self._checked(x, batch_size))
        return self._logits_of(self.final_accumulators(x, batch_size)), None

    def logits(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """float32 (N, M_last): acc * output_mul + output_add, as FINN's trailing Mul/Add compute it."""
        fast = self._fast
        if fast is not None and (type(batch_size) is int and batch_size >= 1 or check_batch_size(batch_size)):  # as in predict
            call, blob, _, m = fast
            try:
                n = len(x)
                labels, logits = np.empty(n, _INT64), np.empty((n, m), _FLOAT32)
                if call(x, blob, labels, logits):
                    return logits
            except TypeError:
                pass
        return self._logits_labels(x, batch_size)[0]

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Top-1 class per image, int64 (N,); ties go to the lowest index (np.argmax).

        A w1a1 MLP on the compiled backend takes a uint8 C-contiguous (N, K0) or (N, C, H, W) array straight
        into one compiled call (host/xnor_numba._mlp_into), typed for exactly those two: numba's dispatcher is
        the dtype / layout / rank check, the call checks the sizes; anything else (another dtype or rank, a list,
        a strided view, a wrong size) goes the checked way below, which converts it or says what is wrong.
        """
        fast = self._fast
        # a plain int >= 1 skips the call of check_batch_size (a tenth of a one-image call); anything else is checked there
        if fast is not None and (type(batch_size) is int and batch_size >= 1 or check_batch_size(batch_size)):
            call, blob, no_logits, _ = fast
            try:
                labels = np.empty(len(x), _INT64)
                if call(x, blob, labels, no_logits):
                    return labels
            except TypeError:  # numba: "No matching definition" (not a uint8 C-contiguous 2-d / 4-d array), or no len()
                pass
        logits, labels = self._logits_labels(x, batch_size)
        return labels if labels is not None else np.argmax(logits, axis=1).astype(np.int64)
