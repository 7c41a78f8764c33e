"""The XNOR reference's model in memory: layers (dense or conv, pooling, activation and weight widths) and the whole net.

Plain numpy arrays and dataclasses; ``host/xnor_format.py`` writes and reads them as ``xnor_model.npz``
and ``host/xnor_checks.py`` checks they chain together. Only numpy is imported: this runs on the board.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ConvGeometry:
    """The sliding window of a conv layer: FINN's ConvolutionInputGenerator (no padding, dilation 1).

    Feature maps are NHWC, and a window is read in FINN's im2col order (kh, kw, c), c fastest, so
    the layer's weight row k = (kh * KW + kw) * C + c, exactly the MVAU weight matrix FINN builds.
    """

    in_dim: tuple[int, int]  # (H, W) of the input feature map
    in_channels: int  # C
    kernel: tuple[int, int]  # (KH, KW)
    stride: tuple[int, int] = (1, 1)

    @property
    def out_dim(self) -> tuple[int, int]:
        return window_out_dim(self.in_dim, self.kernel, self.stride)

    @property
    def window(self) -> int:
        """Values per window, the K of the layer's weight matrix."""
        return self.kernel[0] * self.kernel[1] * self.in_channels

    def as_json(self) -> dict:
        return {"in_dim": list(self.in_dim), "in_channels": self.in_channels,
                "kernel": list(self.kernel), "stride": list(self.stride)}


@dataclass(frozen=True)
class PoolGeometry:
    """Max pooling of a layer's output activations (after its thresholds), no padding, floor mode."""

    kernel: tuple[int, int]
    stride: tuple[int, int]

    def as_json(self) -> dict:
        return {"kernel": list(self.kernel), "stride": list(self.stride)}


