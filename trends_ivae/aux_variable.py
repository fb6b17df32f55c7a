"""The auxiliary variable u as one type, from ``build_aux`` to ``IVAE.fit``.

:class:`AuxVariable` holds u for every sample in one of three kinds:

``"discrete"``
    One label per sample: ``data`` is ``(n,)`` int64 level indices into ``names``.
``"factors"``
    Several discrete factors whose one-hot columns side by side are u (what
    ``build_aux(..., combine="concat")`` makes of several factors): ``data`` is the
    ``(n, n_factors)`` int64 level indices, factor ``j``'s levels are
    ``factors[j]["levels"]``, and ``names`` are the columns ``"name=level"``. The
    ``(n, sum K_i)`` one-hot columns are never held; :meth:`AuxVariable.dense` builds
    them (for small data or blocks of rows).
``"continuous"``
    ``data`` is ``(n, p)`` float32, ``names`` its column names.

Every kind also carries ``factor_codes``, each factor's own level per sample (for
example the task labels when u is the windows), ``factors`` (name and levels) and the
``spec`` it was built from. The estimators (:class:`~trends_ivae.estimators.aux_codes.AuxCoding`)
take an ``AuxVariable`` as they take 1-D labels, a 2-D float array or a DataFrame of
factors; the prepared store keeps one (:class:`~trends_ivae.data.store.PreparedData`
``.u``) and writes it in its own layout (:meth:`AuxVariable.from_store`,
:meth:`AuxVariable.store_arrays`). Only this module looks at ``kind``.

numpy and pandas only: io, the estimators and the report all import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["AuxVariable", "KINDS", "onehot_names", "onehot_columns"]

#: the kinds of u
KINDS = ("discrete", "factors", "continuous")


def onehot_names(factors: Sequence[dict]) -> list[str]:
    """The names of the concatenated one-hot columns of ``factors`` (``{"name", "levels"}``
    each): ``f"{name}={level}"``, factor by factor."""
    return [f"{f['name']}={lv}" for f in factors for lv in f["levels"]]


def _check_codes(factor_codes: np.ndarray, factors: Sequence[dict]) -> np.ndarray:
    codes = np.asarray(factor_codes)
    if codes.ndim != 2 or codes.shape[1] != len(factors):
        raise ValueError(f"factor codes of shape {codes.shape} do not match {len(factors)} factors")
    return codes


def onehot_columns(factor_codes: np.ndarray, factors: Sequence[dict], rows: Any = None) -> np.ndarray:
    """The concatenated one-hot columns of discrete factors.

    Parameters
    ----------
    factor_codes : ndarray of shape (n, n_factors), int
        Each factor's level number per sample.
    factors : list of dict
        ``{"name", "levels"}`` per factor, in column order.
    rows : index, optional
        Only these rows (anything that indexes the first axis of ``factor_codes``).

    Returns
    -------
    ndarray of shape (n_rows, sum K_i), float32
        Factor ``j``'s ``K_j`` columns side by side in factor order, a 1 in column
        ``offset_j + code`` (the column names are :func:`onehot_names`).
    """
    codes = _check_codes(factor_codes, factors)
    if rows is not None:
        codes = codes[rows]
    sizes = np.array([len(f["levels"]) for f in factors], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.zeros((codes.shape[0], int(sizes.sum())), dtype=np.float32)
    if codes.size:
        if (codes < 0).any() or (codes >= sizes).any():
            raise ValueError("factor codes out of range of the factors' levels")
        out[np.arange(codes.shape[0])[:, None], codes + offsets] = 1.0
    return out


def _factor_list(factors: Sequence[dict] | None) -> list[dict]:
    return [{"name": str(f["name"]), "levels": [str(v) for v in f["levels"]]} for f in (factors or [])]


@dataclass(eq=False)
class AuxVariable:
    """u for all samples: discrete labels, discrete factors or continuous columns.

    Build one with :meth:`discrete`, :meth:`from_factors` or :meth:`continuous` (or
    :func:`~trends_ivae.data.auxiliary.build_aux` from events and labels).

    Attributes
    ----------
    kind : {"discrete", "factors", "continuous"}
    data : ndarray
        ``(n,)`` int64 level indices (discrete), ``(n, n_factors)`` int64 level indices
        (factors) or ``(n, p)`` float32 (continuous).
    names : list of str
        Level names (discrete), one-hot column names ``"name=level"`` (factors) or
        column names (continuous).
    factors : list of dict
        ``{"name", "levels"}`` per factor of the spec.
    factor_codes : ndarray of shape (n, len(factors)), int64
        Each factor's own level per sample (the ``data`` of the factors kind).
    spec : str
        The spec u was built from (e.g. ``"task+window"``), or ``""``.
    """

    kind: str
    data: np.ndarray = field(repr=False)
    names: list
    factors: list = field(default_factory=list)
    factor_codes: np.ndarray | None = field(default=None, repr=False)
    spec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AuxVariable kind must be one of {KINDS}, got {self.kind!r}")
        self.names = [str(n) for n in self.names]
        self.factors = _factor_list(self.factors)
        if self.kind == "discrete":
            self.data = np.asarray(self.data)
            if self.data.ndim != 1 or not np.issubdtype(self.data.dtype, np.integer):
                raise ValueError(f"discrete u must be 1-D integer level indices, got {self.data.dtype} "
                                 f"of shape {self.data.shape}")
            self.data = self.data.astype(np.int64, copy=False)
            if self.data.size and (self.data.min() < 0 or self.data.max() >= len(self.names)):
                raise ValueError(f"discrete u has level indices outside 0..{len(self.names) - 1}")
        elif self.kind == "factors":
            self.data = _check_codes(self.data, self.factors).astype(np.int64, copy=False)
            self.factor_codes = self.data
            if self.names != onehot_names(self.factors):
                raise ValueError("the names of factors u are their one-hot columns 'name=level'")
        else:
            self.data = np.asarray(self.data, dtype=np.float32)
            if self.data.ndim != 2 or self.data.shape[1] != len(self.names):
                raise ValueError(f"continuous u must be (n, {len(self.names)}) for its {len(self.names)} names, "
                                 f"got shape {self.data.shape}")
        n = self.data.shape[0]
        if self.factor_codes is None:
            self.factor_codes = np.zeros((n, 0), np.int64)
        self.factor_codes = np.asarray(self.factor_codes).astype(np.int64, copy=False)
        if self.factor_codes.shape[0] != n:
            raise ValueError(f"factor_codes has {self.factor_codes.shape[0]} rows, u has {n}")

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def discrete(cls, codes: Any, names: Sequence[str], *, factors: Sequence[dict] | None = None,
                 factor_codes: Any = None, spec: str = "") -> "AuxVariable":
        """Labels: ``codes[i]`` is sample ``i``'s index into ``names``."""
        return cls("discrete", codes, list(names), list(factors or []), factor_codes, spec)

    @classmethod
    def from_factors(cls, factor_codes: Any, factors: Sequence[dict], *, spec: str = "") -> "AuxVariable":
        """Discrete factors (their one-hot columns side by side are u)."""
        factors = _factor_list(factors)
        return cls("factors", factor_codes, onehot_names(factors), factors, None,
                   spec or "+".join(f["name"] for f in factors))

    @classmethod
    def continuous(cls, values: Any, names: Sequence[str] | None = None, *, factors: Sequence[dict] | None = None,
                   factor_codes: Any = None, spec: str = "") -> "AuxVariable":
        """Continuous columns (``names`` default ``u0, u1, ...``)."""
        values = np.asarray(values, dtype=np.float32)
        names = list(names) if names is not None else [f"u{j}" for j in range(values.shape[1] if values.ndim == 2 else 0)]
        return cls("continuous", values, names, list(factors or []), factor_codes, spec)

    # -- sizes and views --------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self)

    @property
    def n_levels(self) -> int:
        """Levels (discrete) or columns (factors: one-hot columns; continuous)."""
        return len(self.names)

    @property
    def on_demand(self) -> bool:
        """True when the dense form is not held but built by :meth:`dense` on each call (factors)."""
        return self.kind == "factors"

    @property
    def shape(self) -> tuple:
        """The shape of :meth:`dense`."""
        return (len(self),) if self.kind == "discrete" else (len(self), self.n_levels)

    def dense(self, rows: Any = None) -> np.ndarray:
        """u as one array: the level indices (discrete), the one-hot columns (factors, built
        now: ``n_rows x sum K_i`` float32) or the columns (continuous); of ``rows`` only if given."""
        if self.kind == "factors":
            return onehot_columns(self.data, self.factors, rows)
        return self.data if rows is None else self.data[rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.dense()
        return out if dtype is None else out.astype(dtype)

    def take(self, rows: Any) -> "AuxVariable":
        """u of the samples ``rows`` only (anything that indexes rows; one index keeps one
        row); levels unchanged."""
        if isinstance(rows, (int, np.integer)):
            rows = [rows]
        return AuxVariable(self.kind, self.data[rows], list(self.names), self.factors,
                           None if self.kind == "factors" else self.factor_codes[rows], self.spec)

    __getitem__ = take

    def frame(self) -> pd.DataFrame:
        """The factors as a DataFrame of categorical columns (all levels as categories, used or not)."""
        return pd.DataFrame({f["name"]: pd.Categorical.from_codes(self.factor_codes[:, j], categories=f["levels"])
                             for j, f in enumerate(self.factors)})

    def describe(self) -> str:
        """A short description for messages (``"discrete, 12 levels"``, ``"factors task+window"``)."""
        if self.kind == "factors":
            return "factors " + "+".join(f["name"] for f in self.factors)
        return f"{self.kind}, {self.n_levels} {'levels' if self.kind == 'discrete' else 'columns'}"

    def level_codes(self) -> np.ndarray | None:
        """One integer level per sample for per-level summaries: the label (discrete), the
        level of the factor with the most levels (factors); None for continuous u."""
        if self.kind == "discrete":
            return self.data
        if self.kind == "factors":
            return self.data[:, int(np.argmax([len(f["levels"]) for f in self.factors]))]
        return None

    def groupings(self) -> list[dict]:
        """What u groups the samples by, for per-level summaries: ``{"name", "levels",
        "codes"}`` per factor; without factors, discrete u as one grouping named ``"u"``;
        continuous u without factors: none."""
        if self.factors and self.factor_codes.shape[1] == len(self.factors):
            return [{"name": f["name"], "levels": list(f["levels"]), "codes": self.factor_codes[:, j]}
                    for j, f in enumerate(self.factors) if f["levels"]]
        if self.kind == "discrete":
            return [{"name": "u", "levels": list(self.names), "codes": self.data}]
        return []

    def distinct(self) -> int:
        """The number of distinct values u takes."""
        return len(np.unique(self.data)) if self.data.ndim == 1 else len(np.unique(self.data, axis=0))

    # -- new samples in a fitted layout --------------------------------------------------
    def unknown_levels(self, reference: "AuxVariable") -> list[str]:
        """Names of this u that ``reference`` lacks (levels or columns), sorted."""
        known = set(reference.names)
        return sorted({n for n in self.names if n not in known})

    def aligned_to(self, reference: "AuxVariable") -> "AuxVariable":
        """This u in ``reference``'s layout: its levels (discrete, factors) or columns
        (continuous) re-indexed by name to ``reference``'s.

        Raises
        ------
        ValueError
            A level or column that ``reference`` lacks (the message names them), or
            another kind.
        """
        missing = self.unknown_levels(reference)
        if missing:
            raise ValueError(f"u levels {missing[:5]} are not among the reference's")
        if self.kind != reference.kind:
            raise ValueError(f"u is {self.kind}, the reference {reference.kind}")
        if self.kind == "discrete":
            lookup = np.array([reference.names.index(n) for n in self.names], dtype=np.int64)
            return AuxVariable.discrete(lookup[self.data] if self.data.size else self.data, reference.names,
                                        factors=self.factors, factor_codes=self.factor_codes, spec=self.spec)
        if self.kind == "factors":
            by_name = {f["name"]: j for j, f in enumerate(self.factors)}
            codes = np.zeros((len(self), len(reference.factors)), np.int64)
            for j, f in enumerate(reference.factors):
                mine = self.factors[by_name[f["name"]]]
                lookup = np.array([f["levels"].index(lv) for lv in mine["levels"]], dtype=np.int64)
                codes[:, j] = lookup[self.data[:, by_name[f["name"]]]] if len(self) else 0
            return AuxVariable.from_factors(codes, reference.factors, spec=reference.spec)
        out = np.zeros((len(self), reference.n_levels), np.float32)
        out[:, [reference.names.index(n) for n in self.names]] = self.data
        return AuxVariable.continuous(out, reference.names, factors=self.factors,
                                      factor_codes=self.factor_codes, spec=self.spec)

    # -- the prepared store's layout -------------------------------------------------------
    @property
    def store_kind(self) -> str:
        """The store's ``u_kind``: ``"discrete"``, or ``"continuous"`` for factors and columns."""
        return "discrete" if self.kind == "discrete" else "continuous"

    def store_arrays(self) -> dict:
        """``{"u": ..., "u_factors": ...}`` as the store writes them (no ``u`` for factors)."""
        return {"u": None if self.kind == "factors" else self.data, "u_factors": self.factor_codes}

    @staticmethod
    def stored_as_factors(aux: dict | None, u_kind: str, u_factors_shape: tuple | None, u_names: Sequence) -> bool:
        """True when a store's u is concatenated factors given by its ``u_factors``: then no
        ``u`` dataset is needed (format 2 writes none; format 1's dense one is not read)."""
        aux = aux or {}
        factors = aux.get("factors") or []
        if not (u_kind == "continuous" and aux.get("combine") == "concat" and len(factors) > 1):
            return False
        if u_factors_shape is None or len(u_factors_shape) != 2 or u_factors_shape[1] != len(factors):
            return False
        return list(map(str, u_names)) == onehot_names(_factor_list(factors))

    @classmethod
    def from_store(cls, u: Any, u_kind: str, u_names: Sequence, aux: dict | None, u_factors: Any) -> "AuxVariable":
        """The u of a prepared store from its datasets ``u`` (None when absent), ``u_factors``
        and its attributes ``u_kind``, ``u_names`` and ``aux``."""
        aux = aux or {}
        factors = aux.get("factors") or []
        spec = str(aux.get("spec") or "")
        shape = None if u_factors is None else np.shape(u_factors)
        if cls.stored_as_factors(aux, u_kind, shape, u_names):
            return cls.from_factors(u_factors, factors, spec=spec)
        if u is None:
            raise ValueError("the store has no u and its u is not concatenated factors")
        if u_kind == "discrete":
            return cls.discrete(u, u_names, factors=factors, factor_codes=u_factors, spec=spec)
        return cls.continuous(u, u_names, factors=factors, factor_codes=u_factors, spec=spec)
