"""Multilayer perceptrons used by the encoder, the decoder and the prior."""
from __future__ import annotations

import torch
from torch import nn


class XTanh(nn.Module):
    """tanh(x) + slope * x: smooth, monotone and unbounded (the paper's mixing non-linearity)."""

    def __init__(self, slope: float = 0.1) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) + self.slope * x


def make_activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "xtanh":
        return XTanh(0.1)
    if name == "tanh":
        return nn.Tanh()
    if name == "elu":
        return nn.ELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


class MLP(nn.Module):
    """``in_dim -> [hidden_dim] * n_hidden -> out_dim`` with a chosen activation.

    With ``n_hidden=0`` it is one affine map.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, n_hidden: int,
                 activation: str = "leaky_relu", bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden_dim), make_activation(activation)]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        return self.net(x)
