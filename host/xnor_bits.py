"""Bit packing, popcount and thresholds: the primitives every layer kind of the XNOR reference uses.

Bits are packed 64 per little-endian uint64 word (``# (N, ceil(K/64))``); bit j of a row is bit j % 64
of word j // 64 and the padding bits past K are 0. ``popcount`` uses ``np.bitwise_count`` on numpy >= 2
and a 16-bit lookup table before (the board's numpy 1.x). Only numpy is imported: this runs on the board.
"""

from __future__ import annotations

import numpy as np

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


def pack_planes(codes: np.ndarray, bits: int) -> np.ndarray:
    """(N, K) non-negative integer codes -> (bits, N, ceil(K/64)) packed bit planes, plane j = bit j."""
    codes = np.asarray(codes)
    return np.stack([pack_bits((codes >> j) & 1) for j in range(bits)])


def threshold_count(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """FINN MultiThreshold without scale/bias: the number of thresholds t with value >= t, int32 (..., C).

    ``thresholds`` is (C or 1, T): one row per channel (the last axis of ``values``) or one row for all.
    """
    cmp = values[..., None] >= thresholds  # (..., C, T)
    return np.count_nonzero(cmp, axis=-1).astype(np.int32)
