"""The model order after i.i.d. subsampling: MDL and AIC on effectively independent voxels.

Information criteria count the samples behind a covariance as independent. fMRI maps
are spatially smooth, so neighbouring voxels are not, and an estimate that counts every
voxel finds too many components. Li, Adali & Calhoun (2007, "Estimating the number of
independent components for fMRI data", Hum Brain Mapp 28:1251) subsample the voxel grid
until the noise looks white, then apply MDL or AIC to the subsampled data with the
subsampled voxel count (GIFT's approach). This module implements that, on the rows of
the group's MIGP matrix (spatial patterns of the group data, one per row), arrays only:

- :func:`entropy_rate` -- the entropy rate of a stationary Gaussian field on a mask
  (per voxel, for unit variance), from its windowed autocorrelation; white noise has
  ``0.5 log(2 pi e)``, a smooth field less;
- :func:`subsampling_step` -- the grid step at which the noise patterns look white;
- :func:`iid_spectrum` -- the eigenvalues of the data on the subsampled grid, and the
  number of voxels behind them;
- :func:`information_criteria` -- MDL and AIC of every order, after the finite-sample
  correction of the eigenspectrum (Marchenko-Pastur quantiles).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["entropy_rate", "subsampling_step", "iid_spectrum", "information_criteria", "first_minimum",
           "WHITE_ENTROPY"]

#: the entropy rate of unit-variance white Gaussian noise, 0.5 log(2 pi e)
WHITE_ENTROPY = 0.5 * np.log(2 * np.pi * np.e)
#: a field counts as white once its entropy rate exceeds this (Li et al. 2007 use 1.41)
WHITE_THRESHOLD = 1.41
#: at most this many noise patterns are used to find the subsampling step
N_PATTERNS = 12


def _parzen(lags: np.ndarray, width: int) -> np.ndarray:
    """Parzen's window of half-width ``width`` at integer ``lags``."""
    u = np.abs(lags) / (width + 1.0)
    return np.where(u <= 0.5, 1 - 6 * u ** 2 + 6 * u ** 3, np.where(u < 1, 2 * (1 - u) ** 3, 0.0))


def _pair_counts(mask: np.ndarray) -> np.ndarray:
    """Voxel pairs of ``mask`` at every lag (zero-padded circular correlation of the mask)."""
    size = tuple(2 * n for n in mask.shape)
    axes = tuple(range(mask.ndim))
    return np.fft.irfftn(np.abs(np.fft.rfftn(mask.astype(np.float64), size, axes)) ** 2, size, axes)


def entropy_rate(field: np.ndarray, mask: np.ndarray, pairs: np.ndarray | None = None) -> float:
    """Entropy rate (nats per voxel) of a field seen on ``mask``, as a stationary Gaussian process.

    The autocorrelation is computed over the mask (each lag divided by the number of
    voxel pairs at that lag), tapered by a Parzen window of a tenth of the grid in each
    direction, and turned into a spectrum ``S`` with mean 1; the rate is
    ``0.5 log(2 pi e) + 0.5 mean(log S)`` (Kolmogorov), equal to :data:`WHITE_ENTROPY`
    for white noise and lower the smoother the field.

    Parameters
    ----------
    field : ndarray, 3-D
        Values on a grid (only those inside ``mask`` are used).
    mask : bool ndarray, same shape
    pairs : ndarray, optional
        ``_pair_counts(mask)``, when already computed for this mask.

    Returns
    -------
    float
    """
    mask = np.asarray(mask, bool)
    values = np.asarray(field, np.float64)[mask]
    if values.size < 2 or values.std() == 0:
        return float(WHITE_ENTROPY)
    x = np.zeros(mask.shape)
    x[mask] = (values - values.mean()) / values.std()
    size = tuple(2 * n for n in mask.shape)
    axes = tuple(range(mask.ndim))
    ac = np.fft.irfftn(np.abs(np.fft.rfftn(x, size, axes)) ** 2, size, axes)
    pairs = _pair_counts(mask) if pairs is None else pairs
    r = np.where(pairs > 0.5, ac / np.maximum(pairs, 1.0), 0.0)
    window = np.ones(size)
    for axis, (n, m) in enumerate(zip(mask.shape, size)):
        lag = np.fft.fftfreq(m, 1.0 / m)
        w = _parzen(lag, int(np.ceil(n / 10)))
        window = window * w.reshape([-1 if a == axis else 1 for a in range(len(size))])
    r = r * window / r.flat[0]
    spectrum = np.clip(np.abs(np.fft.fftn(r)), 1e-4, None)
    return float(WHITE_ENTROPY + 0.5 * np.mean(np.log(spectrum)))


