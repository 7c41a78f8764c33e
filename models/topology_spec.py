"""Topologies as data: the config's ``topologies:`` entries and the built-in TFC / SFC / LFC / CNV, one kind.

No torch here: the workflow reads this module when it parses the config (so a topology FINN or the XNOR
reference cannot map is refused before any job starts), and ``models.topologies`` builds the Brevitas
network from the same entries.

An entry (a plain dict, as in ``workflow/config.yaml``)::

    kind: mlp | conv
    input_shape: [C, H, W]        # raw-pixel input of the network (NCHW), C 1 or 3
    weight_bits: 1 | 2            # with act_bits: w1a1, w1a2 or w2a2 (what FINN and the XNOR reference map)
    act_bits: 1 | 2
    input_bits: null | 8          # null: the pixel quantized like an activation (act_bits), 8: Q1.7 (as CNV)
    hidden: [100, 37]             # mlp: hidden Linear widths (the final Linear to the classes is implied)
    conv: [{channels: 16, kernel: 3, pool: false}, ...]   # conv: unpadded stride-1 convs, pool = 2x2 max after
    dense: [64]                   # conv: hidden Linear widths after the conv stack
    dataset: mnist                # optional: the data set it trains on (default data.mlp_dataset / cnv_dataset)

Errors: :class:`TopologyError` (a ``ValueError``) whose message names the entry and the reason.
"""

from __future__ import annotations

import re
from typing import Any

BUILTIN_NAME_RE = re.compile(r"^(tfc|sfc|lfc|cnv)_w([12])a([12])$")
USER_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# The bnn_pynq topologies (brevitas_examples FC.py / CNV.py) as entries of the same kind as a user's.
BUILTIN_FAMILIES: dict[str, dict[str, Any]] = {
    "tfc": {"kind": "mlp", "input_shape": [1, 28, 28], "input_bits": None, "hidden": [64, 64, 64]},
    "sfc": {"kind": "mlp", "input_shape": [1, 28, 28], "input_bits": None, "hidden": [256, 256, 256]},
    "lfc": {"kind": "mlp", "input_shape": [1, 28, 28], "input_bits": None, "hidden": [1024, 1024, 1024]},
    # 32x32 -> 30 -> 28 -> pool 14 -> 12 -> 10 -> pool 5 -> 3 -> 1: 256 features into the dense part.
    "cnv": {
        "kind": "conv", "input_shape": [3, 32, 32], "input_bits": 8,
        "conv": [{"channels": 64, "kernel": 3, "pool": False}, {"channels": 64, "kernel": 3, "pool": True},
                 {"channels": 128, "kernel": 3, "pool": False}, {"channels": 128, "kernel": 3, "pool": True},
                 {"channels": 256, "kernel": 3, "pool": False}, {"channels": 256, "kernel": 3, "pool": False}],
        "dense": [512, 512],
        "bn_eps": 1e-4,
    },
}
# (weight bits, activation bits) that FINN builds and the XNOR reference (host/xnor_*.py) computes.
MAPPED_PRECISIONS = ((1, 1), (1, 2), (2, 2))


class TopologyError(ValueError):
    """A topology entry FINN or the XNOR reference cannot map (the message names the entry and why)."""


def builtin_entry(name: str) -> dict[str, Any] | None:
    """The entry of a built-in name (``tfc_w1a2`` -> the TFC entry with its bits), None for any other name."""
    match = BUILTIN_NAME_RE.match(name)
    if match is None:
        return None
    family, w, a = match.groups()
    return {**BUILTIN_FAMILIES[family], "weight_bits": int(w), "act_bits": int(a)}


