"""The FINN / BNN-PYNQ topologies as data, and one model class that builds any of them.

A name like ``tfc_w1a2`` says the family (a row of FAMILIES) and the weight / activation bit widths.
The layer pattern is that of brevitas_examples.bnn_pynq (FC.py, CNV.py), which FINN streamlines:

    input quant -> [Conv -> BN -> act quant (-> MaxPool)]* -> flatten
                -> [Linear -> BN -> act quant]* -> Linear -> TensorNorm

Every Linear / Conv has no bias and quantized weights; batch norm precedes every quantized
activation, so FINN folds BN + sign into one threshold per channel. The forward takes raw pixel
values 0..255 (float32 NCHW) and scales them itself (x * 2/255 - 1) so that the exported graph,
the FINN accelerator (UINT8 input) and the XNOR reference all start from the same integers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from models.quant import ActQuant, Int8InputQuant, WeightQuant
from models.tensor_norm import TensorNorm

NUM_CLASSES = 10
MODEL_NAME_RE = re.compile(r"^(tfc|sfc|lfc|cnv)_w([12])a([12])$")


@dataclass(frozen=True)
class Topology:
    """One family of the BNN-PYNQ zoo: input shape, input quantization and layer widths."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one raw-pixel input
    in_bit_width: int | None  # None: as many bits as the activations (MLPs, as bnn_pynq); 8: Q1.7 (CNV)
    conv: tuple[tuple[int, bool], ...]  # (out_channels, 2x2 max-pool after it) per 3x3 conv
    fc: tuple[int, ...]  # hidden Linear widths; the final Linear to NUM_CLASSES is implied
    conv_kernel: int = 3
    bn_eps: float = 1e-5


FAMILIES: dict[str, Topology] = {
    "tfc": Topology(input_shape=(1, 28, 28), in_bit_width=None, conv=(), fc=(64, 64, 64)),
    "sfc": Topology(input_shape=(1, 28, 28), in_bit_width=None, conv=(), fc=(256, 256, 256)),
    "lfc": Topology(input_shape=(1, 28, 28), in_bit_width=None, conv=(), fc=(1024, 1024, 1024)),
    # 32x32 -> 30 -> 28 -> pool 14 -> 12 -> 10 -> pool 5 -> 3 -> 1: 256 features into the FC part.
    "cnv": Topology(
        input_shape=(3, 32, 32),
        in_bit_width=8,
        conv=((64, False), (64, True), (128, False), (128, True), (256, False), (256, False)),
        fc=(512, 512),
        bn_eps=1e-4,
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: ``tfc_w1a2`` -> family tfc, 1-bit weights, 2-bit activations."""

    name: str
    family: str
    weight_bits: int
    act_bits: int

    @property
    def topology(self) -> Topology:
        return FAMILIES[self.family]


def parse_model_name(name: str) -> ModelSpec:
    """Parse and validate a model name; raise ValueError naming the accepted pattern otherwise."""
    match = MODEL_NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"unknown model name {name!r}: expected <family>_w<bits>a<bits> with family in "
            f"{sorted(FAMILIES)} and bits 1 or 2, e.g. 'tfc_w1a1'"
        )
    family, w, a = match.groups()
    return ModelSpec(name=name, family=family, weight_bits=int(w), act_bits=int(a))


class BNN(nn.Module):
    """A quantized network built from a Topology; the layer order is what FINN streamlines."""

    def __init__(self, spec: ModelSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
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
        for out_ch, pool in topo.conv:
            layers += [
                QuantConv2d(channels, out_ch, topo.conv_kernel, bias=False, weight_quant=WeightQuant,
                            weight_bit_width=spec.weight_bits),
                nn.BatchNorm2d(out_ch, eps=topo.bn_eps),
                QuantIdentity(act_quant=ActQuant, bit_width=spec.act_bits),
            ]
            spatial -= topo.conv_kernel - 1
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
            QuantLinear(in_features, NUM_CLASSES, bias=False, weight_quant=WeightQuant,
                        weight_bit_width=spec.weight_bits),
            TensorNorm(),
        ]
        self.classifier = nn.Sequential(*fc_layers)
        for module in self.modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                nn.init.uniform_(module.weight, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels 0..255, float32 (N, C, H, W) -> logits (N, 10)."""
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


def build_model(name: str, dropout: float = 0.0) -> BNN:
    """Build an untrained model by name (``tfc_w1a1``, ``cnv_w2a2``, ...) in training mode."""
    return BNN(parse_model_name(name), dropout=dropout)
