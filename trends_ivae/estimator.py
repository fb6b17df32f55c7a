"""``IVAE``: the array-level identifiable VAE with scikit-learn conventions.

This module is the numpy ↔ torch seam: it validates arrays, encodes the auxiliary
variable, moves the whole dataset to the training device once, calls
:mod:`trends_ivae.model` to train ``n_init`` restarts, keeps the restart with the best
held-out ELBO, and converts results back to numpy.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from ._version import __version__
from .metrics import mcc
from .model import IVAEConfig, IVAEModel, TrainConfig, fit_restarts, resolve_device

logger = logging.getLogger(__name__)

__all__ = ["IVAE", "IdentifiabilityWarning"]


class IdentifiabilityWarning(UserWarning):
    """The auxiliary variable is too poor for the identifiability theorem."""


#: rows per inference batch (transform, score, ...): the activations of a batch are the
#: working memory of inference, so it stays flat in the number of rows (about 25 MB at the
#: default width; 65 536 rows held ~80 MB more in the group stage of a 1000-subject cohort)
_INFER_ROWS = 16384


def _on_disk(X: Any) -> bool:
    """True for a 2-D array-like that is not in memory (``h5py.Dataset``, ``np.memmap``)."""
    return (isinstance(X, np.memmap)
            or (not isinstance(X, (np.ndarray, torch.Tensor, list, tuple))
                and hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")))


class _DiskRows:
    """Standardised rows of an on-disk 2-D array, read block by block (streamed training).

    ``rows[idx]`` takes increasing row numbers and reads only the blocks of
    ``block`` rows that hold some of them, each as one contiguous slice (much faster
    than an HDF5 point selection); :meth:`blocks` walks the whole array.
    """

    block = 16384

    def __init__(self, data: Any, mean: np.ndarray, scale: np.ndarray) -> None:
        self.data, self.mean, self.scale = data, mean, scale
        self.shape = tuple(int(n) for n in data.shape)

    def _std(self, raw: np.ndarray) -> np.ndarray:
        return ((np.asarray(raw, dtype=np.float32) - self.mean) / self.scale).astype(np.float32, copy=False)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), np.float32)
        which = rows // self.block
        cuts = np.flatnonzero(np.diff(which)) + 1
        for part in np.split(np.arange(rows.size), cuts):
            if not part.size:
                continue
            lo = int(which[part[0]]) * self.block
            raw = self.data[lo:min(lo + self.block, self.shape[0])]
            out[part] = self._std(np.asarray(raw)[rows[part] - lo])
        return out

    @staticmethod
    def blocks(data: Any, size: int | None = None):
        """``(start, block)`` over the rows of ``data`` as float64 arrays."""
        size = size or _DiskRows.block
        for lo in range(0, int(data.shape[0]), size):
            yield lo, np.asarray(data[lo:lo + size], dtype=np.float64)


class IVAE(TransformerMixin, BaseEstimator):
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
        None learns it. Small values matter: recovery happens in the low-noise regime.
        At 1e-2 the posterior spread of the true sources on the paper's benchmark is
        as wide as the sources themselves, and a learned variance settles there too.
    learn_prior_mean : bool, default=True
        Learn u-dependent prior means (needed for uncentred sources).
    encoder_uses_aux : bool, default=True
        q(z|x,u) as in the paper (True) or q(z|x).
    posterior : {"full", "diag"}, default="full"
        Covariance of the Gaussian posterior q(z|x,u). "full" (a Cholesky factor from
        the encoder) keeps the ELBO tight in the low-noise regime; "diag" (the paper)
        loses ½(Σ log diag JᵀJ − log det JᵀJ) nats per sample, which biases the
        decoder towards orthogonal Jacobian columns instead of the true mixing
        (see :mod:`trends_ivae.model.ivae`).
    standardize : bool, default=True
        Centre and scale each feature before training (undone by ``inverse_transform``).
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
    warmup_frac, kl_start, entropy_start, val_frac, grad_clip :
        Training settings, see :class:`trends_ivae.model.TrainConfig` (by default the
        KL and the entropy keep their full weight from the first step).
    n_init : int, default=1
        Restarts with different seeds; the one with the best held-out ELBO is kept.
        One restart fits the 30 s budget of the synthetic benchmark on 2 CPU cores;
        on the benchmark the held-out ELBO picks the restart with the best MCC, so
        more restarts help where time allows.
    init_epochs : int or None, default=None
        With ``n_init > 1``: race the restarts for their first ``init_epochs`` epochs
        (of a schedule spanning ``max_epochs``) and train only the one with the best
        held-out ELBO on to ``max_epochs`` (successive halving down to one restart).
        None trains every restart fully.
    n_iwae : int, default=4
        Importance samples K of the training objective: 1 is the ELBO (analytical
        KL); K > 1 the importance-weighted bound of Burda et al. (2016), a tighter
        lower bound of log p(x|u) that costs about K decoder passes per sample. The
        held-out criterion for early stopping and restart selection stays the ELBO.
        On the synthetic benchmark K = 4 reaches a higher MCC in the same wall time
        than the ELBO with more epochs (docs/benchmarks.md).
    device : {"auto", "cpu", "cuda", "mps"} or str
        "auto" picks CUDA, then MPS, then CPU.
    amp : bool
        bfloat16 autocast on CUDA.
    max_seconds : float or None
        Wall-time limit per restart.
    random_state : int, RandomState or None
        Seeds everything; the same value gives the same numbers on the CPU.
    verbose : int
        0 silent; 1 a progress line per restart with the ELBO.

    Attributes
    ----------
    model_ : trends_ivae.model.IVAEModel
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
    stability_ : float
        Mean pairwise MCC between the posterior means of the converged restarts (1 is
        perfectly reproducible; NaN with fewer than two restarts), like ICASSO's index.
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
                 encoder_uses_aux: bool = True, posterior: str = "full", standardize: bool = True,
                 max_epochs: int = 80, batch_size: int = 256, lr: float = 5e-3, warmup_frac: float = 0.3,
                 kl_start: float = 1.0, entropy_start: float = 1.0,
                 decoder_var_start: float | None = 1e-2, val_frac: float = 0.1,
                 patience: int = 30, grad_clip: float = 10.0, n_init: int = 1,
                 init_epochs: int | None = None, n_iwae: int = 4,
                 device: str = "auto", amp: bool = False, max_seconds: float | None = None,
                 random_state: Any = None, verbose: int = 0) -> None:
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
        self.kl_start = kl_start
        self.entropy_start = entropy_start
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

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_X(X: Any, name: str = "X") -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float32, copy=False)
        if not np.all(np.isfinite(X)):
            bad = int((~np.isfinite(X)).any(axis=1).sum())
            raise ValueError(f"{name} contains NaN or inf values (in {bad} of {X.shape[0]} rows)")
        return X

    @staticmethod
    def _check_disk_X(X: Any, name: str = "X") -> Any:
        """Shape and dtype of an on-disk X; finiteness is checked block by block, without loading it."""
        if len(X.shape) != 2:
            raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {tuple(X.shape)}")
        if not np.issubdtype(np.dtype(X.dtype), np.number):
            raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
        bad = sum(int((~np.isfinite(b)).any(axis=1).sum()) for _, b in _DiskRows.blocks(X))
        if bad:
            raise ValueError(f"{name} contains NaN or inf values (in {bad} of {X.shape[0]} rows)")
        return X

    def _check_u(self, u: Any, n_samples: int, fitting: bool) -> np.ndarray | pd.DataFrame:
        if u is None:
            raise ValueError("u is required: the auxiliary variable (1-D labels, a 2-D float array or a "
                             "DataFrame of discrete factors)")
        if isinstance(u, pd.DataFrame):
            return self._check_factors(u, n_samples, fitting)
        u = np.asarray(u)
        if u.ndim not in (1, 2):
            raise ValueError(f"u must be 1-D labels or a 2-D array (n_samples, n_aux), got shape {u.shape}")
        if u.shape[0] != n_samples:
            raise ValueError(f"X and u must have the same number of rows: X has {n_samples}, u has {u.shape[0]}")
        if u.ndim == 2 or np.issubdtype(u.dtype, np.floating):
            if u.ndim == 1:
                if not np.all(np.isfinite(u)) or not np.all(u == np.round(u)):
                    raise ValueError("a 1-D u must hold discrete labels; pass a continuous u as a 2-D "
                                     "array of shape (n_samples, n_aux)")
                u = u.astype(np.int64)
            else:
                u = u.astype(np.float32)
                if not np.all(np.isfinite(u)):
                    raise ValueError("u contains NaN or inf values")
        if fitting:
            return u
        kind = self.aux_kind_
        if kind == "factors":
            raise ValueError(f"this model was fitted with the discrete factors {self.factor_names_}; pass u "
                             "as a pandas DataFrame with these columns")
        if u.ndim == 1 and kind == "continuous":
            raise ValueError("this model was fitted with a continuous (2-D) u; pass u as a 2-D array")
        if u.ndim == 2 and kind == "discrete":
            raise ValueError("this model was fitted with discrete (1-D) u labels; pass u as 1-D labels")
        if u.ndim == 2 and u.shape[1] != self.n_aux_:
            raise ValueError(f"u has {u.shape[1]} columns; the model was fitted with {self.n_aux_}")
        return u

    def _check_factors(self, u: pd.DataFrame, n_samples: int, fitting: bool) -> pd.DataFrame:
        """A DataFrame of discrete factors (one column each): rows, columns, no missing labels."""
        if u.shape[0] != n_samples:
            raise ValueError(f"X and u must have the same number of rows: X has {n_samples}, u has {u.shape[0]}")
        if u.shape[1] == 0:
            raise ValueError("u is a DataFrame without columns; give one column per discrete factor")
        if not u.columns.is_unique:
            raise ValueError(f"u's factor columns must have distinct names, got {list(u.columns)}")
        if not fitting:
            if self.aux_kind_ != "factors":
                form = "1-D labels" if self.aux_kind_ == "discrete" else "a 2-D float array"
                raise ValueError(f"this model was fitted with u as {form}, not a DataFrame of factors")
            missing = [c for c in self.factor_names_ if c not in u.columns]
            if missing:
                raise ValueError(f"u lacks the factor columns {missing}; the model was fitted with the "
                                 f"factors {self.factor_names_}")
            u = u.loc[:, list(self.factor_names_)]
        for name in u.columns:
            if u[name].isna().any():
                raise ValueError(f"u factor {name!r} has missing labels (NaN or None)")
        return u

    @staticmethod
    def _column_classes(col: pd.Series) -> np.ndarray:
        """A factor's levels: a categorical column's categories (in order, used or not), else its sorted labels."""
        if isinstance(col.dtype, pd.CategoricalDtype):
            return np.asarray(col.cat.categories)
        return np.unique(col.to_numpy())

    @staticmethod
    def _column_codes(col: pd.Series, classes: np.ndarray, name: Any) -> np.ndarray:
        """Each row's level number in ``classes``; a label that is not there is a ValueError."""
        index = pd.Index(classes)
        if isinstance(col.dtype, pd.CategoricalDtype):   # map the categories, then take them by code
            codes = index.get_indexer(col.cat.categories)[col.cat.codes.to_numpy()]
        else:
            codes = index.get_indexer(col.to_numpy())
        if (codes < 0).any():
            unknown = pd.unique(col.to_numpy()[codes < 0])[:10]
            raise ValueError(f"u factor {name!r} has labels not seen during fit: {list(unknown)}")
        return codes.astype(np.int64)

    def _set_factors(self, names: list, classes: list[np.ndarray]) -> None:
        self.factor_names_ = [n.item() if isinstance(n, np.generic) else n for n in names]
        self.factor_classes_ = [np.asarray(c) for c in classes]
        sizes = np.array([len(c) for c in self.factor_classes_], dtype=np.int64)
        self.factor_offsets_ = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def _encode_u(self, u: np.ndarray | pd.DataFrame, fitting: bool = False,
                  device: torch.device | None = None) -> torch.Tensor:
        """u on the device (or on ``device``) as the model takes it.

        1-D labels: (n, 1) level indices; a DataFrame of factors: (n, F) column indices
        of the concatenated one-hot layout (level + the factor's offset); both as
        float32 (exact below 2**24) so that they travel in one tensor with X. A 2-D
        float u: as it is.
        """
        device = self.device_ if device is None else device
        if isinstance(u, pd.DataFrame):
            if fitting:
                self._set_factors(list(u.columns), [self._column_classes(u[c]) for c in u.columns])
            codes = np.empty(u.shape, dtype=np.int64)
            for j, (name, classes) in enumerate(zip(self.factor_names_, self.factor_classes_)):
                codes[:, j] = self._column_codes(u[name], classes, name) + self.factor_offsets_[j]
            return torch.as_tensor(codes, dtype=torch.float32, device=device)
        if u.ndim == 1:
            if fitting:
                self.classes_, codes = np.unique(u, return_inverse=True)
            else:
                codes = np.searchsorted(self.classes_, u)
                codes = np.clip(codes, 0, len(self.classes_) - 1)
                unknown = self.classes_[codes] != u
                if unknown.any():
                    raise ValueError(f"u has labels not seen during fit: {np.unique(u[unknown])[:10].tolist()}")
            return torch.as_tensor(np.asarray(codes).reshape(-1, 1), dtype=torch.float32, device=device)
        if fitting:
            self.classes_ = None
        return torch.as_tensor(u, dtype=torch.float32, device=device)

    def _u_width(self) -> int:
        """Columns of the u tensor the model takes (1, the number of factors, or n_aux_)."""
        if self.aux_kind_ == "factors":
            return len(self.factor_names_)
        return 1 if self.aux_kind_ == "discrete" else int(self.n_aux_)

    def _to_device(self, X: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        Xs = (X - self.x_mean_) / self.x_scale_
        return torch.as_tensor(Xs, dtype=torch.float32, device=self.device_ if device is None else device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ValueError("this IVAE is not fitted yet: call fit(X, u) first")

    # --------------------------------------------------------------------- fit
    def _configs(self, n_features: int, n_aux: int, aux_kind: str) -> tuple[IVAEConfig, TrainConfig]:
        mc = IVAEConfig(n_features=n_features, n_components=self.n_components, n_aux=n_aux,
                        aux_kind=aux_kind, prior=self.prior, hidden_dim=self.hidden_dim,
                        n_hidden=self.n_hidden, activation=self.activation,
                        decoder_var=self.decoder_var, learn_prior_mean=self.learn_prior_mean,
                        encoder_uses_aux=self.encoder_uses_aux, posterior=self.posterior)
        tc = TrainConfig(max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
                         warmup_frac=self.warmup_frac, kl_start=self.kl_start,
                         entropy_start=self.entropy_start, decoder_var_start=self.decoder_var_start,
                         val_frac=self.val_frac, patience=self.patience, grad_clip=self.grad_clip,
                         amp=self.amp, n_iwae=self.n_iwae)
        return mc, tc

    def fit(self, X: Any, u: Any, checkpoint_dir: str | os.PathLike | None = None,
            stream_rows: int | None = None) -> "IVAE":
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

        Returns
        -------
        self
        """
        disk = stream_rows is not None and _on_disk(X)
        X = self._check_disk_X(X) if disk else self._check_X(X)
        n_samples, n_features = X.shape
        u = self._check_u(u, n_samples, fitting=True)
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.n_components > n_features:
            raise ValueError(f"n_components ({self.n_components}) is larger than the number of "
                             f"features of X ({n_features})")
        from .distributed import Comm

        comm = Comm()   # a distributed fit (torchrun): X, u are this rank's rows
        n_all = int(round(comm.sum(n_samples)))   # the batches are drawn over every rank's rows
        n_train = n_all - int(round(n_all * self.val_frac))
        if n_train < self.batch_size:
            raise ValueError(f"too few samples: {n_all} samples leave {n_train} for training "
                             f"(val_frac={self.val_frac}), fewer than one batch of {self.batch_size}; "
                             "lower batch_size or pass more data")
        if self.n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {self.n_init}")
        if self.init_epochs is not None and not 1 <= self.init_epochs:
            raise ValueError(f"init_epochs must be None or >= 1, got {self.init_epochs}")
        if int(self.n_iwae) < 1:
            raise ValueError(f"n_iwae must be >= 1, got {self.n_iwae}")
        self._warn_identifiability(u)

        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1 - 10**6))
        seed = int(comm.gather(seed)[0])   # rank 0's, when random_state is None
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = n_features
        if self.standardize:   # float64 sums block by block (on disk: never loaded whole), over every rank
            mean = comm.sum_array(sum(b.sum(0) for _, b in _DiskRows.blocks(X))) / n_all
            var = comm.sum_array(sum(((b - mean) ** 2).sum(0) for _, b in _DiskRows.blocks(X))) / n_all
            self.x_mean_ = mean.astype(np.float32)
            scale = np.sqrt(var).astype(np.float32)
            self.x_scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        else:
            self.x_mean_ = np.zeros(n_features, np.float32)
            self.x_scale_ = np.ones(n_features, np.float32)
        host = torch.device("cpu") if stream_rows is not None else None
        Xt = _DiskRows(X, self.x_mean_, self.x_scale_) if disk else self._to_device(X, host)
        factors = isinstance(u, pd.DataFrame)
        self.aux_kind_ = "factors" if factors else ("discrete" if u.ndim == 1 else "continuous")
        self.classes_ = self.factor_names_ = self.factor_classes_ = self.factor_offsets_ = None
        if comm.active and factors:   # one coding per factor for all ranks: the union of their labels
            names = list(u.columns)
            gathered = comm.gather([self._column_classes(u[c]) for c in names])
            classes = []
            for j in range(len(names)):
                cands = [g[j] for g in gathered]
                same = all(len(c) == len(cands[0]) and np.array_equal(c, cands[0]) for c in cands)
                classes.append(cands[0] if same else np.unique(np.concatenate(cands)))
            self._set_factors(names, classes)
            Ut = self._encode_u(u, fitting=False, device=host)
        elif comm.active and u.ndim == 1:   # one label coding for all ranks: the union of their labels
            self.classes_ = np.unique(np.concatenate([np.asarray(c) for c in comm.gather(np.unique(u))]))
            Ut = self._encode_u(u, fitting=False, device=host)
        else:
            Ut = self._encode_u(u, fitting=True, device=host)
        if factors:
            self.n_aux_ = int(sum(len(c) for c in self.factor_classes_))
        else:
            self.n_aux_ = len(self.classes_) if self.aux_kind_ == "discrete" else int(Ut.shape[1])
        if self.aux_kind_ != "continuous" and self.n_aux_ >= 2 ** 24:
            raise ValueError(f"u has {self.n_aux_} levels in all; at most 2**24 are supported")
        mc, tc = self._configs(n_features, self.n_aux_, self.aux_kind_)
        self._model_config, self._train_config = mc, tc

        results = fit_restarts(mc, tc, Xt, Ut, n_init=self.n_init, seed=seed, verbose=self.verbose,
                               checkpoint_dir=checkpoint_dir, max_seconds=self.max_seconds,
                               init_epochs=self.init_epochs, comm=comm if comm.active else None,
                               stream_rows=stream_rows, device=self.device_)
        elbos = np.array([r.best_val_elbo if not r.diverged else -np.inf for r in results])
        self.diverged_ = np.array([r.diverged for r in results])
        if not np.isfinite(elbos).any():
            raise RuntimeError(f"all {self.n_init} restarts diverged (non-finite ELBO), also after a retry "
                               f"with a lower learning rate; try lr < {self.lr}, a larger decoder_var "
                               "or standardize=True")
        for i in np.flatnonzero(self.diverged_):
            warnings.warn(f"restart {i + 1} of {self.n_init} diverged and was discarded", RuntimeWarning)
        best = int(np.argmax(elbos))
        chosen = results[best]
        self.model_ = chosen.model
        log_scale = float(np.log(self.x_scale_).sum())
        self.restart_elbos_ = elbos - log_scale
        self.elbo_ = float(self.restart_elbos_[best])
        self.history_ = {k: [v - log_scale for v in vals] for k, vals in chosen.history.items()}
        self.loss_curve_ = [-v for v in self.history_["train_elbo"]]
        self.n_iter_ = chosen.n_epochs
        self.best_restart_ = best
        self.fit_seconds_ = float(sum(r.seconds for r in results))
        self.component_order_ = np.arange(self.n_components)
        self.component_signs_ = np.ones(self.n_components)
        self.stability_ = self._stability([r for r in results if not r.diverged], Xt, Ut, seed)
        return self

    def _warn_identifiability(self, u: np.ndarray) -> None:
        if self.prior == "normal":
            return
        if isinstance(u, pd.DataFrame):   # distinct rows of the factors' codes
            n_points = len(u.drop_duplicates())
        else:
            n_points = len(np.unique(u)) if u.ndim == 1 else len(np.unique(u, axis=0))
        needed = 2 * self.n_components + 1
        if n_points < needed:
            warnings.warn(
                f"u takes {n_points} distinct values but the identifiability theorem of the iVAE "
                f"needs at least n*k+1 = {needed} (n={self.n_components} sources, k=2 parameters "
                f"per source for the {self.prior!r} prior): the sources may not be identifiable, "
                "because too few distinct conditional distributions p(z|u) constrain them. "
                "Use a richer u (e.g. add sliding windows) or fewer components.",
                IdentifiabilityWarning, stacklevel=3)

    @torch.no_grad()
    def _stability(self, results: list, Xt: torch.Tensor, Ut: torch.Tensor, seed: int) -> float:
        if len(results) < 2:
            return float("nan")
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(Xt.shape[0], size=min(5000, Xt.shape[0]), replace=False))
        dev = self.device_   # Xt, Ut may be on the host (streamed training), Xt even on disk
        if isinstance(Xt, _DiskRows):
            xs = torch.as_tensor(Xt[rows], device=dev)
        else:
            xs = Xt[torch.as_tensor(rows, device=Xt.device)].to(dev)
        us = Ut[torch.as_tensor(rows, device=Ut.device)].to(dev)
        zs = [r.model.encode(xs, us)[0].float().cpu().numpy() for r in results]
        scores = [mcc(a, b).score for a, b in itertools.combinations(zs, 2)]
        return float(np.mean(scores))

    # ------------------------------------------------------------- transforms
    def _user_from_internal(self, z: np.ndarray) -> np.ndarray:
        return z[:, self.component_order_] * self.component_signs_

    def _internal_from_user(self, z: np.ndarray) -> np.ndarray:
        out = np.empty_like(z)
        out[:, self.component_order_] = z * self.component_signs_
        return out

    def _batched(self, fn, n: int, batch: int | None = None) -> np.ndarray:
        batch = batch or _INFER_ROWS
        return np.concatenate([fn(slice(i, min(i + batch, n))) for i in range(0, n, batch)], axis=0)

    @torch.no_grad()
    def transform(self, X: Any, u: Any = None) -> np.ndarray:
        """Posterior means E[z | x, u], shape (n_samples, n_components).

        ``u`` may be None when the encoder is q(z|x) (``encoder_uses_aux=False`` or the
        vanilla VAE), e.g. for new subjects whose u levels were never seen. ``X`` may be
        on disk (``h5py.Dataset``, ``np.memmap``): it is then read block by block.
        """
        self._check_fitted()
        disk = _on_disk(X)
        X = self._check_disk_X(X) if disk else self._check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; the model was fitted with {self.n_features_in_}")
        if disk:   # read and moved block by block
            rows = _DiskRows(X, self.x_mean_, self.x_scale_)
            xs = lambda s: torch.as_tensor(rows._std(X[s]), device=self.device_)  # noqa: E731
        else:
            Xt = self._to_device(X)
            xs = lambda s: Xt[s]  # noqa: E731
        if u is None and not self.model_.uses_aux:
            Ut = torch.zeros((X.shape[0], self._u_width()), device=self.device_)
        else:
            u = self._check_u(u, X.shape[0], fitting=False)
            Ut = self._encode_u(u)
        self.model_.eval()
        z = self._batched(lambda s: self.model_.encode(xs(s), Ut[s])[0].float().cpu().numpy(), X.shape[0],
                          batch=_DiskRows.block if disk else _INFER_ROWS)
        return self._user_from_internal(z).astype(np.float32)

    def fit_transform(self, X: Any, u: Any = None, **fit_params: Any) -> np.ndarray:
        return self.fit(X, u, **fit_params).transform(X, u)

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decoder mean f(z) in the units of ``X``, shape (n_samples, n_features)."""
        self._check_fitted()
        Z = self._check_X(Z, "Z")
        if Z.shape[1] != self.n_components:
            raise ValueError(f"Z has {Z.shape[1]} columns; the model has {self.n_components} components")
        Zt = torch.as_tensor(self._internal_from_user(Z), device=self.device_)
        xs = self._batched(lambda s: self.model_.decode(Zt[s]).float().cpu().numpy(), Z.shape[0])
        return xs * self.x_scale_ + self.x_mean_

    @torch.no_grad()
    def score(self, X: Any, u: Any) -> float:
        """Mean ELBO per sample (a lower bound of log p(x|u) in the units of ``X``)."""
        self._check_fitted()
        X = self._check_X(X)
        u = self._check_u(u, X.shape[0], fitting=False)
        Xt, Ut = self._to_device(X), self._encode_u(u)
        g = torch.Generator(device=self.device_)
        g.manual_seed(0)
        self.model_.eval()
        total = sum(float(self.model_.elbo(Xt[s], Ut[s], generator=g).double().sum())
                    for s in (slice(i, i + _INFER_ROWS) for i in range(0, X.shape[0], _INFER_ROWS)))
        return total / X.shape[0] - float(np.log(self.x_scale_).sum())

    @torch.no_grad()
    def sample(self, u: Any, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``z ~ p(z|u)`` and ``x ~ p(x|z)`` for each row of ``u``; returns ``(X, Z)``."""
        self._check_fitted()
        u = u if isinstance(u, pd.DataFrame) else np.asarray(u)
        u = self._check_u(u, u.shape[0], fitting=False)
        Ut = self._encode_u(u)
        g = torch.Generator(device=self.device_)
        g.manual_seed(int(check_random_state(random_state).randint(0, 2**31 - 1)))
        x, z = self.model_.sample(Ut, generator=g)
        X = x.float().cpu().numpy() * self.x_scale_ + self.x_mean_
        return X, self._user_from_internal(z.float().cpu().numpy())

    def decoder_jacobian(self, Z: Any, reduce: str | None = "mean", batch_size: int = 4096) -> np.ndarray:
        """Jacobian of the decoder mean with respect to each component.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Points at which to evaluate (e.g. ``transform(X, u)``).
        reduce : {"mean", "mean_abs", None}
            Average over samples (signed or absolute), or return every sample.

        Returns
        -------
        ndarray
            (n_components, n_features) when reduced, else (n_samples, n_components,
            n_features); in units of ``X`` per unit of z.
        """
        self._check_fitted()
        Z = self._check_X(Z, "Z")
        Zi = torch.as_tensor(self._internal_from_user(Z), device=self.device_)
        jac = torch.func.vmap(torch.func.jacrev(lambda z: self.model_.decode(z[None])[0]))
        out, total = [], None
        for i in range(0, Z.shape[0], batch_size):
            with torch.no_grad():
                J = jac(Zi[i:i + batch_size])          # (B, d, k_internal)
            J = J[:, :, self.component_order_] * torch.as_tensor(
                self.component_signs_, dtype=J.dtype, device=J.device)
            J = J.transpose(1, 2) * torch.as_tensor(self.x_scale_, device=J.device)  # (B, k, d)
            if reduce is None:
                out.append(J.cpu().numpy())
            else:
                part = (J.abs() if reduce == "mean_abs" else J).sum(0)
                total = part if total is None else total + part
        if reduce is None:
            return np.concatenate(out, axis=0)
        if reduce not in ("mean", "mean_abs"):
            raise ValueError(f"reduce must be 'mean', 'mean_abs' or None, got {reduce!r}")
        return (total / Z.shape[0]).cpu().numpy()

    @torch.no_grad()
    def prior_params(self, u: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of p(z|u) for each row of ``u``, each (n, n_components)."""
        self._check_fitted()
        u = u if isinstance(u, pd.DataFrame) else np.asarray(u)
        u = self._check_u(u, u.shape[0], fitting=False)
        mean, var = self.model_.prior.variance(self._encode_u(u))
        mean = mean.float().cpu().numpy()[:, self.component_order_] * self.component_signs_
        return mean, var.float().cpu().numpy()[:, self.component_order_]

    def reorder(self, order: Any, signs: Any = None) -> "IVAE":
        """Permute (and flip) the components everywhere: new component j is old
        component ``order[j]`` times ``signs[j]``. Composes with earlier calls."""
        self._check_fitted()
        order = np.asarray(order, dtype=int)
        if sorted(order.tolist()) != list(range(self.n_components)):
            raise ValueError(f"order must be a permutation of 0..{self.n_components - 1}, got {order.tolist()}")
        signs = np.ones(self.n_components) if signs is None else np.asarray(signs, dtype=float)
        if signs.shape != (self.n_components,) or not np.all(np.abs(signs) == 1):
            raise ValueError("signs must hold n_components values of +1 or -1")
        self.component_order_ = self.component_order_[order]
        self.component_signs_ = self.component_signs_[order] * signs
        return self

    # ---------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model (weights, configuration, preprocessing) to ``path``."""
        self._check_fitted()
        state = {
            "format": "trends_ivae.IVAE",
            "version": __version__,
            "params": {k: v for k, v in self.get_params().items()},
            "config": self._model_config.to_dict(),
            "train_config": self._train_config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "factors": None if self.aux_kind_ != "factors" else {
                "names": list(self.factor_names_),
                "classes": [c.tolist() for c in self.factor_classes_]},
            "n_aux": int(self.n_aux_),
            "x_mean": torch.as_tensor(self.x_mean_),
            "x_scale": torch.as_tensor(self.x_scale_),
            "order": self.component_order_.tolist(),
            "signs": self.component_signs_.tolist(),
            "history": self.history_,
            "elbo": self.elbo_,
            "restart_elbos": [float(v) for v in self.restart_elbos_],
            "diverged": [bool(v) for v in self.diverged_],
            "stability": self.stability_,
            "n_iter": self.n_iter_,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> "IVAE":
        """Rebuild an :class:`IVAE` written by :meth:`save` (``weights_only`` loading)."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "trends_ivae.IVAE":
            raise ValueError(f"{path} is not a trends_ivae IVAE file")
        params = dict(state["params"])
        params["device"] = device
        est = cls(**params)
        est.device_ = resolve_device(device)
        est._model_config = IVAEConfig.from_dict(state["config"])
        est._train_config = TrainConfig.from_dict(state["train_config"])
        est.model_ = IVAEModel(est._model_config)
        est.model_.load_state_dict(state["state_dict"])
        est.model_.to(est.device_).eval()
        est.classes_ = None if state["classes"] is None else np.asarray(state["classes"])
        est.aux_kind_ = est._model_config.aux_kind
        est.factor_names_ = est.factor_classes_ = est.factor_offsets_ = None
        factors = state.get("factors")
        if factors is not None:
            est._set_factors(list(factors["names"]), [np.asarray(c) for c in factors["classes"]])
        est.n_aux_ = state["n_aux"]
        est.x_mean_ = state["x_mean"].numpy()
        est.x_scale_ = state["x_scale"].numpy()
        est.n_features_in_ = est._model_config.n_features
        est.component_order_ = np.asarray(state["order"], dtype=int)
        est.component_signs_ = np.asarray(state["signs"], dtype=float)
        est.history_ = state["history"]
        est.loss_curve_ = [-v for v in est.history_["train_elbo"]]
        est.elbo_ = state["elbo"]
        est.restart_elbos_ = np.asarray(state["restart_elbos"])
        est.diverged_ = np.asarray(state["diverged"], dtype=bool)
        est.stability_ = state["stability"]
        est.n_iter_ = state["n_iter"]
        return est