def window_out_dim(in_dim: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Output (H, W) of a valid (unpadded) window of ``kernel`` moved by ``stride``."""
    return tuple((d - k) // s + 1 for d, k, s in zip(in_dim, kernel, stride))  # type: ignore[return-value]


@dataclass
class XnorLayer:
    """One matrix layer (FINN's MVAU): packed +1/-1 weights and, for hidden layers, thresholds.

    A dense layer applies the matrix to the flattened input; a conv layer (``conv`` set) applies it
    to every im2col window of an NHWC feature map, which is what FINN's ConvolutionInputGenerator +
    MVAU do. ``pool`` max-pools the layer's output activations (FINN's Pool / StreamingMaxPool).
    """

    in_features: int  # K (for a conv layer KH * KW * C, one window)
    out_features: int  # M (output channels)
    weights_packed: np.ndarray  # uint8 (M, ceil(K/8)), bit 1 = +1, little bit order
    thresholds: np.ndarray | None  # int32 (M or 1, T); None for the last layer (accumulator out)
    # The layer's INPUT activation code: 1 bit = XNOR layer (bit b is the value 2b-1, acc = popcount of
    # agreements); k > 1 bits = bit-plane layer (code c in [0, 2**k), value c + act_bias, acc = the signed
    # integer dot product with the +1/-1 weights, FINN's MatMul/MVAU with binaryXnorMode=0).
    act_bits: int = 1
    act_bias: int = 0
    conv: ConvGeometry | None = None
    pool: PoolGeometry | None = None
    # 1: +1/-1 weights (``weights_packed`` bit 1 = +1); 2: ternary {-1, 0, +1}, ``weights_packed`` is then
    # the +1 mask and ``weights_neg`` the -1 mask (same shape), a zero weight has neither bit.
    weight_bits: int = 1
    weights_neg: np.ndarray | None = None  # uint8 (M, ceil(K/8)) -1 mask of a ternary layer, else None

    @property
    def kind(self) -> str:
        """Manifest type: xnor_ / bitplane_ (input code width) + dense / conv."""
        return ("xnor_" if self.act_bits == 1 else "bitplane_") + ("conv" if self.conv else "dense")

    def out_shape(self) -> tuple[int, ...]:
        """Shape of one image's output activations: (H, W, M) after any pooling for conv, (M,) for dense."""
        if self.conv is None:
            return (self.out_features,)
        dim = self.conv.out_dim
        if self.pool is not None:
            dim = window_out_dim(dim, self.pool.kernel, self.pool.stride)
        return (*dim, self.out_features)

    def weights_pm1(self) -> np.ndarray:
        """The weights as int8 +1/-1, shape (M, K) (for tests and the float comparison network).

        Only for 1-bit layers: reading a ternary layer's +1 mask as +1/-1 would turn its zeros into -1.
        """
        if self.weight_bits != 1:
            raise ValueError(f"weights_pm1 of a {self.weight_bits}-bit (ternary) layer; use weights_int()")
        bits = np.unpackbits(self.weights_packed, axis=1, count=self.in_features, bitorder="little")
        return (bits.astype(np.int8) * 2 - 1).astype(np.int8)

    def weights_int(self) -> np.ndarray:
        """The weights as int8 in {-1, +1} (1-bit) or {-1, 0, +1} (ternary), shape (M, K)."""
        if self.weight_bits == 1:
            return self.weights_pm1()
        pos = np.unpackbits(self.weights_packed, axis=1, count=self.in_features, bitorder="little")
        neg = np.unpackbits(self.weights_neg, axis=1, count=self.in_features, bitorder="little")
        return (pos.astype(np.int8) - neg.astype(np.int8)).astype(np.int8)


@dataclass
class XnorModel:
    """Everything the XNOR reference needs to run one w1a1, w1a2 or w2a2 MLP or CNV, as plain numpy arrays."""

    input_thresholds: np.ndarray  # int32 (C, T) on uint8 pixels
    layers: list[XnorLayer]
    output_mul: np.ndarray  # float32 (M_last,)
    output_add: np.ndarray  # float32 (M_last,)
    input_shape: tuple[int, ...]  # per-image shape of the raw pixels, e.g. (1, 28, 28)
    meta: dict = field(default_factory=dict)  # free-form provenance (model name, source file, sizes)

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def is_conv(self) -> bool:
        """A conv net: raw pixels arrive NCHW and are read NHWC (FINN's input Transpose)."""
        return bool(self.layers) and self.layers[0].conv is not None

    def input_channels(self) -> int:
        """Rows input_thresholds may have besides 1: the image channels (conv) or every input value (MLP)."""
        return int(self.input_shape[0]) if self.is_conv else self.in_features

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as stored in the ``.npz`` (without the manifest)."""
        out = {
            "input_thresholds": np.ascontiguousarray(self.input_thresholds, dtype=np.int32),
            "output_mul": np.ascontiguousarray(self.output_mul, dtype=np.float32),
            "output_add": np.ascontiguousarray(self.output_add, dtype=np.float32),
        }
        for i, layer in enumerate(self.layers):
            out[f"layer{i}_weights"] = np.ascontiguousarray(layer.weights_packed, dtype=np.uint8)
            if layer.weights_neg is not None:
                out[f"layer{i}_weights_neg"] = np.ascontiguousarray(layer.weights_neg, dtype=np.uint8)
            if layer.thresholds is not None:
                out[f"layer{i}_thresholds"] = np.ascontiguousarray(layer.thresholds, dtype=np.int32)
        return out

    def size_report(self) -> dict[str, int | float]:
        """Bytes of the packed weights (both masks of a ternary layer) against the same weights as fp32."""
        packed = sum(int(layer.weights_packed.nbytes)
                     + (0 if layer.weights_neg is None else int(layer.weights_neg.nbytes)) for layer in self.layers)
        fp32 = sum(4 * layer.in_features * layer.out_features for layer in self.layers)
        return {
            "weights_packed_bytes": packed,
            "weights_fp32_bytes": fp32,
            "compression_x": round(fp32 / packed, 2) if packed else 0.0,
        }
