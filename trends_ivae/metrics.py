"""Evaluation of recovered sources against the truth.

The mean correlation coefficient (MCC) of the nonlinear-ICA literature: correlate every
recovered component with every true one, find the one-to-one matching that maximises
the total absolute correlation (Hungarian algorithm), and average the matched absolute
correlations.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

__all__ = ["MCCResult", "mcc", "correlation_matrix"]


class MCCResult(NamedTuple):
    """``score`` (mean matched |r|), ``rows`` / ``cols`` (matched indices of a and b),
    ``corr`` (the matched signed correlations) and ``matrix`` (all correlations)."""

    score: float
    rows: np.ndarray
    cols: np.ndarray
    corr: np.ndarray
    matrix: np.ndarray


def correlation_matrix(a: np.ndarray, b: np.ndarray, method: str = "pearson") -> np.ndarray:
    """Correlations between the columns of ``a`` (n, p) and of ``b`` (n, q): (p, q).

    A constant column correlates 0 with everything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 1-D or 2-D arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must not contain NaN or inf")
    if method == "spearman":
        a = np.apply_along_axis(rankdata, 0, a)
        b = np.apply_along_axis(rankdata, 0, b)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    a = a - a.mean(0)
    b = b - b.mean(0)
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    na[na == 0] = np.inf
    nb[nb == 0] = np.inf
    return (a / na).T @ (b / nb)


def mcc(a: np.ndarray, b: np.ndarray, method: str = "pearson") -> MCCResult:
    """Mean absolute correlation after optimal one-to-one matching.

    Parameters
    ----------
    a, b : ndarray, shape (n_samples, n_a) and (n_samples, n_b)
        Recovered and true sources (the order does not matter; columns are components).
        With ``n_a != n_b``, ``min(n_a, n_b)`` pairs are matched.
    method : {"pearson", "spearman"}
        Pearson for linear agreement; Spearman for agreement up to monotone transforms
        (the iVAE identifies sources up to component-wise transforms).

    Returns
    -------
    MCCResult
        ``score`` in [0, 1] and the matching ``rows`` (of a), ``cols`` (of b).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(0).normal(size=(100, 3))
    >>> round(mcc(-s[:, ::-1], s).score, 6)
    1.0
    """
    c = correlation_matrix(a, b, method)
    rows, cols = linear_sum_assignment(-np.abs(c))
    matched = c[rows, cols]
    return MCCResult(float(np.abs(matched).mean()), rows, cols, matched, c)
