"""The Brevitas forward really computes with +1/-1 (or {-1, 0, +1}) weights and activations.

larq's pattern: an independent float network, written here with plain torch.nn.functional and
weights sign(w) (or round(clamp(w)) at 2 bits), must give bit-identical logits. The twin knows
the bit widths only from the model name, never from Brevitas internals.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from models.tensor_norm import TensorNorm
from models.topologies import build_model


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for x >= 0, -1 otherwise (0 maps to +1, as FINN's bipolar thresholds do)."""
    return torch.where(x >= 0, 1.0, -1.0)


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """1 bit: sign; 2 bits: nearest of {-1, 0, +1}."""
    return sign(x) if bits == 1 else torch.clamp(torch.round(x), -1.0, 1.0)


def float_twin(model: nn.Module, x: torch.Tensor, w_bits: int, a_bits: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Forward of ``model``'s parameters through plain float ops; returns logits and each weight layer's input."""
    x = x * (2.0 / 255.0) - 1.0
    is_cnv = any(isinstance(m, QuantConv2d) for m in model.modules())
    if not is_cnv:
        x = x.reshape(len(x), -1)
    acts: list[torch.Tensor] = []
    first = True
    for module in [*model.features, *model.classifier]:
        if isinstance(module, QuantIdentity):
            if first and is_cnv:  # Q1.7 input: 8 bits, scale 2**-7
                x = torch.clamp(torch.round(x * 128.0), -128, 127) / 128.0
            else:
                x = quantize(x, a_bits)
            first = False
        elif isinstance(module, QuantLinear):
            if x.dim() > 2:
                x = x.reshape(len(x), -1)  # (N, 256) after CNV's conv stack
            acts.append(x)
            x = F.linear(x, quantize(module.weight, w_bits))
        elif isinstance(module, QuantConv2d):
            acts.append(x)
            x = F.conv2d(x, quantize(module.weight, w_bits))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            x = F.batch_norm(x, module.running_mean, module.running_var, module.weight, module.bias,
                             training=False, eps=module.eps)
        elif isinstance(module, nn.MaxPool2d):
            x = F.max_pool2d(x, 2)
        elif isinstance(module, TensorNorm):
            x = (x - module.running_mean) / (module.running_var + module.eps).sqrt() * module.weight + module.bias
        elif not isinstance(module, nn.Dropout):
            raise AssertionError(f"twin does not know {type(module).__name__}")
    return x, acts


def _randomize_statistics(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """A few training-mode passes so batch-norm statistics are not the trivial 0 / 1."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randint(0, 256, (16, *input_shape)).float())
    model.eval()


@pytest.mark.parametrize("name", ["tfc_w1a1", "sfc_w1a2", "tfc_w2a2", "cnv_w1a1", "cnv_w2a2"])
def test_brevitas_equals_float_twin(name: str) -> None:
    torch.manual_seed(1)
    model = build_model(name)
    spec = model.spec
    _randomize_statistics(model, spec.topology.input_shape)
    x = torch.randint(0, 256, (8, *spec.topology.input_shape)).float()
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach()))
             for m in model.quant_layers()]
    with torch.no_grad():
        logits = model(x)
        twin_logits, twin_acts = float_twin(model, x, spec.weight_bits, spec.act_bits)
    for h in hooks:
        h.remove()
    assert torch.equal(logits, twin_logits), f"max diff {(logits - twin_logits).abs().max()}"
    # every weight layer sees exactly the twin's quantized activations...
    assert len(seen) == len(twin_acts)
    for got, want in zip(seen, twin_acts):
        assert torch.equal(got, want)
    # ...which are +1/-1 (or {-1,0,+1}), except CNV's 8-bit input
    allowed = {-1.0, 1.0} if spec.act_bits == 1 else {-1.0, 0.0, 1.0}
    hidden = twin_acts[1:] if spec.family == "cnv" else twin_acts
    for act in hidden:
        assert set(act.unique().tolist()) <= allowed
    # and the weights Brevitas multiplies with are exactly sign(w) / round(clamp(w))
    for layer in model.quant_layers():
        assert torch.equal(layer.quant_weight().value, quantize(layer.weight, spec.weight_bits))


def test_twin_notices_a_different_network() -> None:
    """The comparison can fail: flipping one latent weight's sign changes the logits."""
    torch.manual_seed(2)
    model = build_model("tfc_w1a1")
    _randomize_statistics(model, (1, 28, 28))
    x = torch.randint(0, 256, (64, 1, 28, 28)).float()
    with torch.no_grad():
        twin, _ = float_twin(model, x, 1, 1)
        model.classifier[-2].weight[:, :].neg_()  # the last Linear, sign-flipped
        assert not torch.equal(model(x), twin)
