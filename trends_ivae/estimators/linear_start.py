"""Linear ICA solutions of (x, u) to start the nonlinear estimators from.

Two linear unmixings ``y = x Wᵀ + b`` are computed:

* ``"fastica"``: scikit-learn's FastICA (non-Gaussianity; ignores u);
* ``"nsica"``: nonstationary ICA: the approximate joint diagonaliser of the
  whitened covariances of the levels of u (Pham & Cardoso 2001; Jacobi angles as
  in Cardoso & Souloumiac 1996). Sources whose variances change with u are exactly
  what the iVAE's prior models.

``"auto"`` keeps the one with the higher log-likelihood under the iVAE's own linear
model: ``y = W x`` with a factorial Gaussian ``p(y | u)`` whose means and variances
are fitted per level of u, i.e. the model a linear flow fits. Arrays only.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import FastICA

from .consensus import consensus

__all__ = ["LinearStart", "fastica_unmixing", "joint_diagonalizer", "linear_loglik", "linear_start",
           "nsica_unmixing"]


@dataclass
class LinearStart:
    """A linear unmixing ``y = X @ unmixing.T + offset`` with unit-variance outputs."""

    unmixing: np.ndarray   # (n_components, n_features)
    offset: np.ndarray     # (n_components,)
    method: str
    loglik: float          # per row, under the per-level Gaussian model (linear_loglik)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return X @ self.unmixing.T + self.offset


def _unit_variance(W: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = X @ W.T
    mean, std = y.mean(0), y.std(0)
    std[std == 0] = 1.0
    W = W / std[:, None]
    return W, -mean / std


def fastica_unmixing(X: np.ndarray, n_components: int, random_state: int = 0,
                     n_restarts: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """FastICA's unmixing and offset (unit-variance outputs).

    With ``n_restarts > 1``, FastICA runs from that many seeds (drawn from
    ``random_state``) and the most central run is kept (ICASSO-style,
    :func:`~trends_ivae.estimators.consensus.consensus`): a start that depends less on
    the seed.
    """
    if n_restarts == 1:
        seeds = [random_state]
    else:
        seeds = np.random.default_rng(random_state).integers(2**31 - 1, size=n_restarts).tolist()
    runs = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # convergence warnings: the start is refined anyway
            ica = FastICA(n_components, whiten="unit-variance", random_state=seed, max_iter=1000).fit(X)
        runs.append(_unit_variance(ica.components_, X))
    if len(runs) == 1:
        return runs[0]
    return runs[consensus([X @ W.T for W, _ in runs]).central]


def joint_diagonalizer(mats: np.ndarray, tol: float = 1e-8, max_sweeps: int = 100) -> np.ndarray:
    """Orthogonal V (n, n) such that ``Vᵀ C_k V`` are as diagonal as possible, for
    symmetric ``mats`` (K, n, n) (Jacobi angles, Cardoso & Souloumiac 1996)."""
    A = np.array(mats, dtype=np.float64)
    n = A.shape[1]
    V = np.eye(n)
    for _ in range(max_sweeps):
        rotated = False
        for p in range(n - 1):
            for q in range(p + 1, n):
                g = np.stack([A[:, p, p] - A[:, q, q], A[:, p, q] + A[:, q, p]])   # (2, K)
                G = g @ g.T
                ton, toff = G[0, 0] - G[1, 1], G[0, 1] + G[1, 0]
                theta = 0.5 * np.arctan2(toff, ton + np.sqrt(ton * ton + toff * toff))
                c, s = np.cos(theta), np.sin(theta)
                if abs(s) <= tol:
                    continue
                rotated = True
                R = np.array([[c, -s], [s, c]])
                idx = [p, q]
                A[:, :, idx] = A[:, :, idx] @ R
                A[:, idx, :] = np.einsum("ji,kjl->kil", R, A[:, idx, :])
                V[:, idx] = V[:, idx] @ R
        if not rotated:
            break
    return V


def nsica_unmixing(X: np.ndarray, codes: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Nonstationary-variance ICA: whiten by PCA, then jointly diagonalise the
    covariances of the levels in ``codes`` (n,) integers."""
    Xc = X - X.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(Xc, rowvar=False))
    top = np.argsort(evals)[::-1][:n_components]
    white = (evecs[:, top] / np.sqrt(np.maximum(evals[top], 1e-12))).T      # (n, d)
    Y = Xc @ white.T
    levels, inverse = np.unique(codes, return_inverse=True)
    covs = []
    for k in range(len(levels)):
        rows = Y[inverse == k]
        if rows.shape[0] > n_components:
            covs.append(np.cov(rows, rowvar=False))
    if not covs:
        raise ValueError("nonstationary ICA needs levels of u with more rows than components")
    V = joint_diagonalizer(np.stack(covs))
    return _unit_variance(V.T @ white, X)


def linear_loglik(Y: np.ndarray, codes: np.ndarray, unmixing: np.ndarray) -> float:
    """Mean log-likelihood per row of ``x`` under ``y = W x + b``, ``y | u`` factorial
    Gaussian with maximum-likelihood means and variances per level of ``codes``."""
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    n_levels = counts.size
    sums = np.zeros((n_levels, Y.shape[1]))
    np.add.at(sums, inverse, Y)
    means = sums / counts[:, None]
    sq = np.zeros_like(sums)
    np.add.at(sq, inverse, (Y - means[inverse]) ** 2)
    var = np.maximum(sq / counts[:, None], 1e-12)
    ll = -0.5 * (counts[:, None] * (np.log(2 * np.pi * var) + 1.0)).sum() / Y.shape[0]
    return float(ll + np.linalg.slogdet(unmixing @ unmixing.T)[1] / 2)


def linear_start(X: np.ndarray, codes: np.ndarray | None, n_components: int, method: str = "auto",
                 random_state: int = 0, n_restarts: int = 1) -> LinearStart:
    """A linear ICA solution of ``X`` (n, d), with u's level ``codes`` (n,) or None.

    Parameters
    ----------
    method : {"auto", "fastica", "nsica"}
        ``"auto"`` computes both (nsica only with codes) and keeps the one with the
        higher :func:`linear_loglik`.
    n_restarts : int, default=1
        FastICA restarts, the most central kept (see :func:`fastica_unmixing`).
    """
    if int(n_restarts) < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    if method not in ("auto", "fastica", "nsica"):
        raise ValueError(f"method must be 'auto', 'fastica' or 'nsica', got {method!r}")
    if method == "nsica" and codes is None:
        raise ValueError("the nonstationary ICA start needs discrete u levels")
    X = np.asarray(X, dtype=np.float64)
    cands = []
    if method in ("auto", "fastica"):
        cands.append(("fastica", *fastica_unmixing(X, n_components, random_state, int(n_restarts))))
    if method in ("auto", "nsica") and codes is not None:
        try:
            cands.append(("nsica", *nsica_unmixing(X, codes, n_components)))
        except (ValueError, np.linalg.LinAlgError):
            if method == "nsica":
                raise
    scored = []
    for name, W, b in cands:
        ll = linear_loglik(X @ W.T + b, codes, W) if codes is not None else float("nan")
        scored.append(LinearStart(W.astype(np.float32), b.astype(np.float32), name, ll))
    return max(scored, key=lambda s: s.loglik if np.isfinite(s.loglik) else -np.inf)