def subsampling_step(patterns: np.ndarray, mask: np.ndarray, max_step: int | None = None) -> int:
    """The grid step at which ``patterns`` (noise maps) look white (median over patterns).

    For each pattern the step ``j = 1, 2, ...`` grows until the entropy rate of the
    pattern on the grid subsampled by ``j`` in every direction exceeds
    :data:`WHITE_THRESHOLD`. As in GIFT, patterns stop being examined once more than six
    agree with the running median.

    Parameters
    ----------
    patterns : ndarray, shape (n_patterns, n_voxels)
        Values at the voxels of ``mask`` (C order).
    mask : bool ndarray, 3-D
    max_step : int, optional
        Never more than this (default: the smallest grid side minus one, sides of one
        voxel apart).

    Returns
    -------
    int
    """
    mask = np.asarray(mask, bool)
    sides = [n for n in mask.shape if n > 1] or [1]   # a single slice is a 2-D grid
    top = max(1, min(sides) - 1 if max_step is None else int(max_step))
    grids: dict[int, tuple] = {}
    steps: list[int] = []
    for p in np.atleast_2d(patterns):
        field = np.zeros(mask.shape)
        field[mask] = p
        step = top
        for j in range(1, top + 1):
            if j not in grids:
                sub_mask = mask[(slice(None, None, j),) * mask.ndim]
                grids[j] = (sub_mask, _pair_counts(sub_mask) if sub_mask.sum() >= 8 else None)
            sub_mask, pairs = grids[j]
            if pairs is None or entropy_rate(field[(slice(None, None, j),) * mask.ndim], sub_mask,
                                             pairs) > WHITE_THRESHOLD:
                step = j
                break
        steps.append(step)
        median = int(round(float(np.median(steps))))
        if len(steps) > 6 and steps.count(median) > 6:
            break
    return int(round(float(np.median(steps)))) if steps else 1


def _noise_patterns(W: np.ndarray, eigenvalues: np.ndarray) -> np.ndarray:
    """Up to :data:`N_PATTERNS` rows of ``W`` that look like noise: eigenvalue below the
    mean and near-Gaussian values (excess kurtosis under 0.3), from the top, middle and
    bottom of those; the last rows when none qualify."""
    kurt = stats.kurtosis(W, axis=1)
    ok = np.flatnonzero((eigenvalues < eigenvalues.mean()) & (np.abs(kurt) < 0.3) & (eigenvalues > 0))
    if ok.size >= N_PATTERNS:
        mid = ok.size // 2
        ok = np.unique(np.concatenate([ok[:4], ok[mid - 2:mid + 2], ok[-4:]]))
    elif ok.size == 0:
        positive = np.flatnonzero(eigenvalues > 0)
        ok = positive[-N_PATTERNS:]
    return W[ok]


