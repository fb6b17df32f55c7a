"""The iVAE paper's synthetic generator (Khemakhem et al. 2020, section 6).

M segments of L samples. In each segment each source is Gaussian (or Laplace) with a
standard deviation drawn from U(0.5, 3) per segment and component, and a mean of 0
or, for uncentred data, drawn from U(-5, 5). The sources are mixed by an MLP with
``n_layers`` layers ``x <- act(x A)`` (the last layer linear), ``act(y) = tanh(y) + 0.1 y``,
each A with U(-1, 1) entries and unit-norm columns, redrawn until its condition number
is in the best quarter of random draws. u is the segment label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticData", "SegmentRanges", "make_segment_data", "mixing_mlp", "well_conditioned_matrix"]


@dataclass
class SyntheticData:
    """``X`` (n, d) observations, ``S`` (n, n_sources) true sources, ``u`` (n,) segment
    labels, ``mixing`` the list of matrices of the mixing MLP."""

    X: np.ndarray
    S: np.ndarray
    u: np.ndarray
    mixing: list


@dataclass(frozen=True)
class SegmentRanges:
    """Where the per-segment source parameters are drawn from.

    Attributes
    ----------
    std : (float, float), default=(0.5, 3.0)
        Bounds of the uniform draw of each segment's and component's standard deviation.
    mean : (float, float), default=(-5.0, 5.0)
        Bounds of the uniform draw of each segment's and component's mean (uncentred data).
    """

    std: tuple[float, float] = (0.5, 3.0)
    mean: tuple[float, float] = (-5.0, 5.0)


def _leaky_tanh(y: np.ndarray, slope: float = 0.1) -> np.ndarray:
    return np.tanh(y) + slope * y


def well_conditioned_matrix(n_in: int, n_out: int, rng: np.random.Generator,
                            n_draws_for_threshold: int = 10000) -> np.ndarray:
    """A U(-1, 1) matrix with unit-norm columns whose condition number is in the best
    quarter of ``n_draws_for_threshold`` random draws."""
    def draw() -> np.ndarray:
        a = rng.uniform(-1, 1, (n_in, n_out))
        return a / np.linalg.norm(a, axis=0, keepdims=True)

    conds = [np.linalg.cond(draw()) for _ in range(n_draws_for_threshold)]
    threshold = np.percentile(conds, 25)
    a = draw()
    while np.linalg.cond(a) > threshold:
        a = draw()
    return a


def mixing_mlp(S: np.ndarray, n_obs: int, n_layers: int, rng: np.random.Generator,
               slope: float = 0.1, n_draws_for_threshold: int = 10000) -> tuple[np.ndarray, list]:
    """Mix ``S`` (n, k) by the paper's MLP; returns ``(X, matrices)``."""
    X = S
    mats = []
    for layer in range(n_layers):
        a = well_conditioned_matrix(X.shape[1], n_obs, rng, n_draws_for_threshold)
        mats.append(a)
        X = X @ a
        if layer < n_layers - 1:
            X = _leaky_tanh(X, slope)
    return X, mats


def make_segment_data(n_sources: int = 5, n_obs: int | None = None, n_segments: int = 40,
                      n_per_segment: int = 1000, n_layers: int = 3, prior: str = "gauss",
                      centered: bool = True, noise_std: float = 0.0, ranges: SegmentRanges = SegmentRanges(),
                      random_state: int | None = None,
                      n_draws_for_threshold: int = 10000, dtype=np.float32) -> SyntheticData:
    """Generate the paper's non-stationary sources and their nonlinear mixture.

    Parameters
    ----------
    n_sources, n_obs : int
        Source and observation dimensions (``n_obs`` defaults to ``n_sources``).
    n_segments, n_per_segment : int
        M segments of L samples; u is the segment label 0..M-1.
    n_layers : int
        Layers of the mixing MLP (1 = linear mixing).
    prior : {"gauss", "laplace"}
        Distribution of the sources within a segment.
    centered : bool
        Zero means (True) or means from U(``ranges.mean``) per segment and component.
    noise_std : float
        Standard deviation of Gaussian noise added to the observations.
    ranges : SegmentRanges, default=SegmentRanges()
        Bounds of the segments' standard deviations and (uncentred) means.
    random_state : int or None
    n_draws_for_threshold : int, default=10000
        Random matrices drawn to set the condition-number threshold of each mixing layer.
    dtype : numpy dtype, default=np.float32
        Data type of ``X`` and ``S``.

    Returns
    -------
    SyntheticData
    """
    if prior not in ("gauss", "laplace"):
        raise ValueError(f"prior must be 'gauss' or 'laplace', got {prior!r}")
    rng = np.random.default_rng(random_state)
    n_obs = n_sources if n_obs is None else n_obs
    if n_obs < n_sources:
        raise ValueError(f"n_obs ({n_obs}) must be >= n_sources ({n_sources}) for an injective mixing")
    stds = rng.uniform(*ranges.std, (n_segments, n_sources))
    means = (np.zeros((n_segments, n_sources)) if centered
             else rng.uniform(*ranges.mean, (n_segments, n_sources)))
    u = np.repeat(np.arange(n_segments), n_per_segment)
    n = n_segments * n_per_segment
    if prior == "gauss":
        e = rng.standard_normal((n, n_sources))
    else:
        e = rng.laplace(0.0, 1.0 / np.sqrt(2.0), (n, n_sources))   # unit variance
    S = means[u] + stds[u] * e
    X, mats = mixing_mlp(S, n_obs, n_layers, rng, n_draws_for_threshold=n_draws_for_threshold)
    if noise_std > 0:
        X = X + noise_std * rng.standard_normal(X.shape)
    return SyntheticData(X.astype(dtype), S.astype(dtype), u, mats)
