"""The ``xnor_model.npz`` deployment format: binary weights, integer thresholds, a version and a manifest.

Why a manifest: the file travels to the board and is the reference every hardware result is
checked against, so a truncated copy or a file written by another format version must be refused
before use, not silently produce wrong labels. Every array is hashed (dtype, shape and bytes) and the
hashes sit in a JSON manifest stored inside the same ``.npz``; the manifest, which carries the layer
geometry and activation offsets, is sealed by its own sha256 (``manifest_sha256``).

Layout (format version 2), layers numbered ``i = 0..L-1`` in execution order:

- ``manifest``: 0-d unicode array holding the JSON manifest (see :func:`build_manifest`).
- ``input_thresholds`` int32 (C, T): the first layer, a Thresholding of raw uint8 pixels.
  Output bit = number of thresholds ``t`` with ``pixel >= t`` (FINN's MultiThreshold), C is 1
  (one threshold set for every pixel) or the number of input features.
- ``layer{i}_weights`` uint8 (M, ceil(K/8)): the +1/-1 weights of an XNOR dense layer, one row
  per output neuron, bit 1 = +1, packed little-endian bit order (``np.packbits(bitorder="little")``).
- ``layer{i}_thresholds`` int32 (M or 1, T): thresholds on the popcount accumulator (hidden layers).
- ``output_mul`` / ``output_add`` float32 (M_last,): logits = accumulator * mul + add (the Mul/Add
  that FINN's streamlining leaves after the last XnorPopcountMatMul).

Multi-bit activations (w1a2, CNV's 8-bit input): a layer whose manifest entry has ``"type":
"bitplane_dense"`` / ``"bitplane_conv"`` reads a multi-bit input code (``act_bits``, value = code +
``act_bias``); the thresholds feeding it (input or previous layer) may hold up to ``2**act_bits - 1``
thresholds per channel, and its accumulator is the signed integer dot product of the values with
the +1/-1 weights (FINN's MatMul / MVAU with binaryXnorMode=0).

Ternary weights (w2a2, version 2): a layer whose manifest entry has ``"weight_bits": 2`` has
weights in {-1, 0, +1} (Brevitas' 2-bit narrow range with scale 1): ``layer{i}_weights`` holds the
+1 mask and ``layer{i}_weights_neg`` (same shape and packing) the -1 mask, a zero weight has
neither bit. Such a layer is always a bit-plane layer (``act_bits >= 2``; FINN's MVAU with
binaryXnorMode=0 and INT2 weights); its accumulator is the signed integer dot product. Entries
without ``weight_bits`` are 1-bit (+1/-1) layers, so 1-bit files are unchanged.

Convolutions (version 2, CNV): a ``*_conv`` entry carries ``conv`` (input H, W, C, kernel, stride; no
padding) and may carry ``pool`` (max pooling of its output activations). Feature maps are NHWC;
the raw pixels of a conv net arrive NCHW (``input_shape``) and are transposed first, as FINN's
leading Transpose does, so ``input_thresholds`` has one row per image channel (or one for all).
A dense layer after a conv reads the NHWC feature map flattened.

For 1-bit (XNOR) layers the popcount accumulator is FINN's: the number of positions where input bit and weight bit agree
(XnorPopcountMatMul), so the dot product of the +1/-1 vectors is ``2 * acc - K``.

Only numpy is imported: this module runs on the board.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host.atomic import atomic_path

FORMAT_NAME = "bnnflow-xnor"
# 2: convolution layers (``conv`` / ``pool`` entries); a version-1 reader would misread them as dense.
FORMAT_VERSION = 2


class XnorFormatError(ValueError):
    """An ``xnor_model.npz`` that cannot be used: corrupted, truncated, wrong version or inconsistent."""


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


def array_sha256(arr: np.ndarray) -> str:
    """sha256 over dtype, shape and the C-order bytes: a changed value, shape or type changes it."""
    h = hashlib.sha256()
    h.update(str(arr.dtype.str).encode())
    h.update(json.dumps(list(arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def build_manifest(model: XnorModel) -> dict:
    """The JSON manifest: version, layer shapes, and the sha256 of every array."""
    layers = [
        {
            "type": layer.kind,
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "has_thresholds": layer.thresholds is not None,
            **({"act_bits": int(layer.act_bits), "act_bias": int(layer.act_bias)} if layer.act_bits > 1 else {}),
            **({"weight_bits": int(layer.weight_bits)} if layer.weight_bits != 1 else {}),
            **({"conv": layer.conv.as_json()} if layer.conv else {}),
            **({"pool": layer.pool.as_json()} if layer.pool else {}),
        }
        for layer in model.layers
    ]
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "input_shape": list(model.input_shape),
        "input_dtype": "uint8",
        "layers": layers,
        "sizes": model.size_report(),
        "meta": model.meta,
        "sha256": {name: array_sha256(arr) for name, arr in sorted(model.arrays().items())},
    }
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    return manifest


def manifest_sha256(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without this field: geometry, act_bias and shapes are
    as much the model as the arrays are, so an edited manifest (a pool kernel, an input bias) is refused too."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _validate_geometry(i: int, layer: XnorLayer, shape: tuple[int, ...]) -> None:
    """A layer's window / pooling fits the activation ``shape`` it receives ((H, W, C) or (K,))."""
    conv, where = layer.conv, f"layer{i}"
    if conv is None:
        if layer.pool is not None:
            raise XnorFormatError(f"{where}: pooling after a dense layer")
        if layer.in_features != int(np.prod(shape)):
            raise XnorFormatError(f"{where} expects {layer.in_features} inputs but receives {int(np.prod(shape))}")
        return
    if len(shape) != 3 or tuple(shape) != (*conv.in_dim, conv.in_channels):
        raise XnorFormatError(f"{where}: conv expects an (H, W, C) = {(*conv.in_dim, conv.in_channels)} "
                              f"feature map but receives {tuple(shape)}")
    if min(conv.stride) < 1 or any(k < 1 or k > d for k, d in zip(conv.kernel, conv.in_dim)):
        raise XnorFormatError(f"{where}: kernel {conv.kernel} / stride {conv.stride} do not fit {conv.in_dim}")
    if layer.in_features != conv.window:
        raise XnorFormatError(f"{where}: in_features {layer.in_features} != kernel window "
                              f"{conv.kernel[0]}x{conv.kernel[1]}x{conv.in_channels}")
    pool = layer.pool
    if pool is not None:
        if layer.thresholds is None:
            raise XnorFormatError(f"{where}: pooling needs the layer's activations (thresholds)")
        if min(pool.stride) < 1 or any(k < 1 or k > d for k, d in zip(pool.kernel, conv.out_dim)):
            raise XnorFormatError(f"{where}: pool {pool.kernel} / stride {pool.stride} do not fit {conv.out_dim}")


