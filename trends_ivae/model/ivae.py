"""The identifiable VAE (Khemakhem, Kingma, Monti & Hyvärinen, AISTATS 2020).

Generative model::

    u ──► λ(u) ──► p(z|u) = Π_i p(z_i | λ_i(u))        (factorial exponential family)
                    z ──► f(z) ──► p(x|z) = N(f(z), σ² I)

Inference model: q(z|x,u) = N(μ(x,u), diag σ²(x,u)) from an MLP on [x, u].

ELBO (eq. 8 of the paper), per sample::

    E_q[log p(x|z)] - KL(q(z|x,u) || p(z|u))

with the reparameterisation trick and an analytical KL for the Gaussian prior.
Shapes: x (B, d), u (B, m), z (B, n).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import IVAEConfig
from .nets import MLP
from .priors import make_prior

ENC_LOGVAR_MIN, ENC_LOGVAR_MAX = -14.0, 6.0
_LOG_2PI = math.log(2 * math.pi)


class IVAEModel(nn.Module):
    """Encoder q(z|x,u), decoder f(z) with Gaussian noise, and prior p(z|u)."""

    def __init__(self, config: IVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.uses_aux = c.encoder_uses_aux and c.prior != "normal"
        enc_in = c.n_features + (c.n_aux if self.uses_aux else 0)
        self.encoder = MLP(enc_in, 2 * c.n_components, c.hidden_dim, c.n_hidden, c.activation)
        self.decoder = MLP(c.n_components, c.n_features, c.hidden_dim, c.n_hidden, c.activation)
        self.prior = make_prior(c)
        if c.decoder_var is None:
            self.decoder_logvar = nn.Parameter(torch.full((c.n_features,), math.log(0.1)))
        else:
            self.register_buffer("decoder_logvar", torch.full((c.n_features,), math.log(c.decoder_var)))

    # -- the two directions ---------------------------------------------------
    def encode(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (B, n)."""
        h = torch.cat([x, u], dim=-1) if self.uses_aux else x
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar.clamp(ENC_LOGVAR_MIN, ENC_LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean f(z), (B, d)."""
        return self.decoder(z)

    # -- objective ------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, u: torch.Tensor, *,
                   generator: torch.Generator | None = None,
                   decoder_logvar: torch.Tensor | None = None,
                   entropy_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction log-likelihood (B,) and KL (B,) from one reparameterised sample.

        ``decoder_logvar`` overrides the model's observation log-variance and
        ``entropy_weight`` scales the posterior entropy H(q) inside the KL
        (``KL + (1 - w) H(q)``); both serve annealing and leave the ELBO unchanged
        at their defaults.
        """
        mu, logvar = self.encode(x, u)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        x_hat = self.decode(z)
        dec_logvar = self.decoder_logvar if decoder_logvar is None else decoder_logvar
        log_px = -0.5 * (_LOG_2PI + dec_logvar + (x - x_hat) ** 2 * torch.exp(-dec_logvar)).sum(-1)
        kl = self.prior.kl_from_gaussian(mu, logvar, u, z).sum(-1)
        if entropy_weight != 1.0:
            entropy = 0.5 * (_LOG_2PI + 1.0 + logvar).sum(-1)
            kl = kl + (1.0 - entropy_weight) * entropy
        return log_px, kl

    def elbo(self, x: torch.Tensor, u: torch.Tensor, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The ELBO per sample, (B,)."""
        log_px, kl = self.elbo_terms(x, u, generator=generator)
        return log_px - kl

    @torch.no_grad()
    def sample(self, u: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw z ~ p(z|u) and x ~ p(x|z); returns (x, z)."""
        z = self.prior.sample(u, generator=generator)
        mean = self.decode(z)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * self.decoder_logvar) * noise, z
