"""The auxiliary variable u as the models take it: integer level indices.

:class:`AuxCoding` is the part of every array-level estimator that checks u and
encodes it: 1-D labels as (n, 1) level indices, discrete factors (an
:class:`~trends_ivae.aux_variable.AuxVariable` of kind ``"factors"``, or a
``DataFrame`` with one column per factor) as (n, F) column indices of their
concatenated one-hot layout (never built), a 2-D float u as it is. An
``AuxVariable`` of kind ``"discrete"`` or ``"continuous"`` is its ``data`` (level
indices or columns). The coding learned at fit (``classes_``, ``factor_names_``,
``factor_classes_``, ``factor_offsets_``, ``n_aux_``, ``aux_kind_``) is applied to
new u at transform time, with errors that name the unseen labels.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..aux_variable import AuxVariable

__all__ = ["AuxCoding", "IdentifiabilityWarning", "identifiability_advice"]


class IdentifiabilityWarning(UserWarning):
    """The auxiliary variable is too poor for the identifiability theorem."""


class AuxCoding:
    """Mixin: checks and encodes u (see the module docstring)."""

    def _check_u(self, u: Any, n_samples: int, fitting: bool) -> np.ndarray | pd.DataFrame | AuxVariable:
        if u is None:
            raise ValueError("u is required: the auxiliary variable (1-D labels, a 2-D float array, a "
                             "DataFrame of discrete factors or an AuxVariable)")
        if isinstance(u, AuxVariable):
            if u.on_demand and (fitting or self.aux_kind_ == "factors"):   # factors, held as their codes
                return self._check_aux_factors(u, n_samples, fitting)
            u = u.dense()   # labels or columns (factors: for a model fitted on their one-hot columns)
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

    def _check_aux_factors(self, u: AuxVariable, n_samples: int, fitting: bool) -> AuxVariable:
        """Discrete factors as an AuxVariable: rows, and at transform the fitted factors."""
        if len(u) != n_samples:
            raise ValueError(f"X and u must have the same number of rows: X has {n_samples}, u has {len(u)}")
        if not fitting:
            names = [f["name"] for f in u.factors]
            missing = [c for c in self.factor_names_ if c not in names]
            if missing:
                raise ValueError(f"u lacks the factors {missing}; the model was fitted with the "
                                 f"factors {self.factor_names_}")
        return u

    @staticmethod
    def _factor_levels(u: pd.DataFrame | AuxVariable) -> tuple[list, list[np.ndarray]]:
        """The factors' names and levels (a categorical column's categories, used or not;
        else its sorted labels)."""
        if isinstance(u, AuxVariable):
            return [f["name"] for f in u.factors], [np.asarray(f["levels"], dtype=object) for f in u.factors]
        return list(u.columns), [AuxCoding._column_classes(u[c]) for c in u.columns]

    def _factor_codes(self, u: pd.DataFrame | AuxVariable, j: int) -> np.ndarray:
        """Each row's level number among the fitted levels of factor ``j``; an unseen label is a ValueError."""
        name, classes = self.factor_names_[j], self.factor_classes_[j]
        if isinstance(u, pd.DataFrame):
            return self._column_codes(u[name], classes, name)
        k = [f["name"] for f in u.factors].index(name)
        levels = np.asarray(u.factors[k]["levels"], dtype=object)
        lookup = pd.Index(classes).get_indexer(levels)
        codes = lookup[u.data[:, k]]
        if (codes < 0).any():
            unknown = pd.unique(levels[u.data[:, k][codes < 0]])[:10]
            raise ValueError(f"u factor {name!r} has labels not seen during fit: {list(unknown)}")
        return codes.astype(np.int64)

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

    def _encode_u(self, u: np.ndarray | pd.DataFrame | AuxVariable, fitting: bool = False,
                  device: torch.device | None = None) -> torch.Tensor:
        """u on the device (or on ``device``) as the model takes it.

        1-D labels: (n, 1) level indices; factors (a DataFrame or an AuxVariable): (n, F)
        column indices of the concatenated one-hot layout (level + the factor's offset); both as
        float32 (exact below 2**24) so that they travel in one tensor with X. A 2-D
        float u: as it is.
        """
        device = self.device_ if device is None else device
        if isinstance(u, (pd.DataFrame, AuxVariable)):
            if fitting:
                self._set_factors(*self._factor_levels(u))
            codes = np.empty((len(u), len(self.factor_names_)), dtype=np.int64)
            for j in range(len(self.factor_names_)):
                codes[:, j] = self._factor_codes(u, j) + self.factor_offsets_[j]
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

    def _fit_aux_coding(self, u: np.ndarray | pd.DataFrame | AuxVariable, comm: Any, host: torch.device | None
                        ) -> torch.Tensor:
        """Learn u's coding (on every rank: the union of their labels) and encode it."""
        factors = isinstance(u, (pd.DataFrame, AuxVariable))
        self.aux_kind_ = "factors" if factors else ("discrete" if u.ndim == 1 else "continuous")
        self.classes_ = self.factor_names_ = self.factor_classes_ = self.factor_offsets_ = None
        if comm.active and factors:   # one coding per factor for all ranks: the union of their labels
            names, levels = self._factor_levels(u)
            gathered = comm.gather(levels)
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
        return Ut

    def _level_codes(self, Ut: torch.Tensor) -> np.ndarray | None:
        """One integer level per row for a linear start: a discrete u's level, or the
        level of the factor with the most levels; None for a continuous u."""
        if self.aux_kind_ == "discrete":
            return Ut[:, 0].long().cpu().numpy()
        if self.aux_kind_ == "factors":
            sizes = [len(c) for c in self.factor_classes_]
            j = int(np.argmax(sizes))
            return Ut[:, j].long().cpu().numpy()
        return None

    def _warn_identifiability(self, u: np.ndarray | pd.DataFrame | AuxVariable, given: Any = None) -> None:
        """Warn when u (checked) has fewer distinct values than the theorem needs; ``given``:
        u as the caller passed it (its spec or columns name the factors for the advice)."""
        if self.prior == "normal":
            return
        if isinstance(u, AuxVariable):   # distinct rows of the factors' codes
            n_points = u.distinct()
        elif isinstance(u, pd.DataFrame):
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
                + identifiability_advice(u if given is None else given, n_points), IdentifiabilityWarning,
                stacklevel=3)