def _validate_mask(name: str, mask, layer: XnorLayer) -> None:
    """A packed weight mask: uint8 (M, ceil(K/8)) with the padding bits past K zero (they would count)."""
    want = (layer.out_features, (layer.in_features + 7) // 8)
    if not isinstance(mask, np.ndarray) or mask.shape != want or mask.dtype != np.uint8:
        got = f"{mask.dtype}{mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise XnorFormatError(f"{name} is {got}, expected uint8{want}")
    pad = 8 * want[1] - layer.in_features
    if pad and want[0] and np.any(mask[:, -1] >> (8 - pad)):
        raise XnorFormatError(f"{name} has bits set past in_features {layer.in_features} (padding must be 0)")


def _validate_weights(i: int, layer: XnorLayer) -> None:
    """The weight masks of layer i: shapes, zero padding; a ternary layer's two masks disjoint."""
    _validate_mask(f"layer{i}_weights", layer.weights_packed, layer)
    if layer.weight_bits == 1:
        if layer.weights_neg is not None:
            raise XnorFormatError(f"layer{i}: a 1-bit (+1/-1) layer has no layer{i}_weights_neg")
        return
    if layer.weight_bits != 2:
        raise XnorFormatError(f"layer{i}: weight_bits {layer.weight_bits} is not 1 (+1/-1) or 2 (ternary)")
    if layer.act_bits < 2:
        raise XnorFormatError(f"layer{i}: ternary weights need a multi-bit (bit-plane) input, act_bits is "
                              f"{layer.act_bits} (FINN: MVAU with binaryXnorMode=0)")
    if layer.weights_neg is None:
        raise XnorFormatError(f"layer{i}: ternary layer (weight_bits 2) without its -1 mask layer{i}_weights_neg")
    _validate_mask(f"layer{i}_weights_neg", layer.weights_neg, layer)
    both = np.bitwise_and(layer.weights_packed, layer.weights_neg)
    if both.any():
        m, byte = (int(v[0]) for v in np.nonzero(both))
        raise XnorFormatError(f"layer{i}: weight masks overlap (neuron {m}, byte {byte} is both +1 and -1)")


def validate_model(model: XnorModel) -> None:
    """Check shapes chain together; raise :class:`XnorFormatError` naming what is wrong."""
    if not model.layers:
        raise XnorFormatError("xnor model has no layers")
    thr = model.input_thresholds
    c_in = model.input_channels()
    if thr.ndim != 2 or thr.shape[0] not in (1, c_in) or thr.shape[1] < 1:
        raise XnorFormatError(f"input_thresholds has shape {thr.shape}, expected (1 or {c_in}, T>=1)")
    if model.is_conv and len(model.input_shape) != 3:
        raise XnorFormatError(f"a conv net needs input_shape (C, H, W), got {model.input_shape}")
    # what layer i receives: an NHWC feature map (H, W, C) or a vector (K,)
    shape: tuple[int, ...] = (*model.input_shape[1:], model.input_shape[0]) if model.is_conv else (model.in_features,)
    t_in = thr.shape[1]  # thresholds feeding the current layer
    for i, layer in enumerate(model.layers):
        src = "input_thresholds" if i == 0 else f"layer{i - 1}_thresholds"
        if layer.act_bits < 1 or layer.act_bits > 8:
            raise XnorFormatError(f"layer{i}: act_bits {layer.act_bits} outside 1..8")
        if layer.act_bits == 1 and (t_in != 1 or layer.act_bias != 0):
            raise XnorFormatError(f"layer{i}: 1-bit (XNOR) input needs one threshold in {src} and act_bias 0")
        if t_in > (1 << layer.act_bits) - 1:
            raise XnorFormatError(f"{src} has {t_in} thresholds per channel, more than layer{i}'s "
                                  f"{layer.act_bits}-bit input code holds")
        _validate_geometry(i, layer, shape)
        _validate_weights(i, layer)
        last = i == len(model.layers) - 1
        if last and layer.thresholds is not None:
            raise XnorFormatError(f"layer{i} is the last layer and must not have thresholds")
        if not last:
            t = layer.thresholds
            if t is None:
                raise XnorFormatError(f"layer{i} is a hidden layer without thresholds")
            if t.ndim != 2 or t.shape[0] not in (1, layer.out_features) or t.shape[1] < 1:
                raise XnorFormatError(
                    f"layer{i}_thresholds has shape {t.shape}, expected (1 or {layer.out_features}, T>=1)"
                )
            t_in = t.shape[1]
        shape = layer.out_shape()
    k = model.layers[-1].out_features
    if len(shape) != 1:
        raise XnorFormatError(f"the last layer outputs a feature map {shape}; it must be dense (class scores)")
    for name in ("output_mul", "output_add"):
        arr = getattr(model, name)
        if arr.shape != (k,):
            raise XnorFormatError(f"{name} has shape {arr.shape}, expected ({k},)")


def save_xnor_model(model: XnorModel, path: str | os.PathLike) -> dict:
    """Write ``path`` atomically (temp file, then rename); return the manifest written."""
    validate_model(model)
    manifest = build_manifest(model)
    arrays = model.arrays()
    arrays["manifest"] = np.array(json.dumps(manifest, sort_keys=True))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz"
        np.savez(f, **arrays)
    return manifest


def _layer_from_manifest(i: int, spec: dict, arrays: dict[str, np.ndarray]) -> XnorLayer:
    """One manifest layer entry (+ its arrays) -> XnorLayer."""
    conv, pool = spec.get("conv"), spec.get("pool")
    weight_bits = int(spec.get("weight_bits", 1))
    neg = f"layer{i}_weights_neg"
    if weight_bits != 1 and neg not in arrays:
        raise XnorFormatError(f"layer{i} is ternary (weight_bits {weight_bits}) but the file has no {neg!r}")
    if weight_bits == 1 and neg in arrays:
        raise XnorFormatError(f"layer{i} is a 1-bit layer but the file has a {neg!r}")
    layer = XnorLayer(
        in_features=int(spec["in_features"]),
        out_features=int(spec["out_features"]),
        weights_packed=arrays[f"layer{i}_weights"],
        thresholds=arrays.get(f"layer{i}_thresholds") if spec["has_thresholds"] else None,
        act_bits=int(spec.get("act_bits", 1)),
        act_bias=int(spec.get("act_bias", 0)),
        conv=None if conv is None else ConvGeometry(
            in_dim=_pair(conv["in_dim"]), in_channels=int(conv["in_channels"]),
            kernel=_pair(conv["kernel"]), stride=_pair(conv["stride"])),
        pool=None if pool is None else PoolGeometry(kernel=_pair(pool["kernel"]), stride=_pair(pool["stride"])),
        weight_bits=weight_bits,
        weights_neg=arrays.get(neg) if weight_bits != 1 else None,
    )
    if spec.get("type", layer.kind) != layer.kind:  # a layer type this reader does not know
        raise XnorFormatError(f"layer{i}: manifest type {spec.get('type')!r} but the entry describes a {layer.kind!r}")
    return layer


def _pair(values) -> tuple[int, int]:
    a, b = values
    return int(a), int(b)


def load_xnor_model(path: str | os.PathLike) -> XnorModel:
    """Read and check ``path``: refuse a wrong format/version, a hash mismatch or a broken archive."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise XnorFormatError(f"{path}: not a readable xnor_model.npz ({type(err).__name__}: {err})") from err
    if "manifest" not in arrays:
        raise XnorFormatError(f"{path}: no 'manifest' entry; not an xnor_model.npz written by bnnflow")
    try:
        manifest = json.loads(str(arrays.pop("manifest")))
    except json.JSONDecodeError as err:
        raise XnorFormatError(f"{path}: manifest is not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT_NAME:
        raise XnorFormatError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise XnorFormatError(
            f"{path}: format version {manifest.get('format_version')!r}, this reader understands "
            f"version {FORMAT_VERSION}; re-run the export_xnor rule to regenerate it"
        )
    if manifest.get("manifest_sha256") != manifest_sha256(manifest):
        raise XnorFormatError(f"{path}: the manifest fails its sha256 check (layer geometry or settings edited)")
    hashes = manifest.get("sha256", {})
    if set(hashes) != set(arrays):
        raise XnorFormatError(
            f"{path}: arrays {sorted(arrays)} do not match the manifest's {sorted(hashes)}"
        )
    for name, arr in arrays.items():
        if array_sha256(arr) != hashes[name]:
            raise XnorFormatError(f"{path}: array {name!r} fails its sha256 check (file corrupted or edited)")
    try:
        layers = [_layer_from_manifest(i, spec, arrays) for i, spec in enumerate(manifest["layers"])]
    except XnorFormatError as err:
        raise XnorFormatError(f"{path}: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise XnorFormatError(f"{path}: malformed layer entry in the manifest ({type(err).__name__}: {err})") from err
    model = XnorModel(
        input_thresholds=arrays["input_thresholds"],
        layers=layers,
        output_mul=arrays["output_mul"],
        output_add=arrays["output_add"],
        input_shape=tuple(int(d) for d in manifest["input_shape"]),
        meta=manifest.get("meta", {}),
    )
    try:
        validate_model(model)
    except XnorFormatError as err:
        raise XnorFormatError(f"{path}: {err}") from err
    return model
