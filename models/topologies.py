"""The FINN / BNN-PYNQ topologies as data, and one model class that builds any of them.

A name like ``tfc_w1a2`` says the family (a row of FAMILIES) and the weight / activation bit widths;
any other model is a topology entry of the config (``topologies:``, models/topology_spec.py), of the same
kind as the built-in four.
The layer pattern is that of brevitas_examples.bnn_pynq (FC.py, CNV.py), which FINN streamlines:

    input quant -> [Conv -> BN -> act quant (-> MaxPool)]* -> flatten
                -> [Linear -> BN -> act quant]* -> Linear -> TensorNorm

Every Linear / Conv has no bias and quantized weights; batch norm precedes every quantized
activation, so FINN folds BN + sign into one threshold per channel. The forward takes raw pixel
values 0..255 (float32 NCHW) and scales them itself (x * 2/255 - 1) so that the exported graph,
the FINN accelerator (UINT8 input) and the XNOR reference all start from the same integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from models.quant import ActQuant, Int8InputQuant, WeightQuant
from models.tensor_norm import TensorNorm
from models.topology_spec import BUILTIN_FAMILIES, BUILTIN_NAME_RE, builtin_entry, check_topology

NUM_CLASSES = 10
MODEL_NAME_RE = BUILTIN_NAME_RE


@dataclass(frozen=True)
class Topology:
    """One network shape: input shape, input quantization and layer widths (built from a topology entry)."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one raw-pixel input
    in_bit_width: int | None  # None: as many bits as the activations (MLPs, as bnn_pynq); 8: Q1.7 (CNV)
    conv: tuple[tuple[int, bool], ...]  # (out_channels, 2x2 max-pool after it) per conv
    fc: tuple[int, ...]  # hidden Linear widths; the final Linear to the classes is implied
    conv_kernel: int = 3
    bn_eps: float = 1e-5
    kernels: tuple[int, ...] = ()  # per-conv kernel sizes; empty: conv_kernel for every conv

    def kernel(self, i: int) -> int:
        """Kernel size of conv layer i."""
        return self.kernels[i] if self.kernels else self.conv_kernel


def topology_from_entry(entry: dict[str, Any]) -> Topology:
    """A Topology from a topology entry (models.topology_spec: a config ``topologies:`` value or a built-in)."""
    conv = entry.get("conv", []) if entry["kind"] == "conv" else []
    return Topology(
        input_shape=tuple(int(d) for d in entry["input_shape"]),
        in_bit_width=entry.get("input_bits"),
        conv=tuple((int(layer["channels"]), bool(layer.get("pool", False))) for layer in conv),
        fc=tuple(int(w) for w in (entry.get("dense", []) if entry["kind"] == "conv" else entry.get("hidden", []))),
        bn_eps=float(entry.get("bn_eps", 1e-5)),
        kernels=tuple(int(layer["kernel"]) for layer in conv),
    )


FAMILIES: dict[str, Topology] = {family: topology_from_entry(entry) for family, entry in BUILTIN_FAMILIES.items()}


@dataclass(frozen=True)
class ModelSpec:
    """A model: ``tfc_w1a2`` -> family tfc, 1-bit weights, 2-bit activations; or a config topology (``custom``)."""

    name: str
    family: str
    weight_bits: int
    act_bits: int
    custom: Topology | None = None  # a config-declared topology; None: the family's built-in one
    num_classes: int = NUM_CLASSES  # width of the last Linear (the data set's classes)

    @property
    def topology(self) -> Topology:
        return self.custom if self.custom is not None else FAMILIES[self.family]


def parse_model_name(name: str) -> ModelSpec:
    """Parse and validate a built-in model name; raise ValueError naming the accepted pattern otherwise."""
    match = MODEL_NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"unknown model name {name!r}: expected <family>_w<bits>a<bits> with family in "
            f"{sorted(FAMILIES)} and bits 1 or 2, e.g. 'tfc_w1a1'"
        )
    family, w, a = match.groups()
    return ModelSpec(name=name, family=family, weight_bits=int(w), act_bits=int(a))


