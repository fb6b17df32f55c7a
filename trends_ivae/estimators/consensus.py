"""Consensus of restarts, ICASSO-style (Himberg, Hyvärinen & Esposito 2004).

ICA and the iVAE are fitted from several random starts. Each restart's components are
matched to every other restart's (Hungarian assignment on absolute Pearson
correlations of the source estimates on the same rows), which gives

* how central each restart is: its mean matched correlation with all the others
  (the mean pairwise MCC); the most central restart is the one returned, a
  medoid of the restarts, instead of the one with the best held-out score;
* a per-component stability index of the returned restart: for component j, the
  mean over the other restarts of the absolute correlation with its matched
  component there. 1 means every restart found the component; values near the
  correlation of unrelated sources mean it is not reproducible.

Arrays only (numpy, scipy): no torch, no images.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Consensus", "CollinearityWarning", "abs_correlation", "consensus", "warn_collinear"]


class CollinearityWarning(UserWarning):
    """Two recovered components have nearly the same time course."""


def abs_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Pearson r| between the columns of ``a`` (N, k) and of ``b`` (N, m): (k, m).

    A constant column correlates 0 with everything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    na[na == 0] = np.inf
    nb[nb == 0] = np.inf
    return np.abs((a / na).T @ (b / nb))


def _matched(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each column of ``a``, its |r| with the column of ``b`` assigned to it."""
    r = abs_correlation(a, b)
    rows, cols = linear_sum_assignment(-r)
    out = np.zeros(r.shape[0])
    out[rows] = r[rows, cols]
    return out


@dataclass
class Consensus:
    """What :func:`consensus` found.

    Attributes
    ----------
    central : int
        Index of the most central restart (the medoid).
    centrality : ndarray of shape (n_restarts,)
        Mean matched |r| of each restart with every other one (NaN with one restart).
    stability : ndarray of shape (n_components,)
        Per-component stability index of the central restart (NaN with one restart).
    pairwise : ndarray of shape (n_restarts, n_restarts)
        Mean matched |r| (the MCC) of each pair; 1 on the diagonal.
    """

    central: int
    centrality: np.ndarray
    stability: np.ndarray
    pairwise: np.ndarray

    @property
    def agreement(self) -> float:
        """Mean pairwise MCC between restarts (NaN with one restart)."""
        n = self.pairwise.shape[0]
        if n < 2:
            return float("nan")
        return float(self.pairwise[np.triu_indices(n, 1)].mean())


def consensus(sources: list[np.ndarray], weights: np.ndarray | None = None) -> Consensus:
    """Match the components of several restarts and pick the most central one.

    Parameters
    ----------
    sources : list of ndarray, each (n_rows, n_components)
        Each restart's source estimates on the same rows.
    weights : ndarray of shape (n_restarts,), optional
        A restart with weight 0 (e.g. a diverged one) is never central and does not
        count in the others' centrality or stability.

    Returns
    -------
    Consensus
    """
    if not sources:
        raise ValueError("consensus needs at least one restart")
    shapes = {np.shape(s) for s in sources}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every restart's sources must be one (n_rows, n_components) shape, got {shapes}")
    n_restarts, k = len(sources), sources[0].shape[1]
    use = np.ones(n_restarts, bool) if weights is None else np.asarray(weights) > 0
    if not use.any():
        raise ValueError("consensus: every restart has weight 0")
    matched = np.full((n_restarts, n_restarts, k), np.nan)
    for i in range(n_restarts):
        matched[i, i] = 1.0
    for i, j in itertools.combinations(np.flatnonzero(use), 2):
        matched[i, j] = _matched(sources[i], sources[j])
        matched[j, i] = _matched(sources[j], sources[i])
    pairwise = np.nanmean(matched, axis=2)
    others = [np.flatnonzero(use & (np.arange(n_restarts) != i)) for i in range(n_restarts)]
    centrality = np.array([pairwise[i, o].mean() if use[i] and o.size else np.nan
                           for i, o in enumerate(others)])
    if np.isfinite(centrality).any():
        central = int(np.nanargmax(centrality))
        stability = matched[central, others[central]].mean(axis=0)
    else:   # a single usable restart
        central = int(np.flatnonzero(use)[0])
        stability = np.full(k, np.nan)
    keep = np.ix_(use, use)
    pw = np.full_like(pairwise, np.nan)
    pw[keep] = pairwise[keep]
    return Consensus(central=central, centrality=centrality, stability=stability, pairwise=pw[keep])


def warn_collinear(timecourses: np.ndarray, threshold: float = 0.8, stacklevel: int = 2) -> list[tuple]:
    """Warn (:class:`CollinearityWarning`) when two components' time courses have
    |r| above ``threshold``; returns the pairs ``(i, j, r)`` (0-based)."""
    r = abs_correlation(timecourses, timecourses)
    i, j = np.triu_indices(r.shape[0], 1)
    hits = [(int(a), int(b), float(r[a, b])) for a, b in zip(i, j) if r[a, b] > threshold]
    if hits:
        shown = ", ".join(f"{a + 1}-{b + 1} (|r| = {v:.2f})" for a, b, v in hits[:5])
        more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
        warnings.warn(f"{len(hits)} pair(s) of components have nearly the same time course: {shown}{more}. "
                      "Independent sources should not be collinear; the fit may be degenerate "
                      "(try fewer components, a richer u or more restarts).",
                      CollinearityWarning, stacklevel=stacklevel)
    return hits