def _factor_names(u: Any) -> list[str]:
    """The factors u was built from, as far as u says (its spec, its columns), else []."""
    if isinstance(u, AuxVariable):
        if u.spec:
            return [f.strip() for f in str(u.spec).split("+") if f.strip()]
        return [str(f["name"]) for f in u.factors]
    if isinstance(u, pd.DataFrame):
        return [str(c) for c in u.columns]
    return []


def identifiability_advice(u: Any, n_points: int) -> str:
    """What to do when u has too few distinct values, for the u at hand.

    Parameters
    ----------
    u : AuxVariable, DataFrame or ndarray
        The auxiliary variable (its spec or columns say which factors it has).
    n_points : int
        Its distinct values.

    Returns
    -------
    str
        One or two sentences: with sliding windows already in u, shorter windows or a
        smaller step (``--window``, ``--step``) or more runs; without them, add them
        (``--aux <spec>+window``); and in every case the most components this u supports.
    """
    factors = _factor_names(u)
    most = (n_points - 1) // 2
    fewer = (f"or fewer components (this u supports at most {most})" if most >= 1 else
             "(no number of components is identifiable with this u)")
    if "window" in factors:
        return ("Here u already has sliding windows: make them shorter or overlapping (--window, --step), add "
                f"runs or subjects, {fewer}.")
    if factors:
        spec = "+".join(factors)
        return f"Use a richer u, e.g. add sliding windows (--aux {spec}+window), {fewer}."
    return f"Use a richer u (more distinct values), {fewer}."