def model_spec(name: str, entry: dict[str, Any] | None = None, num_classes: int = NUM_CLASSES) -> ModelSpec:
    """The spec of model ``name``: built-in by name when ``entry`` is None, else from a topology entry.

    A user entry is checked first (models.topology_spec.check_topology: TopologyError, a ValueError,
    names the entry and why FINN or the XNOR reference cannot map it). ``num_classes``: the data set's.
    """
    if num_classes < 2:
        raise ValueError(f"model {name!r}: {num_classes} classes; a classifier needs at least 2")
    if entry is None:
        return replace(parse_model_name(name), num_classes=num_classes)
    if builtin_entry(name) is None:
        check_topology(name, entry)
    return ModelSpec(name=name, family=str(entry["kind"]), weight_bits=int(entry["weight_bits"]),
                     act_bits=int(entry["act_bits"]), custom=topology_from_entry(entry), num_classes=num_classes)


class BNN(nn.Module):
    """A quantized network built from a Topology; the layer order is what FINN streamlines."""

    def __init__(self, spec: ModelSpec, dropout: float = 0.0, entry: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.entry = entry  # the topology entry it was built from (None: a built-in name), kept in checkpoints
        topo = spec.topology
        channels = topo.input_shape[0]
        if topo.in_bit_width is None:
            # a1: sign of the scaled pixel (pixel >= 128 -> +1); a2: {-1, 0, +1} cut at 64 and 192.
            input_quant = QuantIdentity(act_quant=ActQuant, bit_width=spec.act_bits)
        else:
            input_quant = QuantIdentity(act_quant=Int8InputQuant)
        # Input quantizer first, then dropout (bnn_pynq drops input bits too; identity in eval).
        layers: list[nn.Module] = [input_quant]
        if dropout > 0 and not topo.conv:
            layers.append(nn.Dropout(dropout))
        spatial = topo.input_shape[1]
        for i, (out_ch, pool) in enumerate(topo.conv):
            layers += [
                QuantConv2d(channels, out_ch, topo.kernel(i), bias=False, weight_quant=WeightQuant,
                            weight_bit_width=spec.weight_bits),
                nn.BatchNorm2d(out_ch, eps=topo.bn_eps),
                QuantIdentity(act_quant=ActQuant, bit_width=spec.act_bits),
            ]
            spatial -= topo.kernel(i) - 1
            if pool:
                layers.append(nn.MaxPool2d(2))
                spatial //= 2
            channels = out_ch
        self.features = nn.Sequential(*layers)

        in_features = channels * spatial * spatial if topo.conv else channels * spatial * topo.input_shape[2]
        fc_layers: list[nn.Module] = []
        for width in topo.fc:
            fc_layers += [
                QuantLinear(in_features, width, bias=False, weight_quant=WeightQuant,
                            weight_bit_width=spec.weight_bits),
                nn.BatchNorm1d(width, eps=topo.bn_eps),
                QuantIdentity(act_quant=ActQuant, bit_width=spec.act_bits),
            ]
            if dropout > 0:
                fc_layers.append(nn.Dropout(dropout))
            in_features = width
        fc_layers += [
            QuantLinear(in_features, spec.num_classes, bias=False, weight_quant=WeightQuant,
                        weight_bit_width=spec.weight_bits),
            TensorNorm(),
        ]
        self.classifier = nn.Sequential(*fc_layers)
        for module in self.modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                nn.init.uniform_(module.weight, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels 0..255, float32 (N, C, H, W) -> logits (N, num_classes)."""
        x = x * (2.0 / 255.0) - 1.0  # pixels to [-1, 1]; same as x/255*2-1 for the quantizer
        if not self.spec.topology.conv:
            x = x.reshape(x.shape[0], -1)  # (N, C*H*W) for the MLPs
        x = self.features(x)
        if self.spec.topology.conv:
            x = x.reshape(x.shape[0], -1)  # (N, 256) after the conv stack
        return self.classifier(x)

    @torch.no_grad()
    def clip_weights(self, bound: float = 1.0) -> None:
        """Clip the latent float weights to [-bound, bound] (BinaryConnect): past it sign() is saturated."""
        for module in self.modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                module.weight.clamp_(-bound, bound)

    def quant_layers(self) -> list[nn.Module]:
        """The weight-quantized layers, in forward order."""
        return [m for m in self.modules() if isinstance(m, (QuantLinear, QuantConv2d))]


def build_model(name: str, dropout: float = 0.0, entry: dict[str, Any] | None = None,
                num_classes: int = NUM_CLASSES) -> BNN:
    """Build an untrained model in training mode: by name (``tfc_w1a1``, ``cnv_w2a2``, ...), or from a
    topology entry (a config ``topologies:`` value; see model_spec for the errors raised)."""
    return BNN(model_spec(name, entry, num_classes), dropout=dropout, entry=entry)
