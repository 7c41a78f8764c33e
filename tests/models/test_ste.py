"""The straight-through estimator: gradients pass through a binary activation only where |x| <= 1."""

from __future__ import annotations

import torch
from brevitas.nn import QuantIdentity

from models.quant import ActQuant


def test_binary_activation_gradient_is_clipped_identity() -> None:
    quant = QuantIdentity(act_quant=ActQuant, bit_width=1)
    x = torch.tensor([-3.0, -1.5, -1.01, -0.99, -0.5, -1e-3, 0.0, 1e-3, 0.5, 0.99, 1.01, 1.5, 3.0], requires_grad=True)
    y = quant(x)
    assert torch.equal(y.detach(), torch.where(x >= 0, 1.0, -1.0).detach())
    upstream = torch.arange(1.0, len(x) + 1)  # distinct values: the gradient must be passed, not invented
    y.backward(upstream)
    inside = (x.detach().abs() <= 1).float()
    assert torch.equal(x.grad, upstream * inside)


def test_ternary_activation_gradient_is_clipped_identity() -> None:
    quant = QuantIdentity(act_quant=ActQuant, bit_width=2)
    x = torch.tensor([-2.0, -0.7, -0.2, 0.3, 0.8, 1.7], requires_grad=True)
    y = quant(x)
    assert torch.equal(y.detach(), torch.tensor([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


def test_training_step_keeps_latent_weights_in_range(trained_tfc) -> None:
    """After training (weights clipped after every step) every latent weight lies in [-1, 1]."""
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(trained_tfc / "checkpoint.pt")
    for layer in model.quant_layers():
        assert layer.weight.abs().max() <= 1.0
