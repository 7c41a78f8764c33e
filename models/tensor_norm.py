"""TensorNorm: a batch norm over the whole tensor with one scalar scale and shift (after bnn_pynq).

It sits after the last Linear so that the logits of a binary network have a trainable scale (the
popcount range is far wider than what softmax / hinge losses like). One scalar per tensor keeps the
arg-max unchanged when the scale is positive, and FINN's streamlining absorbs it into the final
Mul / Add nodes, so the accelerator can drop it and still compute the same top-1.
"""

from __future__ import annotations

import torch
from torch import nn


class TensorNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, with scalar statistics and parameters."""

    def __init__(self, eps: float = 1e-4, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean()
            with torch.no_grad():  # running statistics as BatchNorm keeps them (unbiased var)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(unbiased=True))
            inv_std = (x.var(unbiased=False) + self.eps).rsqrt()
            return (x - mean) * inv_std * self.weight + self.bias
        return (x - self.running_mean) / (self.running_var + self.eps).sqrt() * self.weight + self.bias