def conv_spatial(entry: dict[str, Any]) -> list[int]:
    """The feature map's height after each conv layer (and its pool) of a conv entry, input height first."""
    sizes = [int(entry["input_shape"][1])]
    for layer in entry.get("conv", []):
        size = sizes[-1] - int(layer["kernel"]) + 1
        sizes.append(size // 2 if layer.get("pool", False) else size)
    return sizes


def check_topology(name: str, entry: dict[str, Any]) -> None:
    """Refuse (TopologyError) what FINN's streamlining / HW conversion or the XNOR reference cannot map.

    The checks are the ones this pipeline's later stages rely on: precisions w1a1 / w1a2 / w2a2 (FINN
    has no HW layer for w2a1, the XNOR reference no kernel beyond 2 bits); at least one hidden layer (the
    last layer has no activation and feeds LabelSelect); convs unpadded, stride 1, kernel inside the map;
    a 2x2 max pool only on an even map (FINN's StreamingMaxPool needs the map divisible by the pool);
    the conv stack ending at 1x1 (flattening a larger map puts FINN's NHWC order against the network's
    NCHW flatten, which neither FINN's CNV streamlining nor the XNOR reference maps); an 8-bit input only
    on conv nets (the XNOR reference's 8-bit bit-plane input layer is the convolutional one, as CNV's).
    """
    where = f"topology {name!r}"
    kind = entry.get("kind")
    if kind not in ("mlp", "conv"):
        raise TopologyError(f"{where}: kind {kind!r} is neither 'mlp' nor 'conv'")
    w, a = int(entry["weight_bits"]), int(entry["act_bits"])
    if (w, a) not in MAPPED_PRECISIONS:
        why = ("FINN has no HW layer for binary activations with 2-bit weights" if (w, a) == (2, 1)
               else "the XNOR reference computes 1- and 2-bit weights and activations only")
        raise TopologyError(f"{where}: w{w}a{a} cannot be mapped ({why}); use w1a1, w1a2 or w2a2")
    shape = [int(d) for d in entry["input_shape"]]
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise TopologyError(f"{where}: input_shape {shape} is not [C, H, W] with C 1 or 3")
    input_bits = entry.get("input_bits")
    if input_bits not in (None, 8):
        raise TopologyError(f"{where}: input_bits {input_bits!r} is neither null (as the activations) nor 8")
    if kind == "mlp":
        if input_bits == 8:
            raise TopologyError(f"{where}: an 8-bit input is mapped by the XNOR reference only into a conv layer "
                                "(CNV's bit-plane input layer); use input_bits: null for an mlp")
        if entry.get("conv") or entry.get("dense"):
            raise TopologyError(f"{where}: an mlp has hidden: widths, not conv: / dense:")
        widths = list(entry.get("hidden", []))
    else:
        if entry.get("hidden"):
            raise TopologyError(f"{where}: a conv net has conv: and dense:, not hidden:")
        layers = list(entry.get("conv", []))
        if not layers:
            raise TopologyError(f"{where}: a conv net needs at least one conv layer")
        size = shape[1]
        if shape[1] != shape[2]:
            raise TopologyError(f"{where}: input_shape {shape}: conv nets take square maps (H = W)")
        for i, layer in enumerate(layers):
            kernel, channels = int(layer["kernel"]), int(layer["channels"])
            if channels < 1 or kernel < 1 or kernel > size:
                raise TopologyError(f"{where}: conv layer {i} (channels {channels}, kernel {kernel}) does not fit "
                                    f"its {size}x{size} input map")
            size = size - kernel + 1
            if layer.get("pool", False):
                if size % 2:
                    raise TopologyError(f"{where}: conv layer {i}'s 2x2 max pool is on an odd {size}x{size} map "
                                        "(FINN's StreamingMaxPool needs the map divisible by the pool)")
                size //= 2
        if size != 1:
            raise TopologyError(f"{where}: the conv stack ends at {size}x{size}, not 1x1 (flattening a larger map "
                                "is not mapped by FINN's CNV streamlining or the XNOR reference); "
                                f"feature map sizes {conv_spatial(entry)}")
        widths = list(entry.get("dense", []))
    if kind == "mlp" and not widths:
        raise TopologyError(f"{where}: an mlp needs at least one hidden layer (the last layer has no activation)")
    if any(int(width) < 1 for width in widths):
        raise TopologyError(f"{where}: hidden widths {widths} must be positive")


def resolve_entry(name: str, topologies: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The checked entry of model ``name``: a built-in name or a key of the config's ``topologies:``.

    Raises TopologyError for an unknown name or an entry that cannot be mapped.
    """
    entry = builtin_entry(name)
    if entry is None:
        topologies = topologies or {}
        if name not in topologies:
            raise TopologyError(
                f"unknown model name {name!r}: expected <family>_w<bits>a<bits> with family in "
                f"{sorted(BUILTIN_FAMILIES)} and bits 1 or 2 (e.g. 'tfc_w1a1'), or a key of topologies: "
                f"({sorted(topologies) or 'none declared'})")
        entry = dict(topologies[name])
        check_topology(name, entry)
    return entry
