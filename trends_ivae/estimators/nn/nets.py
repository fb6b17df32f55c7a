"""Multilayer perceptrons used by the encoder, the decoder and the prior.

An MLP whose input ends with a one-hot (or a sum of one-hots) can be evaluated on the
column indices of its ones instead (:meth:`MLP.forward_indexed`): the first layer
gathers the weight columns of those indices, so the one-hot is never built.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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

    def forward_indexed(self, x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
        """The MLP of ``[x, h]`` where ``h`` is the sum of one-hot rows at ``idx``, without ``h``.

        Parameters
        ----------
        x : Tensor of shape (B, p) or None
            The dense leading inputs (None: the whole input is the one-hot part).
        idx : LongTensor of shape (B, F)
            Column indices, counted from the first one-hot column (``0 <= idx <
            in_dim - p``); ``h[b, idx[b, f]] = 1`` for every ``f``.

        Returns
        -------
        Tensor of shape (B, out_dim)
            ``forward(torch.cat([x, h], 1))`` up to floating-point summation order:
            the first layer is ``W_x x + Σ_f W_h[:, idx_f] + b``, O(B F) instead of
            O(B (in_dim - p)) work and memory.
        """
        first = self.net[0]
        p = 0 if x is None else x.shape[-1]
        w = first.weight                                        # (H, p + m)
        h = F.embedding(idx, w[:, p:].t()).sum(-2)              # (B, F, H) -> (B, H)
        if x is not None and p:
            h = h + F.linear(x, w[:, :p])
        if first.bias is not None:
            h = h + first.bias
        for layer in self.net[1:]:
            h = layer(h)
        return h
