"""``IFlow``: the exact-likelihood iVAE (a conditional-prior normalizing flow) on arrays.

The noiseless limit of the iVAE with an invertible mixing: ``x = f(z)``, ``z ~ p(z|u)``
factorial, so ``log p(x|u) = log p(g(x)|u) + log |det J_g(x)|`` with ``g = f^{-1}``
(:mod:`trends_ivae.estimators.nn.flow`). It is maximised directly, with no variational gap.
The first layer of ``g`` starts at a linear ICA solution of the same (x, u)
(:mod:`trends_ivae.estimators.linear_start`) and the splines after it at the identity, so the
fit starts where linear ICA ends. Same API as :class:`~trends_ivae.estimators.ivae.IVAE`:
``fit``, ``transform``, ``inverse_transform``, ``score``, ``sample``, ``save``/``load``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from .aux_codes import IdentifiabilityWarning
from .base import SourceEstimator
from .nn.comm import SINGLE_PROCESS, Comm
from .nn.flow import FlowConfig, FlowModel
from .nn.flow_train import FlowTrainConfig, train_flow
from .threads import cpu_threads

__all__ = ["IFlow", "IdentifiabilityWarning", "JACOBIAN_ROWS", "INFER_ROWS"]

#: rows per batch of :meth:`IFlow.decoder_jacobian`: each row's Jacobian keeps the
#: splines' intermediate values once per component, so the batch, not the data size,
#: sets the memory (about 0.2 GB at 12 components)
JACOBIAN_ROWS = 256
#: rows per pass of the flow's inference (transform, inverse_transform, scores): its
#: splines' parameters take ~1 kB per row, so passes of 4096 rows keep a pass under ~50 MB
#: whatever the number of subjects
INFER_ROWS = 4096


class IFlow(SourceEstimator):
    """Identifiable nonlinear ICA by an exact-likelihood flow with a conditional prior.

    Parameters
    ----------
    n_components : int
        Number of sources; must equal the number of features of ``X`` (the flow is
        square; the fMRI path reduces the data to that many dimensions).
    prior : {"gauss", "laplace"}, default="gauss"
        Factorial conditional prior p(z|u).
    transforms : int, default=4
        Rational-quadratic spline transforms after the linear layer (0: a linear
        flow, i.e. maximum-likelihood nonstationary linear ICA). Four in 9 epochs beat
        three in 12, in the same time, on the tuning data (``docs/benchmarks.md``).
    architecture : {"autoregressive", "elementwise"}, default="autoregressive"
        Each transform a spline per coordinate followed by an invertible linear map
        (the layer-by-layer inverse of an MLP mixing), or zuko's masked
        autoregressive spline transform (see :class:`trends_ivae.estimators.nn.flow.FlowConfig`).
    bound : float, default=5.0
        The splines act on [-bound, bound] (standardised units) and are the
        identity outside.
    bins : int, default=8
        Bins of each spline.
    hidden_dim, n_hidden : int, default=64, 2
        Hyper-network (and MLP prior) width and depth.
    learn_prior_mean : bool, default=True
        Learn u-dependent prior means (uncentred sources).
    init : {"ica", "fastica", "nsica", "random"}, default="ica"
        Start of the linear layer of the first restart: the better (by the linear
        model's likelihood) of FastICA and nonstationary ICA ("ica"), either one, or
        a random orthogonal matrix. Later restarts start at random, so that
        selection can still prefer a random start.
    standardize : bool, default=True
    max_epochs : int, default=9
        Epochs of the whole flow, after ``linear_epochs`` of the linear layer alone.
    linear_epochs : int, default=5
    batch_size : int, default=1024
    lr : float, default=2e-2
        Peak Adam learning rate (warm-up, then cosine decay). With ``batch_size`` and
        ``max_epochs`` chosen on the paper's setting, tuning data seeds 100-102
        (docs/benchmarks.md, issue 24): more, smaller steps at a higher rate reach a
        higher likelihood and MCC than 20 epochs of batch 2048 at 5e-3, in less time.
    warmup_frac, val_frac, grad_clip : float
        See :class:`trends_ivae.estimators.nn.flow_train.FlowTrainConfig`.
    n_init : int, default=1
        Restarts.
    select : {"central", "score"}, default="central"
        Keep the restart whose components best match all the others' (ICASSO-style),
        or the best held-out log-likelihood.
    device, max_seconds, random_state, verbose, n_threads :
        As for :class:`~trends_ivae.estimators.ivae.IVAE`.

    Attributes
    ----------
    model_ : trends_ivae.estimators.nn.flow.FlowModel
    elbo_ : float
        Held-out exact log-likelihood per sample of the returned restart, in the units
        of ``X`` (named as the VAE's bound so that both estimators report alike).
    start_method_ : str
        The linear start the first restart used ("fastica", "nsica" or "random").
    stability_, restart_agreement_, restart_elbos_, diverged_, history_, n_iter_ :
        As for :class:`~trends_ivae.estimators.ivae.IVAE`.
    """

    _FORMAT = "trends_ivae.IFlow"
    _INITS = ("ica", "fastica", "nsica", "random")

    def __init__(self, n_components: int = 5, *, prior: str = "gauss", transforms: int = 4,
                 architecture: str = "autoregressive", bins: int = 8, bound: float = 5.0,
                 hidden_dim: int = 64, n_hidden: int = 2, learn_prior_mean: bool = True, init: str = "ica",
                 standardize: bool = True, max_epochs: int = 9, linear_epochs: int = 5,
                 batch_size: int = 1024, lr: float = 2e-2, warmup_frac: float = 0.05, val_frac: float = 0.1,
                 grad_clip: float = 10.0, n_init: int = 1, select: str = "central", device: str = "auto",
                 max_seconds: float | None = None, random_state: Any = None, verbose: int = 0,
                 n_threads: int | str | None = "auto") -> None:
        self.n_components = n_components
        self.prior = prior
        self.transforms = transforms
        self.architecture = architecture
        self.bins = bins
        self.bound = bound
        self.hidden_dim = hidden_dim
        self.n_hidden = n_hidden
        self.learn_prior_mean = learn_prior_mean
        self.init = init
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.linear_epochs = linear_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_frac = warmup_frac
        self.val_frac = val_frac
        self.grad_clip = grad_clip
        self.n_init = n_init
        self.select = select
        self.device = device
        self.max_seconds = max_seconds
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    def _configs(self) -> tuple[FlowConfig, FlowTrainConfig]:
        mc = FlowConfig(n_components=self.n_components, n_aux=self.n_aux_, aux_kind=self.aux_kind_,
                        prior=self.prior, transforms=self.transforms, architecture=self.architecture,
                        bins=self.bins, bound=self.bound,
                        hidden_dim=self.hidden_dim, n_hidden=self.n_hidden,
                        learn_prior_mean=self.learn_prior_mean)
        tc = FlowTrainConfig(max_epochs=self.max_epochs, linear_epochs=self.linear_epochs,
                             batch_size=self.batch_size, lr=self.lr, warmup_frac=self.warmup_frac,
                             val_frac=self.val_frac, grad_clip=self.grad_clip)
        return mc, tc

    def _check_params(self) -> None:
        super()._check_params()
        if self.init not in self._INITS:
            raise ValueError(f"init must be one of {self._INITS}, got {self.init!r}")

    def _start(self, Xt: torch.Tensor, Ut: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.init == "random":
            self.start_method_ = "random"
            return None
        st, _, _ = self._linear_solution(Xt, Ut, seed, method={"ica": "auto"}.get(self.init, self.init))
        return torch.as_tensor(st.unmixing, device=Xt.device), torch.as_tensor(st.offset, device=Xt.device)

    def fit(self, X: Any, u: Any, checkpoint_dir: Any = None, stream_rows: int | None = None,
            comm: Comm = SINGLE_PROCESS) -> "IFlow":
        """Fit the flow to ``X`` (n_samples, n_components) with auxiliary variable ``u``.

        ``u`` takes the forms :meth:`trends_ivae.IVAE.fit` takes. The flow trains in one
        process with the whole dataset on the device: ``checkpoint_dir`` and
        ``stream_rows`` (VAE options) must stay None, and ``comm`` a one-process group.
        Returns ``self``.
        """
        for name, value in (("checkpoint_dir", checkpoint_dir), ("stream_rows", stream_rows)):
            if value is not None:
                raise ValueError(f"IFlow has no {name} option (a flow fit takes seconds to minutes and "
                                 "keeps the data on the device); use the VAE estimator for it")
        if comm.active:
            raise ValueError("IFlow does not train on several processes; use IVAE for a distributed fit")
        Xt, Ut, seed, _ = self._prepare_fit(X, u, stream_rows=None)
        if self.n_features_in_ != self.n_components:
            raise ValueError(f"the flow is square: n_components ({self.n_components}) must equal the number "
                             f"of features of X ({self.n_features_in_}); reduce X to n_components dimensions")
        mc, tc = self._configs()
        self._model_config, self._train_config = mc, tc
        with cpu_threads(self._threads_for(FlowModel(mc))):
            results = []
            for i in range(self.n_init):
                start = self._start(Xt, Ut, seed) if i == 0 else None
                results.append(train_flow(mc, tc, Xt, Ut, seed=seed + 1000 * (i + 1), split_seed=seed, start=start,
                                          verbose=self.verbose, desc=f"flow restart {i + 1}/{self.n_init}",
                                          max_seconds=self.max_seconds,
                                          ll_offset=self._log_det_standardize))
            self._adopt(results, Xt, Ut, seed, hint=f"try lr < {self.lr}")
        return self

    def _batched(self, fn, n: int, batch: int | None = None) -> np.ndarray:
        return super()._batched(fn, n, min(int(batch or INFER_ROWS), INFER_ROWS))

    def decoder_jacobian(self, Z: Any, reduce: str | None = "mean", batch_size: int = 4096) -> np.ndarray:
        """Jacobian of ``f`` with respect to each component (as :meth:`IVAE.decoder_jacobian
        <trends_ivae.IVAE.decoder_jacobian>`), at most :data:`JACOBIAN_ROWS` rows at a time.

        ``f`` is the inverse of the encoder ``g``, so ``J_f(z) = J_g(x)^{-1}`` at ``x = f(z)``:
        one numerical inverse per row for ``x`` and the Jacobian of one pass of the splines,
        instead of differentiating through the numerical inverse's iterations, which gave
        wrong values and raised a 12-component fit's peak memory to 1.6-1.75 GB at 1024 rows
        a batch (``docs/benchmarks.md``, "fit speed and the flow on fMRI").
        """
        return super().decoder_jacobian(Z, reduce=reduce, batch_size=min(int(batch_size), JACOBIAN_ROWS))

    def _decoder_jacobian_rows(self, Zi: torch.Tensor) -> torch.Tensor:
        x = self.model_.decode(Zi)                                               # (B, d)
        jg = torch.func.vmap(torch.func.jacrev(lambda v: self.model_.encode(v[None])[0][0]))(x)   # (B, k, d)
        return torch.linalg.inv(jg)                                             # (B, d, k)

    @torch.no_grad()
    def sample(self, u: Any, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``z ~ p(z|u)`` and ``x = f(z)`` for each row of ``u``; returns ``(X, Z)``."""
        self._check_fitted()
        u = self._check_u(u, len(u), fitting=False)
        g = torch.Generator(device=self.device_)
        g.manual_seed(int(check_random_state(random_state).randint(0, 2**31 - 1)))
        x, z = self.model_.sample(self._encode_u(u), generator=g)
        return x.float().cpu().numpy() * self.x_scale_ + self.x_mean_, self._user_from_internal(z.float().cpu().numpy())

    # ---------------------------------------------------------------- save/load
    def _model_state(self) -> dict:
        return {"config": self._model_config.to_dict(), "train_config": self._train_config.to_dict(),
                "start_method": self.start_method_,
                "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}}

    def _restore_model(self, state: dict) -> None:
        self._model_config = FlowConfig.from_dict(state["config"])
        self._train_config = FlowTrainConfig.from_dict(state["train_config"])
        self.start_method_ = state.get("start_method", "")
        self.model_ = FlowModel(self._model_config)
        self.model_.load_state_dict(state["state_dict"])
