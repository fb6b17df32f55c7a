"""The identifiable VAE (Khemakhem, Kingma, Monti & Hyvärinen, AISTATS 2020).

Generative model::

    u ──► λ(u) ──► p(z|u) = Π_i p(z_i | λ_i(u))        (factorial exponential family)
                    z ──► f(z) ──► p(x|z) = N(f(z), σ² I)

Inference model: q(z|x,u) = N(μ(x,u), Σ(x,u)) from an MLP on [x, u], with either a
diagonal Σ = diag σ² (``posterior="diag"``, the paper) or a full Σ = L Lᵀ from a
Cholesky factor L with positive diagonal (``posterior="full"``, the default).

ELBO (eq. 8 of the paper), per sample::

    E_q[log p(x|z)] - KL(q(z|x,u) || p(z|u))

with the reparameterisation trick and an analytical KL for the Gaussian prior.
Shapes: x (B, d), u (B, m), z (B, n). A discrete u (``aux_kind="discrete"``) is
(B, 1), the level index; several discrete factors (``"factors"``) are (B, F), one
column index per factor into their concatenated one-hot layout of ``n_aux`` columns.
The encoder then computes its first layer on ``[x, one-hot u]`` from the indices
(:meth:`~trends_ivae.estimators.nn.nets.MLP.forward_indexed`); no one-hot is ever built.

Why a full posterior covariance: in the low-noise regime the true posterior of a
non-linear decoder f is close to N(g(x), σ² (JᵀJ)⁻¹) with J = ∂f/∂z. A diagonal q
then loses ``½ (Σ_i log (JᵀJ)_ii − log det JᵀJ)`` nats per sample (Hadamard's
inequality), which is zero only when the columns of J are orthogonal. The ELBO with
a diagonal q therefore rewards decoders with orthogonal Jacobian columns rather
than the true mixing ("VAEs pursue PCA directions by accident", Rolinek et al.
2019); on the paper's synthetic setting the gap at the true sources is larger than
the whole gap between the true log-likelihood and the ELBO that training reaches, so
the plain diagonal ELBO prefers wrong sources (figures in docs/benchmarks.md). With a
full Σ the ELBO is tight in this limit and its maximiser is the
maximum-likelihood iVAE, which the identifiability theorem is about. The cost is
n(n-1)/2 extra encoder outputs and a triangular product per sample.
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
        n = c.n_components
        self.full_cov = c.posterior == "full" and n > 1
        n_offdiag = n * (n - 1) // 2 if self.full_cov else 0
        self.encoder = MLP(enc_in, 2 * n + n_offdiag, c.hidden_dim, c.n_hidden, c.activation)
        if self.full_cov:
            rows, cols = torch.tril_indices(n, n, -1)
            self.register_buffer("_tril_rows", rows, persistent=False)
            self.register_buffer("_tril_cols", cols, persistent=False)
            # 0/1 matrices so that (L ε)_i = L_ii ε_i + ((offdiag * (ε @ pick)) @ scatter)_i:
            # two small matmuls per step instead of building L (B, n, n)
            k = torch.arange(rows.numel())
            pick = torch.zeros(n, rows.numel())
            pick[cols, k] = 1.0
            scatter = torch.zeros(rows.numel(), n)
            scatter[k, rows] = 1.0
            self.register_buffer("_pick", pick, persistent=False)
            self.register_buffer("_scatter", scatter, persistent=False)
        self.decoder = MLP(c.n_components, c.n_features, c.hidden_dim,
                           0 if c.linear_decoder else c.n_hidden, c.activation)
        if c.linear_skip:   # affine paths beside the MLPs: x ~ A z + c + r(z), E[z|x] = W x + b + e(x, u)
            self.dec_linear = nn.Linear(c.n_components, c.n_features)
            self.enc_linear = nn.Linear(c.n_features, c.n_components)
            if c.affine_path == "anneal":   # training steps taken: the homotopy's clock (checkpointed)
                self.register_buffer("affine_step", torch.zeros(()))
        self.prior = make_prior(c)
        if c.decoder_var is None:
            self.decoder_logvar = nn.Parameter(torch.full((c.n_features,), math.log(0.1)))
        else:
            self.register_buffer("decoder_logvar", torch.full((c.n_features,), math.log(c.decoder_var)))

    # -- the two directions ---------------------------------------------------
    def encode_full(self, x: torch.Tensor, u: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Posterior mean (B, n), log of the Cholesky diagonal squared (B, n) and the
        strictly lower Cholesky entries (B, n(n-1)/2), None for a diagonal posterior.

        Σ = L Lᵀ with ``L_ii = exp(½ logvar_i)`` and ``L_ij`` (i > j) the off-diagonals.
        """
        n = self.config.n_components
        if not self.uses_aux:
            out = self.encoder(x)                               # (B, 2n [+ n(n-1)/2])
        elif self.config.aux_indexed:                           # [x, one-hot u] from the indices
            out = self.encoder.forward_indexed(x, u.long())
        else:
            out = self.encoder(torch.cat([x, u], dim=-1))
        mu, logvar = out[:, :n], out[:, n:2 * n].clamp(ENC_LOGVAR_MIN, ENC_LOGVAR_MAX)
        if self.config.linear_skip:
            mu = mu + self.enc_linear(x)
        offdiag = out[:, 2 * n:] if self.full_cov else None
        return mu, logvar, offdiag

    def _cholesky(self, logvar: torch.Tensor, offdiag: torch.Tensor) -> torch.Tensor:
        """Lower-triangular L (B, n, n) from its log-diagonal-squared and off-diagonals."""
        n = self.config.n_components
        L = torch.diag_embed(torch.exp(0.5 * logvar))             # (B, n, n)
        return L.index_put((torch.arange(L.shape[0], device=L.device)[:, None],
                            self._tril_rows, self._tril_cols), offdiag)

    def encode(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and marginal log-variance log Σ_ii, each (B, n)."""
        mu, logvar, offdiag = self.encode_full(x, u)
        if offdiag is None:
            return mu, logvar
        marg = torch.exp(logvar) + torch.zeros_like(mu).index_add(
            1, self._tril_rows, offdiag ** 2)                  # Σ_ii = Σ_j L_ij²
        return mu, torch.log(marg)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean f(z), (B, d)."""
        if self.config.linear_skip and self.config.affine_path == "anneal":
            return self.affine_weight() * (z @ self.dec_linear.weight.T) + self.dec_linear.bias + self.decoder(z)
        if self.config.linear_skip:
            return self.dec_linear(z) + self.decoder(z)
        return self.decoder(z)

    def affine_weight(self) -> torch.Tensor | float:
        """The weight ``w`` of the decoder's affine path: 1, or the ``"anneal"`` homotopy's
        ``max(0, 1 - step / anneal_steps)`` (its bias stays: the map's centre)."""
        if self.config.affine_path != "anneal":
            return 1.0
        return torch.clamp(1.0 - self.affine_step / max(1, self.config.anneal_steps), min=0.0)

    def _tick(self) -> None:
        """One training step of the homotopy's clock (training mode only)."""
        if self.training and self.config.linear_skip and self.config.affine_path == "anneal":
            self.affine_step += 1

    @torch.no_grad()
    def set_linear_start(self, unmixing: torch.Tensor, offset: torch.Tensor, log_var: float = -4.0) -> None:
        """Start at the linear model ``z = W x + b``, ``x = A z + c`` (``A = W⁺``).

        The encoder mean and the decoder become exactly these affine maps (their MLP
        residuals' last layers are zeroed), the posterior variance ``exp(log_var)``
        with no correlation. Needs ``linear_skip``.
        """
        if not self.config.linear_skip:
            raise ValueError("set_linear_start needs a model built with linear_skip=True")
        W = torch.as_tensor(unmixing, dtype=self.enc_linear.weight.dtype, device=self.enc_linear.weight.device)
        b = torch.as_tensor(offset, dtype=W.dtype, device=W.device)
        A = torch.linalg.pinv(W)
        self.enc_linear.weight.copy_(W)
        self.enc_linear.bias.copy_(b)
        self.dec_linear.weight.copy_(A)
        self.dec_linear.bias.copy_(-A @ b)
        for net in (self.encoder, self.decoder):
            last = net.net[-1]
            last.weight.zero_()
            last.bias.zero_()
        n = self.config.n_components
        self.encoder.net[-1].bias[n:2 * n] = log_var
        if self.config.affine_path == "frozen":   # only the nonlinear paths move the decoder
            self.dec_linear.requires_grad_(False)

    # -- objective ------------------------------------------------------------
    def _sample(self, mu: torch.Tensor, logvar: torch.Tensor, offdiag: torch.Tensor | None,
                eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = μ + L ε and the marginal variances Σ_ii; ``eps`` (..., B, n) broadcasts."""
        z = mu + torch.exp(0.5 * logvar) * eps
        var = torch.exp(logvar)
        if offdiag is not None:
            z = z + (offdiag * (eps @ self._pick)) @ self._scatter
            var = var + (offdiag ** 2) @ self._scatter
        return z, var

    def _log_px(self, x: torch.Tensor, z: torch.Tensor, decoder_logvar: torch.Tensor | None
                ) -> torch.Tensor:
        x_hat = self.decode(z)
        dec_logvar = self.decoder_logvar if decoder_logvar is None else decoder_logvar
        return -0.5 * (_LOG_2PI + dec_logvar + (x - x_hat) ** 2 * torch.exp(-dec_logvar)).sum(-1)

    def elbo_terms(self, x: torch.Tensor, u: torch.Tensor, *,
                   generator: torch.Generator | None = None,
                   decoder_logvar: torch.Tensor | None = None,
                   eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction log-likelihood (B,) and KL (B,) from one reparameterised sample.

        ``decoder_logvar`` overrides the model's observation log-variance (the
        training's variance anneal). ``eps`` (B, n): the standard normal noise of the
        reparameterisation, drawn by the caller (default: drawn here with ``generator``).
        """
        self._tick()
        mu, logvar, offdiag = self.encode_full(x, u)             # (B, n), (B, n), (B, n(n-1)/2)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        else:
            eps = eps.to(mu.dtype)
        z, marg_var = self._sample(mu, logvar, offdiag, eps)      # (B, n), Σ_ii (B, n)
        if offdiag is None:
            kl = self.prior.kl_from_gaussian(mu, logvar, u, z).sum(-1)
        else:
            # KL = -H(q) - E_q[log p(z|u)]; H(q) = ½ n (log 2π + 1) + Σ_i log L_ii
            kl = (self.prior.cross_entropy_from_gaussian(mu, marg_var, u, z)
                  - 0.5 * (_LOG_2PI + 1.0 + logvar)).sum(-1)
        log_px = self._log_px(x, z, decoder_logvar)
        return log_px, kl

    def iwae(self, x: torch.Tensor, u: torch.Tensor, n_samples: int, *,
             generator: torch.Generator | None = None,
             decoder_logvar: torch.Tensor | None = None,
             eps: torch.Tensor | None = None) -> torch.Tensor:
        """Importance-weighted bound (Burda et al. 2016) with ``n_samples`` draws, (B,).

        ``log (1/K) Σ_k p(x|z_k) p(z_k|u) / q(z_k|x,u)``: a lower bound of log p(x|u) that
        is at least the ELBO in expectation and tightens as K grows. With K = 1 it is
        the ELBO estimated with a Monte Carlo KL. ``eps`` (K, B, n): the noise, drawn by
        the caller (default: drawn here with ``generator``).
        """
        self._tick()
        mu, logvar, offdiag = self.encode_full(x, u)
        if eps is None:
            eps = torch.randn((n_samples,) + tuple(mu.shape), generator=generator, device=mu.device,
                              dtype=mu.dtype)                       # (K, B, n)
        else:
            eps = eps.to(mu.dtype)
        z, _ = self._sample(mu, logvar, offdiag, eps)              # (K, B, n)
        # log q(z|x,u) = -½ n log 2π - ½ Σ_i logvar_i - ½ |ε|²  (z = μ + L ε, det L = Π L_ii)
        log_q = -0.5 * (_LOG_2PI + logvar + eps ** 2).sum(-1)       # (K, B)
        log_pz = self.prior.log_prob_at(z, *self.prior.params(u)).sum(-1)   # (K, B)
        log_px = self._log_px(x, z, decoder_logvar)                          # (K, B), x broadcasts
        return torch.logsumexp(log_px + log_pz - log_q, dim=0) - math.log(n_samples)

    def elbo(self, x: torch.Tensor, u: torch.Tensor, *,
             generator: torch.Generator | None = None,
             eps: torch.Tensor | None = None) -> torch.Tensor:
        """The ELBO per sample, (B,)."""
        log_px, kl = self.elbo_terms(x, u, generator=generator, eps=eps)
        return log_px - kl

    @torch.no_grad()
    def sample(self, u: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw z ~ p(z|u) and x ~ p(x|z); returns (x, z)."""
        z = self.prior.sample(u, generator=generator)
        mean = self.decode(z)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * self.decoder_logvar) * noise, z
