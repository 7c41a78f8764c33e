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

The model in memory (:class:`XnorModel`, :class:`XnorLayer`, the conv / pool geometry) is defined in
``host/xnor_layers.py`` and its consistency checks (:func:`validate_model`, :class:`XnorFormatError`) in
``host/xnor_checks.py``; both are re-exported here, so ``host.xnor_format`` stays the one import.

Only numpy is imported: this module runs on the board.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from host.atomic import atomic_path
from host.refusal import InputFileError, MissingFileError, read_npz
from host.xnor_checks import XnorFormatError, validate_model
from host.xnor_layers import ConvGeometry, PoolGeometry, XnorLayer, XnorModel, window_out_dim

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ConvGeometry", "PoolGeometry", "XnorFormatError", "XnorLayer",
           "XnorModel", "array_sha256", "build_manifest", "load_xnor_model", "manifest_sha256",
           "save_xnor_model", "validate_model", "window_out_dim"]

FORMAT_NAME = "bnnflow-xnor"
# 2: convolution layers (``conv`` / ``pool`` entries); a version-1 reader would misread them as dense.
FORMAT_VERSION = 2


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
        arrays = read_npz(path, "xnor_model.npz")
    except MissingFileError:
        raise
    except InputFileError as err:
        raise XnorFormatError(str(err)) from err
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