def iid_spectrum(W: np.ndarray, mask: np.ndarray) -> dict:
    """Eigenvalues of the data on an i.i.d. subsampled grid (Li, Adali & Calhoun 2007).

    Parameters
    ----------
    W : ndarray, shape (n_rows, n_voxels)
        Rows spanning the data's leading temporal subspace, as spatial patterns (the MIGP
        running matrix ``U^T Y``: its Gram matrix has the data's leading eigenvalues).
    mask : bool ndarray, 3-D
        The voxels of ``W``'s columns (C order).

    Returns
    -------
    dict
        ``eigenvalues`` (decreasing, of the covariance of the subsampled voxels),
        ``n_samples`` (voxels on the subsampled grid), ``step`` (the grid step) and
        ``n_voxels`` (before subsampling).
    """
    mask = np.asarray(mask, bool)
    W = np.asarray(W, np.float64)
    if W.ndim != 2 or W.shape[1] != int(mask.sum()):
        raise ValueError(f"W has shape {W.shape}; the mask has {int(mask.sum())} voxels")
    gram = W @ W.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    rows = evecs[:, order].T @ W   # principal spatial patterns, decreasing
    evals = np.clip(evals[order], 0.0, None)
    n_axes = max(1, sum(n > 1 for n in mask.shape))   # a single slice is a 2-D grid
    cap = max(1, int(np.floor((mask.sum() / max(W.shape[0], 1)) ** (1.0 / n_axes))))
    step = min(subsampling_step(_noise_patterns(rows, evals), mask), cap)
    keep = np.zeros(mask.shape, bool)
    keep[(slice(None, None, step),) * mask.ndim] = True
    sub = keep[mask]
    Ws = W[:, sub]
    Ws = Ws - Ws.mean(axis=1, keepdims=True)
    n = int(sub.sum())
    lam = np.sort(np.clip(np.linalg.eigvalsh(Ws @ Ws.T / n), 0.0, None))[::-1]
    return {"eigenvalues": [float(v) for v in lam], "n_samples": n, "step": int(step),
            "n_voxels": int(mask.sum())}


def _mp_quantiles(p: int, n: float, n_dims: int) -> np.ndarray:
    """The top ``p`` of ``n_dims`` eigenvalues expected of white noise of unit variance
    with ``n`` samples (Marchenko-Pastur quantiles), decreasing."""
    r = min(n_dims / n, 1.0 - 1e-9)
    lo, hi = (1 - np.sqrt(r)) ** 2, (1 + np.sqrt(r)) ** 2
    grid = np.linspace(lo, hi, 20 * n_dims)
    dens = np.sqrt(np.clip((grid - lo) * (hi - grid), 0, None)) / (2 * np.pi * r * grid)
    cdf = np.cumsum(dens)
    cdf /= cdf[-1]
    q = (np.arange(n_dims, 0, -1) - 0.5) / n_dims   # decreasing quantile levels
    return np.interp(q, cdf, grid)[:p]


def information_criteria(eigenvalues: np.ndarray, n_samples: float, n_dims: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """MDL and AIC of every order ``k = 1 ... p-1`` (Wax & Kailath 1985, as in Li et al. 2007).

    The eigenvalues are first divided by the Marchenko-Pastur quantiles expected of
    white noise with ``n_samples`` samples in ``n_dims`` dimensions (the finite-sample
    correction of Li et al.), so that a white tail is flat.

    Parameters
    ----------
    eigenvalues : ndarray, shape (p,)
        Decreasing, positive.
    n_samples : float
        Independent samples behind them.
    n_dims : int, optional
        Dimensions of the data they are the top of (default ``p``: all of them).

    Returns
    -------
    mdl, aic : ndarray, shape (p - 1,)
        Entry ``k - 1`` is the criterion of order ``k`` (lower is better).
    """
    lam = np.sort(np.asarray(eigenvalues, np.float64))[::-1]
    p = lam.size
    n_dims = p if n_dims is None else max(int(n_dims), p)
    lam = lam / _mp_quantiles(p, float(n_samples), n_dims)
    lam = np.maximum(lam, lam[lam > 0].min() if np.any(lam > 0) else 1e-12)
    log_lam = np.log(lam)
    mdl = np.empty(p - 1)
    aic = np.empty(p - 1)
    for k in range(1, p):
        tail = lam[k:]
        ratio = log_lam[k:].mean() - np.log(tail.mean())   # log(geometric / arithmetic mean) <= 0
        fit = 0.5 * n_samples * (p - k) * ratio
        df = 1 + 0.5 * k * (2 * p - k + 1)
        mdl[k - 1] = -fit + 0.5 * df * np.log(n_samples)
        aic[k - 1] = -2 * fit + 2 * df
    return mdl, aic


def first_minimum(curve: np.ndarray) -> int:
    """The order (1-based) at the first local minimum of ``curve`` (its last when it only falls)."""
    rises = np.flatnonzero(np.diff(curve) > 0)
    return int(rises[0]) + 1 if rises.size else int(curve.size)
