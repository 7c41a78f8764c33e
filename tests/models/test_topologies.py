"""Topologies as data: names parse, every family builds with the BNN-PYNQ layer pattern and widths."""

from __future__ import annotations

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from models.tensor_norm import TensorNorm
from models.topologies import FAMILIES, build_model, parse_model_name

ALL_NAMES = [f"{f}_w{w}a{a}" for f in FAMILIES for w, a in ((1, 1), (1, 2), (2, 2))]


@pytest.mark.parametrize("bad", ["tfc", "tfc_w3a1", "xfc_w1a1", "tfc_w1a1 ", "TFC_W1A1", "cnv_w1"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown model name"):
        build_model(bad)


def test_name_parsing() -> None:
    spec = parse_model_name("lfc_w1a2")
    assert (spec.family, spec.weight_bits, spec.act_bits) == ("lfc", 1, 2)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_layer_pattern_and_widths(name: str) -> None:
    model = build_model(name).eval()
    topo = model.spec.topology
    layers = [m for m in model.modules() if isinstance(m, (QuantLinear, QuantConv2d, QuantIdentity,
                                                             nn.BatchNorm1d, nn.BatchNorm2d, TensorNorm))]
    # the input quantizer comes first, the output is Linear -> TensorNorm
    assert isinstance(layers[0], QuantIdentity) and isinstance(layers[-1], TensorNorm)
    assert isinstance(layers[-2], QuantLinear) and layers[-2].out_features == 10
    # batch norm right before every hidden quantized activation
    for prev, layer in zip(layers[1:], layers[2:]):
        if isinstance(layer, QuantIdentity):
            assert isinstance(prev, (nn.BatchNorm1d, nn.BatchNorm2d))
    convs = [m.out_channels for m in model.modules() if isinstance(m, QuantConv2d)]
    linears = [m.out_features for m in model.modules() if isinstance(m, QuantLinear)]
    assert convs == [c for c, _ in topo.conv]
    assert linears == [*topo.fc, 10]
    assert all(m.bias is None for m in model.quant_layers())
    x = torch.randint(0, 256, (2, *topo.input_shape)).float()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_weights_start_inside_clip_range_and_clip_works() -> None:
    model = build_model("tfc_w1a1")
    for layer in model.quant_layers():
        assert layer.weight.abs().max() <= 1.0
        with torch.no_grad():
            layer.weight.mul_(3.0)
    model.clip_weights(1.0)
    assert all(layer.weight.abs().max() == 1.0 for layer in model.quant_layers())
