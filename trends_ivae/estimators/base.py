"""What the array-level estimators share: checks, u, standardisation, restarts, I/O.

:class:`SourceEstimator` is the numpy <-> torch seam of every estimator of sources
(the VAE :class:`~trends_ivae.estimators.ivae.IVAE` and the flow
:class:`~trends_ivae.estimators.flow.IFlow`). It validates arrays, encodes the
auxiliary variable as integer indices, standardises ``X``, moves the whole dataset to
the training device once, picks the restart to return by consensus
(:mod:`trends_ivae.estimators.consensus`), keeps the CPU thread count of a fit small for a small
model (:mod:`trends_ivae.estimators.threads`), and converts results back to numpy. Save and load
come from one state description (:mod:`trends_ivae.estimators.model_file`). A subclass
supplies the model and its training (its ``fit``) and the fields it saves
(``_model_state`` / ``_restore_model``). A distributed fit gets its process group as
the explicit ``comm`` argument (:class:`~trends_ivae.estimators.nn.comm.Comm`).
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .aux_codes import AuxCoding, IdentifiabilityWarning
from .consensus import consensus, warn_collinear
from .disk_rows import DiskRows as _DiskRows, on_disk as _on_disk
from .model_file import format_class, read_model_file, register_format, restore_estimator, save_estimator
from .nn import resolve_device
from .nn.comm import SINGLE_PROCESS, Comm
from .threads import fit_threads

__all__ = ["IdentifiabilityWarning", "SourceEstimator", "INFER_ROWS", "train_rows"]

#: rows per inference batch (transform, score, ...): the activations of a batch are the
#: working memory of inference, so it stays flat in the number of rows (about 25 MB at the
#: default width; 65 536 rows held ~80 MB more in the group stage of a 1000-subject cohort)
INFER_ROWS = 16384


def train_rows(n_samples: int, val_frac: float) -> int:
    """The rows of ``n_samples`` left for training once ``val_frac`` of them are held out."""
    return n_samples - int(round(n_samples * val_frac))


class SourceEstimator(AuxCoding, TransformerMixin, BaseEstimator):
    """Base class of the array-level estimators (not for direct use).

    Subclasses set ``_FORMAT`` and implement ``fit``, ``_model_state`` and
    ``_restore_model``, and extend ``_check_params`` (the one place where the
    constructor parameters are validated, at the start of every fit); every learned
    attribute common to them is documented on :class:`~trends_ivae.estimators.ivae.IVAE`.
    """

    _FORMAT = ""
    #: restart-selection rules: "central" (the medoid of the restarts, ICASSO-style)
    #: or "score" (the best held-out score)
    _SELECT = ("central", "score")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Enter a subclass that sets ``_FORMAT`` in the model-file format registry."""
        super().__init_subclass__(**kwargs)
        register_format(cls)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_X(X: Any, name: str = "X") -> np.ndarray:
        if sp.issparse(X):
            raise ValueError(f"{name} is a sparse matrix; sparse input is not supported: pass a dense array")
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
        if np.iscomplexobj(X):
            raise ValueError(f"Complex data not supported: {name} must be real, got dtype {X.dtype}")
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
        for axis, what in ((0, "sample"), (1, "feature")):
            if X.shape[axis] == 0:
                raise ValueError(f"{name} is empty: found array with 0 {what}(s) (shape={X.shape}) while a "
                                 "minimum of 1 is required.")
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

    def _to_device(self, X: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        Xs = (X - self.x_mean_) / self.x_scale_
        return torch.as_tensor(Xs, dtype=torch.float32, device=self.device_ if device is None else device)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _check_fitted(self) -> None:
        """Raise :class:`sklearn.exceptions.NotFittedError` (a ``ValueError``) naming the class."""
        check_is_fitted(self, msg="this %(name)s is not fitted yet: call fit(X, u) first")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True             # u, the auxiliary variable: fit's second argument
        tags.transformer_tags.preserves_dtype = ["float32"]   # computed in float32, returned as float32
        return tags

    # ------------------------------------------------------------- transforms
    def _user_from_internal(self, z: np.ndarray) -> np.ndarray:
        return z[:, self.component_order_] * self.component_signs_

    def _internal_from_user(self, z: np.ndarray) -> np.ndarray:
        out = np.empty_like(z)
        out[:, self.component_order_] = z * self.component_signs_
        return out

    def _batched(self, fn, n: int, batch: int | None = None) -> np.ndarray:
        batch = batch or INFER_ROWS
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
                          batch=_DiskRows.block if disk else INFER_ROWS)
        return self._user_from_internal(z).astype(np.float32)

    def fit_transform(self, X: Any, u: Any = None, **fit_params: Any) -> np.ndarray:
        return self.fit(X, u, **fit_params).transform(X, u)

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
        jac = self._decoder_jacobian_rows
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


    def _decoder_jacobian_rows(self, Zi: torch.Tensor) -> torch.Tensor:
        """The decoder mean's Jacobian at each row of internal ``Zi`` (B, k): (B, d, k)."""
        return torch.func.vmap(torch.func.jacrev(lambda z: self.model_.decode(z[None])[0]))(Zi)

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """The model's ``f(z)`` (the VAE's decoder mean, the flow's inverse) in the units
        of ``X``, shape (n_samples, n_features)."""
        self._check_fitted()
        Z = self._check_X(Z, "Z")
        if Z.shape[1] != self.n_components:
            raise ValueError(f"Z has {Z.shape[1]} columns; the model has {self.n_components} components")
        Zt = torch.as_tensor(self._internal_from_user(Z), device=self.device_)
        xs = self._batched(lambda s: self.model_.decode(Zt[s]).float().cpu().numpy(), Z.shape[0])
        return xs * self.x_scale_ + self.x_mean_

    @torch.no_grad()
    def score(self, X: Any, u: Any) -> float:
        """Mean ELBO per sample in the units of ``X``: a lower bound of log p(x|u) for the
        VAE, the exact log p(x|u) for the flow."""
        return float(self.score_samples(X, u).mean())

    @torch.no_grad()
    def score_samples(self, X: Any, u: Any, n_importance: int = 1, random_state: int = 0) -> np.ndarray:
        """log p(x|u) per row of ``X`` in its units, (n_samples,) float64.

        The exact log-likelihood for the flow. For the VAE a lower bound: the ELBO
        (``n_importance=1``) or the importance-weighted bound with that many draws,
        which tightens as it grows. ``random_state`` seeds the draws.
        """
        self._check_fitted()
        X = self._check_X(X)
        u = self._check_u(u, X.shape[0], fitting=False)
        return self._score_rows(self._to_device(X), self._encode_u(u), n_importance, random_state)

    @torch.no_grad()
    def _score_rows(self, Xt: torch.Tensor, Ut: torch.Tensor, n_importance: int = 1,
                    random_state: int = 0) -> np.ndarray:
        """:meth:`score_samples` of standardised rows and encoded u on the device."""
        k = int(n_importance)
        if k < 1:
            raise ValueError(f"n_importance must be >= 1, got {n_importance}")
        g = torch.Generator(device=self.device_)
        g.manual_seed(int(random_state))
        self.model_.eval()
        step = max(1, INFER_ROWS // k)

        def rows(s: slice) -> np.ndarray:
            if k > 1 and hasattr(self.model_, "iwae"):
                out = self.model_.iwae(Xt[s], Ut[s], k, generator=g)
            else:
                out = self.model_.elbo(Xt[s], Ut[s], generator=g)
            return out.double().cpu().numpy()
        parts = [rows(slice(i, i + step)) for i in range(0, Xt.shape[0], step)]
        return np.concatenate(parts) + self._log_det_standardize

    @torch.no_grad()
    def prior_params(self, u: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of p(z|u) for each row of ``u``, each (n, n_components)."""
        self._check_fitted()
        u = self._check_u(u, len(u), fitting=False)
        mean, var = self.model_.prior.variance(self._encode_u(u))
        mean = mean.float().cpu().numpy()[:, self.component_order_] * self.component_signs_
        return mean, var.float().cpu().numpy()[:, self.component_order_]

    def reorder(self, order: Any, signs: Any = None) -> "SourceEstimator":
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
        if getattr(self, "stability_", None) is not None:
            self.stability_ = np.asarray(self.stability_)[order]
        return self

    # ----------------------------------------------------------------- fitting
    def _check_params(self) -> None:
        """Validate the constructor parameters: the one place where they are checked, at
        the start of every fit (a subclass extends it). Checks that need the data (e.g.
        ``n_components`` against the features of ``X``) are made where the data is read.

        Raises
        ------
        ValueError
            Naming the parameter, the values it accepts and the value it has.
        """
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {self.n_init}")
        if self.select not in self._SELECT:
            raise ValueError(f"select must be one of {self._SELECT}, got {self.select!r}")
        if self.n_threads is not None and self.n_threads != "auto" and not (
                isinstance(self.n_threads, (int, np.integer)) and self.n_threads >= 1):
            raise ValueError(f"n_threads must be 'auto', None or a positive integer, got {self.n_threads!r}")

    def _threads_for(self, model: torch.nn.Module) -> int | None:
        """The intra-op thread count a fit of ``model`` runs with (:func:`~trends_ivae.estimators.threads.fit_threads`)."""
        return fit_threads(self.n_threads, self.device_, model)

    def _prepare_fit(self, X: Any, u: Any, stream_rows: int | None, comm: Comm = SINGLE_PROCESS
                     ) -> tuple[Any, torch.Tensor, int, int]:
        """Validate the parameters (:meth:`_check_params`), ``X`` and ``u``, learn the
        standardisation and u's coding, and put both on the device (on the host with
        ``stream_rows``; ``X`` may stay on disk).
        In a distributed fit (``comm``) ``X`` and ``u`` are this rank's rows and the
        statistics are those of all ranks' rows.

        Returns ``(Xt, Ut, seed, n_all)``: the standardised rows, u's indices, the
        fit's seed and the number of rows on all ranks.
        """
        self._check_params()
        disk = stream_rows is not None and _on_disk(X)
        X = self._check_disk_X(X) if disk else self._check_X(X)
        n_samples, n_features = X.shape
        given, u = u, self._check_u(u, n_samples, fitting=True)
        if self.n_components > n_features:
            raise ValueError(f"n_components ({self.n_components}) is larger than the number of "
                             f"features of X ({n_features})")
        self._comm = comm
        n_all = int(round(comm.sum(n_samples)))   # the batches are drawn over every rank's rows
        n_train = train_rows(n_all, self.val_frac)
        if n_train < self.batch_size:
            raise ValueError(f"too few samples: {n_all} samples leave {n_train} for training "
                             f"(val_frac={self.val_frac}), fewer than one batch of {self.batch_size}; "
                             "lower batch_size or pass more data")
        self._warn_identifiability(u, given)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1 - 10**6))
        seed = int(comm.gather(seed)[0])   # rank 0's, when random_state is None
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = n_features
        if self.standardize:   # float64 sums block by block (on disk: never loaded whole), over every rank
            mean = comm.sum_array(sum(b.sum(0) for _, b in _DiskRows.blocks(X))) / n_all
            var = comm.sum_array(sum(((b - mean) ** 2).sum(0) for _, b in _DiskRows.blocks(X))) / n_all
            self.x_mean_ = mean.astype(np.float32)
            scale = np.sqrt(var).astype(np.float32)
            if self.standardize == "global":   # one scale: quiet (noise) features stay quiet
                top = np.sort(scale)[::-1][:max(1, int(self.n_components))]
                scale = np.full_like(scale, float(np.sqrt(np.mean(top ** 2))))
            self.x_scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        else:
            self.x_mean_ = np.zeros(n_features, np.float32)
            self.x_scale_ = np.ones(n_features, np.float32)
        host = torch.device("cpu") if stream_rows is not None else None
        Xt = _DiskRows(X, self.x_mean_, self.x_scale_) if disk else self._to_device(X, host)
        Ut = self._fit_aux_coding(u, comm, host)
        return Xt, Ut, seed, n_all

    @torch.no_grad()
    def _consensus_rows(self, Xt: Any, Ut: torch.Tensor, seed: int, max_rows: int = 5000
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """At most ``max_rows`` rows (seeded) on the device, on which restarts are compared."""
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(Xt.shape[0], size=min(max_rows, Xt.shape[0]), replace=False))
        dev = self.device_   # Xt, Ut may be on the host (streamed training), Xt even on disk
        if isinstance(Xt, _DiskRows):
            xs = torch.as_tensor(Xt[rows], device=dev)
        else:
            xs = Xt[torch.as_tensor(rows, device=Xt.device)].to(dev)
        return xs, Ut[torch.as_tensor(rows, device=Ut.device)].to(dev)

    def _linear_solution(self, Xt: Any, Ut: torch.Tensor, seed: int, method: str = "auto",
                         max_rows: int | None = None, n_restarts: int = 1
                         ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """A linear ICA solution of the standardised rows (:func:`~trends_ivae.estimators.linear_start.linear_start`)
        and the rows it was computed on: ``(start, X, level codes)``; sets ``start_method_``.

        ``max_rows``: a seeded sample of at most that many rows (all rows when None). In a
        distributed fit every rank gets the solution of all ranks' rows. ``n_restarts``:
        FastICA restarts, the most central kept.
        """
        from .linear_start import linear_start

        xs, us = (Xt, Ut) if max_rows is None else self._consensus_rows(Xt, Ut, seed, max_rows=max_rows)
        X, codes = xs.detach().cpu().numpy(), self._level_codes(us)
        if self._comm.active:
            parts = self._comm.gather((X, codes))
            X = np.concatenate([p[0] for p in parts])
            codes = None if codes is None else np.concatenate([p[1] for p in parts])
        st = linear_start(X, codes, self.n_components, method=method, random_state=seed % 2**31,
                          n_restarts=n_restarts)
        self.start_method_ = st.method
        return st, X, codes

    @torch.no_grad()
    def _select(self, models: list, scores: np.ndarray, Xt: Any, Ut: torch.Tensor, seed: int) -> int:
        """Pick the restart to return and set ``stability_`` and ``restart_agreement_``.

        ``scores`` are the restarts' held-out scores (-inf for a diverged one). With
        ``select="central"`` the restart most similar to all others is returned
        (:func:`~trends_ivae.estimators.consensus.consensus`); with ``"score"`` the best score.
        """
        ok = np.isfinite(scores)
        xs, us = self._consensus_rows(Xt, Ut, seed)
        zs = []
        for m, good in zip(models, ok):
            if good:
                m.eval()
                zs.append(m.encode(xs, us)[0].float().cpu().numpy())
            else:
                zs.append(np.zeros((xs.shape[0], self.n_components), np.float32))
        cons = consensus(zs, weights=ok.astype(float))
        best = int(np.argmax(scores)) if self.select == "score" or ok.sum() < 2 else cons.central
        if best != cons.central:   # stability of the returned restart against the others
            cons = consensus([zs[best]] + [z for i, z in enumerate(zs) if i != best],
                             weights=np.r_[1.0, np.delete(ok, best)].astype(float))
        self.stability_ = cons.stability.astype(float)
        self.restart_agreement_ = cons.agreement
        warn_collinear(zs[best], stacklevel=4)
        return best

    @property
    def _log_det_standardize(self) -> float:
        """``log |det d(x_std)/dx|``: added to a log-density of standardised rows, it gives
        the density in the units of ``X`` (per sample)."""
        return -float(np.log(self.x_scale_).sum())

    def _adopt(self, results: list, Xt: Any, Ut: torch.Tensor, seed: int, hint: str) -> int:
        """Keep the restart :meth:`_select` picks among ``results`` (each with ``model``,
        ``best_val_elbo``, ``diverged``, ``history``, ``n_epochs``, ``seconds``) and set the
        learned attributes from it; ``hint`` ends the error when every restart diverged."""
        scores = np.array([r.best_val_elbo if not r.diverged else -np.inf for r in results])
        self.diverged_ = np.array([r.diverged for r in results])
        if not np.isfinite(scores).any():
            raise RuntimeError(f"all {len(results)} restarts diverged (non-finite objective); {hint}")
        for i in np.flatnonzero(self.diverged_):
            warnings.warn(f"restart {i + 1} of {len(results)} diverged and was discarded", RuntimeWarning)
        best = self._select([r.model for r in results], scores, Xt, Ut, seed)
        chosen = results[best]
        self.model_ = chosen.model
        offset = self._log_det_standardize
        self.restart_elbos_ = scores + offset
        self.elbo_ = float(self.restart_elbos_[best])
        self.history_ = {k: [v + offset for v in vals] for k, vals in chosen.history.items()}
        self.loss_curve_ = [-v for v in self.history_["train_elbo"]]
        self.n_iter_ = chosen.n_epochs
        self.fit_seconds_ = float(sum(r.seconds for r in results))
        self.component_order_ = np.arange(self.n_components)
        self.component_signs_ = np.ones(self.n_components)
        self.__dict__.pop("_comm", None)
        return best

    # ---------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model (weights, configuration, preprocessing) to ``path``
        (:func:`~trends_ivae.estimators.model_file.save_estimator`)."""
        self._check_fitted()
        save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> "SourceEstimator":
        """Rebuild an estimator written by :meth:`save` (``weights_only`` loading).

        Called on the base class, it returns whichever estimator the file holds: the
        file's ``format`` names its class in the registry
        (:data:`~trends_ivae.estimators.model_file.FORMATS`), where every concrete
        estimator enters itself when its class is defined.

        Raises
        ------
        ValueError
            The file is not a readable model file, or holds another estimator than ``cls``.
        """
        state = read_model_file(path)
        return restore_estimator(format_class(state, path, cls), state, device)

    def _model_state(self) -> dict:   # pragma: no cover - abstract
        raise NotImplementedError

    def _restore_model(self, state: dict) -> None:   # pragma: no cover - abstract
        raise NotImplementedError

