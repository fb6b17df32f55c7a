"""``IVAE``: the array-level identifiable VAE with scikit-learn conventions.

The VAE estimator: what every estimator shares (checks, u, standardisation, restart
selection, save/load) is :class:`~trends_ivae.estimators.base.SourceEstimator`; this
module adds the VAE's configuration, its training (:func:`trends_ivae.estimators.nn.fit_restarts`)
and the VAE-only methods (decoder, ELBO, sampling, Jacobian).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils import check_random_state

from .aux_codes import IdentifiabilityWarning
from .base import SourceEstimator, train_rows
from .nn import IVAEConfig, IVAEModel, TrainConfig, TrainRun, fit_restarts
from .nn.comm import SINGLE_PROCESS, Comm
from .threads import cpu_threads

__all__ = ["IVAE", "IdentifiabilityWarning"]


class IVAE(SourceEstimator):
    """Identifiable VAE (Khemakhem et al., AISTATS 2020) on arrays.

    The generative model is ``p(x, z | u) = p_f(x | z) p(z | u)`` with a factorial
    conditional prior whose parameters depend on the auxiliary variable ``u``. The
    sources are identifiable up to permutation and component-wise transforms when
    ``u`` modulates them enough (see Notes).

    Parameters
    ----------
    n_components : int
        Number of sources (latent dimensions). At most the number of features.
    prior : {"gauss", "laplace", "normal"}, default="gauss"
        Conditional prior p(z|u): Gaussian with u-dependent mean and variance, Laplace
        with u-dependent location and scale, or "normal" for the vanilla VAE baseline
        (standard normal prior, u ignored: not identifiable).
    hidden_dim, n_hidden : int, default=64, 2
        Width and number of hidden layers of the encoder, decoder and prior MLPs.
    activation : {"xtanh", "leaky_relu", "tanh", "elu", "relu"}, default="xtanh"
        Hidden non-linearity (xtanh is tanh(y) + 0.1 y).
    decoder_var : float or None, default=1e-3
        Fixed observation-noise variance of p(x|z) in units of the standardised data;
        None learns it. Small values matter: recovery happens in the low-noise regime
        (see docs/benchmarks.md).
    learn_prior_mean : bool, default=True
        Learn u-dependent prior means (needed for uncentred sources).
    encoder_uses_aux : bool, default=True
        q(z|x,u) as in the paper (True) or q(z|x).
    posterior : {"full", "diag"}, default="full"
        Covariance of the Gaussian posterior q(z|x,u). "full" (a Cholesky factor from
        the encoder) keeps the ELBO tight in the low-noise regime; "diag" (the paper)
        loses ½(Σ log diag JᵀJ − log det JᵀJ) nats per sample, which biases the
        decoder towards orthogonal Jacobian columns instead of the true mixing
        (see :mod:`trends_ivae.estimators.nn.ivae`).
    standardize : bool or "global", default=True
        Centre and scale each feature before training (undone by ``inverse_transform``).
        ``"global"``: centre each feature and divide all by one scale (the RMS of the
        ``n_components`` largest standard deviations), so that quiet features (e.g. the
        noise dimensions of a reduction to more dimensions than components) stay quiet.
    max_epochs : int, default=80
    batch_size : int, default=256
    lr : float, default=5e-3
        Peak Adam learning rate (short linear warm-up, then cosine decay).
    decoder_var_start : float or None, default=1e-2
        Observation-noise variance at the first step, annealed linearly (over
        ``warmup_frac`` of the steps, default 30 %) to ``decoder_var``; None starts at
        ``decoder_var``. Ignored when the variance is learned (``decoder_var=None``).
    patience : int, default=30
        Epochs without a better held-out ELBO (after the warm-up) before stopping.
    warmup_frac, val_frac, grad_clip :
        Training settings, see :class:`trends_ivae.estimators.nn.TrainConfig`.
    n_init : int, default=1
        Restarts with different seeds; ``select`` decides which one is kept.
    init : {"ica", "random"}, default="ica"
        "ica" adds affine paths beside the encoder and decoder MLPs
        (``linear_skip``) and starts the first restart at a linear ICA solution of
        the same (x, u) (:func:`trends_ivae.estimators.linear_start.linear_start`: FastICA or
        nonstationary ICA, whichever has the higher linear-model likelihood), with
        the MLP residuals at zero and the prior at the start's per-level statistics;
        later restarts start at random. The vanilla VAE (``prior="normal"``) always
        starts at random: u reaches no part of it, the start included.
    linear_restarts : int, default=1
        With ``init="ica"``: FastICA runs for the linear start, the most central one kept
        (ICASSO-style, :mod:`trends_ivae.estimators.consensus`). More than one makes the
        start, and so the fit, depend less on ``random_state`` (issue 20: the spatial
        mode's seed agreement is that of its start).
    select : {"score", "central"}, default="score"
        Keep the restart with the best held-out ELBO ("score"), or the most central
        one, the restart whose components best match all the others' (ICASSO-style,
        :mod:`trends_ivae.estimators.consensus`).
    init_epochs : int or None, default=None
        With ``n_init > 1``: the restarts race. Every restart trains for its first
        ``init_epochs`` epochs (of a schedule spanning ``max_epochs``), and only the one
        with the best held-out ELBO then continues to ``max_epochs``; the others are
        kept as they stood (with ``select="central"`` all are compared as they stand).
        None trains every restart fully.
    n_iwae : int, default=4
        Importance samples K of the training objective: 1 is the ELBO (analytical
        KL); K > 1 the importance-weighted bound of Burda et al. (2016), a tighter
        lower bound of log p(x|u) that costs about K decoder passes per sample. The
        held-out criterion for early stopping and restart selection stays the ELBO
        (docs/benchmarks.md compares K).
    device : {"auto", "cpu", "cuda", "mps"} or str
        "auto" picks CUDA, then MPS, then CPU.
    amp : bool
        bfloat16 autocast on CUDA.
    max_seconds : float or None
        Wall-time limit per restart.
    n_threads : "auto", int or None, default="auto"
        CPU intra-op threads during fit: "auto" uses one thread for a model of fewer
        than a million parameters on the CPU (a second thread does not speed up such
        small products and slows a fit down on a busy machine), an int sets it, None
        keeps the caller's. The caller's setting is restored afterwards.
    linear_decoder : bool, default=False
        An affine decoder (encoder and prior unchanged): the linear counterpart of the
        model, linear ICA with the same conditional prior
        (:func:`trends_ivae.group.nonlinearity.linear_counterpart`).
    affine_path : {"train", "frozen", "anneal"}, default="train"
        With ``init="ica"``: how the decoder's affine path trains after the linear start
        (:class:`~trends_ivae.estimators.nn.config.IVAEConfig`; ``"anneal"`` takes its weight
        from 1 to 0 over the first half of the training steps).
    random_state : int, RandomState or None
        Seeds everything; the same value gives the same numbers on the CPU.
    verbose : int
        0 silent; 1 a progress line per restart with the ELBO.

    Attributes
    ----------
    model_ : trends_ivae.estimators.nn.IVAEModel
        The selected restart (on ``device_``).
    classes_ : ndarray or None
        Levels of a discrete (1-D) ``u`` (None for a continuous ``u`` or for factors).
    aux_kind_ : {"discrete", "continuous", "factors"}
        The form of ``u`` the model was fitted with: 1-D labels, a 2-D float array, or a
        ``DataFrame`` of discrete factors.
    factor_names_ : list or None
        The factors' column labels (``aux_kind_ == "factors"``; None otherwise).
    factor_classes_ : list of ndarray or None
        The levels of each factor, in the order of its one-hot columns.
    factor_offsets_ : ndarray of int or None
        The first one-hot column of each factor; factor ``f``'s level ``k`` is column
        ``factor_offsets_[f] + k`` of the (never built) concatenated one-hot u.
    n_aux_ : int
        Width of u's layout: levels (1-D labels), columns (continuous) or summed
        levels of the factors.
    elbo_ : float
        Held-out ELBO per sample of the selected restart, in the units of ``X``.
    loss_curve_ : list of float
        Negative training ELBO per epoch of the selected restart.
    history_ : dict
        ``train_elbo`` and ``val_elbo`` per epoch of the selected restart.
    n_iter_ : int
        Epochs run by the selected restart.
    restart_elbos_ : ndarray of shape (n_init,)
        Held-out ELBO of every restart (``-inf`` for a diverged one).
    diverged_ : ndarray of bool
        Restarts whose loss became non-finite.
    stability_ : ndarray of shape (n_components,)
        Per-component stability index of the returned restart (ICASSO-style): the
        mean absolute correlation of each component with its matched component in
        every other converged restart, on up to 5000 rows (1: every restart found
        it; NaN with fewer than two restarts). See :mod:`trends_ivae.estimators.consensus`.
    restart_agreement_ : float
        Mean pairwise MCC between the converged restarts (NaN with fewer than two).
    component_order_, component_signs_ : ndarray
        Permutation and signs applied to the model's latents (see :meth:`reorder`).
    device_ : torch.device
    n_features_in_ : int

    Notes
    -----
    The identifiability theorem needs ``u`` to take at least ``n_components * k + 1``
    distinct values, with ``k`` sufficient statistics per component (2 for the
    Gaussian and Laplace priors); fewer gives an :class:`IdentifiabilityWarning`.

    Discrete labels and factors are held as integer indices into their one-hot
    layout, (n_samples, 1) or (n_samples, n_factors), never as a dense one-hot: memory
    is O(n_samples x n_factors) whatever the number of levels. The model computes
    what it would on the one-hot (a table lookup for the prior of 1-D labels; for
    factors, and for the encoder's ``[x, u]``, the first layer gathers the weight
    columns of the indices).
    """

    def __init__(self, n_components: int = 5, *, prior: str = "gauss", hidden_dim: int = 64,
                 n_hidden: int = 2, activation: str = "xtanh",
                 decoder_var: float | None = 1e-3, learn_prior_mean: bool = True,
                 encoder_uses_aux: bool = True, posterior: str = "full", standardize: bool | str = True,
                 max_epochs: int = 80, batch_size: int = 256, lr: float = 5e-3, warmup_frac: float = 0.3,
                 decoder_var_start: float | None = 1e-2, val_frac: float = 0.1,
                 patience: int = 30, grad_clip: float = 10.0, n_init: int = 1,
                 init_epochs: int | None = None, n_iwae: int = 4,
                 device: str = "auto", amp: bool = False, max_seconds: float | None = None,
                 random_state: Any = None, verbose: int = 0, init: str = "ica", select: str = "score",
                 n_threads: int | str | None = "auto", linear_decoder: bool = False,
                 linear_restarts: int = 1, affine_path: str = "train") -> None:
        self.n_components = n_components
        self.prior = prior
        self.hidden_dim = hidden_dim
        self.n_hidden = n_hidden
        self.activation = activation
        self.decoder_var = decoder_var
        self.learn_prior_mean = learn_prior_mean
        self.encoder_uses_aux = encoder_uses_aux
        self.posterior = posterior
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_frac = warmup_frac
        self.decoder_var_start = decoder_var_start
        self.val_frac = val_frac
        self.patience = patience
        self.grad_clip = grad_clip
        self.n_init = n_init
        self.init_epochs = init_epochs
        self.n_iwae = n_iwae
        self.device = device
        self.amp = amp
        self.max_seconds = max_seconds
        self.random_state = random_state
        self.verbose = verbose
        self.init = init
        self.select = select
        self.n_threads = n_threads
        self.linear_decoder = linear_decoder
        self.linear_restarts = linear_restarts
        self.affine_path = affine_path


    # --------------------------------------------------------------------- fit
    def _check_params(self) -> None:
        super()._check_params()
        if self.init_epochs is not None and not 1 <= self.init_epochs:
            raise ValueError(f"init_epochs must be None or >= 1, got {self.init_epochs}")
        if int(self.n_iwae) < 1:
            raise ValueError(f"n_iwae must be >= 1, got {self.n_iwae}")
        if self.init not in ("random", "ica"):
            raise ValueError(f"init must be 'random' or 'ica', got {self.init!r}")
        if int(self.linear_restarts) < 1:
            raise ValueError(f"linear_restarts must be >= 1, got {self.linear_restarts}")

    def _configs(self, n_features: int, n_aux: int, aux_kind: str) -> tuple[IVAEConfig, TrainConfig]:
        mc = IVAEConfig(n_features=n_features, n_components=self.n_components, n_aux=n_aux,
                        aux_kind=aux_kind, prior=self.prior, hidden_dim=self.hidden_dim,
                        n_hidden=self.n_hidden, activation=self.activation,
                        decoder_var=self.decoder_var, learn_prior_mean=self.learn_prior_mean,
                        encoder_uses_aux=self.encoder_uses_aux, posterior=self.posterior,
                        linear_skip=self._linear_start_used(), linear_decoder=self.linear_decoder,
                        affine_path=self.affine_path)
        tc = TrainConfig(max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
                         warmup_frac=self.warmup_frac, decoder_var_start=self.decoder_var_start,
                         val_frac=self.val_frac, patience=self.patience, grad_clip=self.grad_clip,
                         amp=self.amp, n_iwae=self.n_iwae)
        return mc, tc

    def fit(self, X: Any, u: Any, checkpoint_dir: str | os.PathLike | None = None,
            stream_rows: int | None = None, comm: Comm = SINGLE_PROCESS) -> "IVAE":
        """Fit the iVAE to observations ``X`` with auxiliary variable ``u``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        u : array-like of shape (n_samples,) or (n_samples, n_aux), or pandas.DataFrame
            1-D discrete labels (any hashable values), a 2-D float array for a
            continuous auxiliary variable, or a DataFrame with one column per discrete
            factor (e.g. task and window). Labels are held as integer indices,
            (n_samples, 1) or (n_samples, n_factors), never as a one-hot. Factors give
            the model of their concatenated one-hot columns (an MLP prior): a
            categorical column's categories are its levels, in their order (so that
            levels absent from these rows keep a column), another column's levels are
            its sorted distinct labels.
        checkpoint_dir : path, optional
            Each restart checkpoints there after every epoch and resumes from an
            existing checkpoint.
        stream_rows : int, optional
            Keep X and u in host memory and move them to the device in chunks of about
            this many rows (whole batches): for data larger than the device's memory.
            ``X`` may then stay on disk: an ``h5py.Dataset`` (e.g. ``prepared.h5``'s
            ``x``) or an ``np.memmap`` is never read whole; each chunk's rows are read
            from it block by block, and the standardisation statistics in two passes.
            Gives the same model as the default (everything on the device) for the
            same ``random_state`` and device.
        comm : trends_ivae.estimators.nn.comm.Comm
            The process group of a distributed fit (a
            :class:`trends_ivae.estimators.distributed.ProcessGroupComm`): ``X`` and ``u`` are then
            this rank's rows (:func:`trends_ivae.estimators.distributed.row_share`), and every rank
            fits the model one process would fit on all rows. Default: one process.

        Returns
        -------
        self
        """
        Xt, Ut, seed, _ = self._prepare_fit(X, u, stream_rows, comm)
        mc, tc = self._configs(self.n_features_in_, self.n_aux_, self.aux_kind_)
        n_train = train_rows(int(Xt.shape[0]), self.val_frac)
        mc.anneal_steps = max(1, self.max_epochs * max(1, n_train // self.batch_size) // 2)
        self._model_config, self._train_config = mc, tc
        with cpu_threads(self._threads_for(IVAEModel(mc))):
            init_first = self._linear_init(Xt, Ut, seed) if self._linear_start_used() else None
            run = TrainRun(seed=seed, verbose=self.verbose, max_seconds=self.max_seconds, stream_rows=stream_rows,
                           device=self.device_, init=init_first, elbo_offset=self._log_det_standardize, comm=comm)
            results = fit_restarts(mc, tc, Xt, Ut, run=run, n_init=self.n_init, init_epochs=self.init_epochs,
                                   checkpoint_dir=checkpoint_dir)
            self._adopt(results, Xt, Ut, seed, hint=f"try lr < {self.lr}, a larger decoder_var or "
                                                   "standardize=True (also after a retry with a lower learning rate)")
        return self

    @torch.no_grad()
    def sample(self, u: Any, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``z ~ p(z|u)`` and ``x ~ p(x|z)`` for each row of ``u``; returns ``(X, Z)``."""
        self._check_fitted()
        u = self._check_u(u, len(u), fitting=False)
        Ut = self._encode_u(u)
        g = torch.Generator(device=self.device_)
        g.manual_seed(int(check_random_state(random_state).randint(0, 2**31 - 1)))
        x, z = self.model_.sample(Ut, generator=g)
        X = x.float().cpu().numpy() * self.x_scale_ + self.x_mean_
        return X, self._user_from_internal(z.float().cpu().numpy())

    def _linear_start_used(self) -> bool:
        return self.init == "ica" and self.prior != "normal"

    def _linear_init(self, Xt: Any, Ut: torch.Tensor, seed: int):
        """The first restart's start: a linear ICA solution of (a subsample of) the rows."""
        from .nn.priors import init_lookup_prior

        st, X, codes = self._linear_solution(Xt, Ut, seed, max_rows=200_000,
                                             n_restarts=int(self.linear_restarts))
        y = torch.as_tensor(st.transform(X), dtype=torch.float32)
        u0 = torch.as_tensor(codes, dtype=torch.float32)[:, None] if codes is not None else None

        def init(model: IVAEModel) -> None:
            model.set_linear_start(torch.as_tensor(st.unmixing), torch.as_tensor(st.offset))
            if u0 is not None and self.aux_kind_ == "discrete":
                dev = model.enc_linear.weight.device
                init_lookup_prior(model.prior, y.to(dev), u0.to(dev))
        return init

    # ---------------------------------------------------------------- save/load
    _FORMAT = "trends_ivae.IVAE"

    def _model_state(self) -> dict:
        return {"config": self._model_config.to_dict(), "train_config": self._train_config.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}}

    def _restore_model(self, state: dict) -> None:
        self._model_config = IVAEConfig.from_dict(state["config"])
        self._train_config = TrainConfig.from_dict(state["train_config"])
        self.model_ = IVAEModel(self._model_config)
        self.model_.load_state_dict(state["state_dict"])
