"""Conditional priors p(z|u): factorial exponential families with parameters λ(u).

Following nflows' ``ConditionalDiagonalNormal``, a conditional prior is a distribution
composed with a context encoder: ``params(u)`` maps the auxiliary variable to a
location and a log-scale per component (a lookup table for a discrete u; an MLP for
a continuous u or for the concatenated one-hot columns of several discrete factors),
and ``log_prob`` / ``kl_from_gaussian`` evaluate the distribution. Variances are
bounded through a clamped log-scale.

Discrete u and factors arrive as column indices of their one-hot layout, (B, 1) or
(B, F) (see :class:`~trends_ivae.estimators.nn.config.IVAEConfig` ``aux_kind``): the table is
indexed and the MLP's first layer gathers weight columns, the one-hot is never built.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import IVAEConfig
from .nets import MLP

LOG_SCALE_MIN, LOG_SCALE_MAX = -6.0, 4.0
_LOG_2PI = math.log(2 * math.pi)


class ConditionalPrior(nn.Module):
    """Base class: ``params(u) -> (loc, log_scale)``, each (B, n_components)."""

    family = "gauss"

    def __init__(self, n_components: int) -> None:
        super().__init__()
        self.n_components = n_components

    def params(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # -- distribution ---------------------------------------------------------
    def log_prob(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Per-component log density, (B, n_components)."""
        return self.log_prob_at(z, *self.params(u))

    def log_prob_at(self, z: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Per-component log density at given parameters (broadcasting, e.g. z (K, B, n))."""
        if self.family == "laplace":
            return -math.log(2.0) - log_scale - (z - loc).abs() * torch.exp(-log_scale)
        return -0.5 * _LOG_2PI - log_scale - 0.5 * ((z - loc) * torch.exp(-log_scale)) ** 2

    def kl_from_gaussian(self, mu: torch.Tensor, logvar: torch.Tensor, u: torch.Tensor,
                         z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x,u) || p(z|u)) per component, (B, n_components).

        Analytical for a Gaussian prior; a one-sample Monte Carlo estimate at the
        reparameterised sample ``z`` for the Laplace prior.
        """
        loc, log_scale = self.params(u)
        if self.family == "gauss":
            var_p = torch.exp(2 * log_scale)
            return 0.5 * (2 * log_scale - logvar + (torch.exp(logvar) + (mu - loc) ** 2) / var_p - 1.0)
        log_q = -0.5 * (_LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))
        return log_q - self.log_prob(z, u)

    def cross_entropy_from_gaussian(self, mu: torch.Tensor, var: torch.Tensor, u: torch.Tensor,
                                    z: torch.Tensor) -> torch.Tensor:
        """-E_q[log p(z_i|u)] per component, (B, n_components), for a Gaussian q with
        marginal means ``mu`` and marginal variances ``var`` (any correlation).

        Analytical for a Gaussian prior; a one-sample Monte Carlo estimate at ``z``
        for the Laplace prior.
        """
        if self.family == "gauss":
            loc, log_scale = self.params(u)
            return 0.5 * _LOG_2PI + log_scale + 0.5 * (var + (mu - loc) ** 2) * torch.exp(-2 * log_scale)
        return -self.log_prob(z, u)

    def sample(self, u: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        loc, log_scale = self.params(u)
        scale = torch.exp(log_scale)
        if self.family == "laplace":
            e = torch.rand(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype) - 0.5
            return loc - scale * torch.sign(e) * torch.log1p(-2 * e.abs())
        return loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)

    def variance(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance per component (the Laplace variance is 2 b²)."""
        loc, log_scale = self.params(u)
        var = torch.exp(2 * log_scale)
        return loc, 2 * var if self.family == "laplace" else var


class StandardNormalPrior(ConditionalPrior):
    """N(0, I), ignoring u: the vanilla VAE baseline."""

    def __init__(self, n_components: int) -> None:
        super().__init__(n_components)
        self.register_buffer("_zero", torch.zeros(1, n_components))

    def params(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self._zero.expand(u.shape[0], -1)
        return z, z


class LookupPrior(ConditionalPrior):
    """λ(u) from a table with one row per level of a discrete u.

    ``u`` is (B, 1): the level index (float or integer); the result is what the
    one-hot ``u @ table`` gives.
    """

    def __init__(self, n_components: int, n_levels: int, family: str, learn_mean: bool) -> None:
        super().__init__(n_components)
        self.family = family
        self.log_scale_table = nn.Parameter(torch.zeros(n_levels, n_components))
        if learn_mean:
            self.loc_table = nn.Parameter(torch.zeros(n_levels, n_components))
        else:
            self.register_buffer("loc_table", torch.zeros(n_levels, n_components))

    def params(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = u[:, 0].long()                           # (B,) level of each row
        loc = self.loc_table[idx]                      # (B, n)
        log_scale = self.log_scale_table[idx].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
        return loc, log_scale


class MLPPrior(ConditionalPrior):
    """λ(u) from an MLP of a continuous u, or of the concatenated one-hot of factors.

    With ``indexed=True``, ``u`` is (B, F) column indices into the ``n_aux`` one-hot
    columns and the MLP is evaluated on them (:meth:`MLP.forward_indexed`).
    """

    def __init__(self, n_components: int, n_aux: int, hidden_dim: int, n_hidden: int,
                 activation: str, family: str, learn_mean: bool, indexed: bool = False) -> None:
        super().__init__(n_components)
        self.family = family
        self.learn_mean = learn_mean
        self.indexed = indexed
        self.net = MLP(n_aux, 2 * n_components, hidden_dim, n_hidden, activation)

    def params(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net.forward_indexed(None, u.long()) if self.indexed else self.net(u)
        loc, log_scale = out.chunk(2, dim=-1)
        if not self.learn_mean:
            loc = torch.zeros_like(loc)
        return loc, log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


@torch.no_grad()
def init_lookup_prior(prior: ConditionalPrior, z: torch.Tensor, u: torch.Tensor) -> None:
    """Set a :class:`LookupPrior`'s per-level means and log-scales to those of the
    sources ``z`` (N, n) at u's levels ``u`` (N, 1); other priors are left as they are."""
    if not isinstance(prior, LookupPrior):
        return
    idx = u[:, 0].long()
    table = prior.log_scale_table
    counts = torch.zeros(table.shape[0], device=z.device, dtype=z.dtype).index_add_(0, idx, torch.ones_like(z[:, 0]))
    means = torch.zeros_like(table).index_add_(0, idx, z) / counts.clamp_min(1)[:, None]
    sq = torch.zeros_like(table).index_add_(0, idx, (z - means[idx]) ** 2)
    std = (sq / counts.clamp_min(1)[:, None]).sqrt().clamp_min(1e-3)
    seen = counts > 0
    if isinstance(prior.loc_table, nn.Parameter):
        prior.loc_table[seen] = means[seen]
    log_std = std[seen].log()
    prior.log_scale_table[seen] = log_std if prior.family == "gauss" else log_std - 0.5 * math.log(2.0)


def make_prior(config: IVAEConfig) -> ConditionalPrior:
    """The prior described by ``config``."""
    if config.prior == "normal":
        return StandardNormalPrior(config.n_components)
    if config.aux_kind == "discrete":
        return LookupPrior(config.n_components, config.n_aux, config.prior, config.learn_prior_mean)
    return MLPPrior(config.n_components, config.n_aux, config.hidden_dim, config.n_hidden,
                    config.activation, config.prior, config.learn_prior_mean,
                    indexed=config.aux_kind == "factors")
