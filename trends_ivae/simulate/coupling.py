"""Time-varying coupling between simulated sources: known dFNC states.

With ``FMRISimParams.coupling_block > 0``, the run alternates between two states in
blocks of ``coupling_block`` volumes (state 1 first, the same timing for every
subject). Pair ``i`` of ``coupling`` couples the resting sources ``n_task + 2 i`` and
``n_task + 2 i + 1``: its two numbers are their correlation in state 1 and in state 2.
The default, ``((0.5, -0.5), (0.4, 0.0))``, couples one pair at +0.5 then -0.5 (zero on
average, so a temporal ICA can still hold them apart) and another at +0.4 then 0.

The coupling acts on the sources' innovations, inside each segment (the resting
sources are ``mean + sd * AR(1)`` per segment): the second source's AR(1) series becomes
``rho(t) a(t) + sqrt(1 - rho(t)^2) b(t)``, with ``a`` the first's, so the two series
correlate at ``rho`` within each state while both keep their own segment means and
standard deviations. :func:`coupling_states` gives the truth: the state of every volume
and the two states' correlation matrices.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["coupling_states", "coupled_pairs", "couple_sources"]


def coupled_pairs(p: Any) -> list[tuple[int, int, float, float]]:
    """``(source a, source b, rho in state 1, rho in state 2)`` per pair of ``p.coupling``.

    Raises
    ------
    ValueError
        Not enough resting sources for the pairs, or a correlation outside (-1, 1).
    """
    pairs = []
    for i, rhos in enumerate(p.coupling):
        a = int(p.n_task) + 2 * i
        r1, r2 = (float(r) for r in rhos)
        if a + 1 >= int(p.n_components):
            raise ValueError(f"coupling pair {i + 1} needs resting sources {a + 1} and {a + 2}, but there are only "
                             f"{p.n_components} sources ({p.n_task} task-locked)")
        if not (-1 < r1 < 1 and -1 < r2 < 1):
            raise ValueError(f"coupling correlations must be in (-1, 1), got {rhos}")
        pairs.append((a, a + 1, r1, r2))
    return pairs


def coupling_states(p: Any) -> tuple[np.ndarray, np.ndarray]:
    """The truth of the coupling: (state of each volume (n_volumes,) in {0, 1}, the two
    states' correlation matrices (2, n_components, n_components), unit diagonal)."""
    state = (np.arange(int(p.n_volumes)) // max(int(p.coupling_block), 1)) % 2
    mats = np.stack([np.eye(int(p.n_components)) for _ in range(2)])
    for a, b, r1, r2 in coupled_pairs(p):
        for s, r in enumerate((r1, r2)):
            mats[s, a, b] = mats[s, b, a] = r
    return state, mats


def couple_sources(sources: np.ndarray, means: np.ndarray, stds: np.ndarray, segments: np.ndarray,
                   p: Any) -> np.ndarray:
    """One subject's sources (n_volumes, k) with the coupling applied (module docstring).

    ``means`` and ``stds`` (n_segments, k) are the resting sources' segment parameters,
    ``segments`` (n_volumes,) each volume's segment.
    """
    if not int(p.coupling_block) or not p.coupling:
        return sources
    out = sources.copy()
    state, _ = coupling_states(p)
    for a, b, r1, r2 in coupled_pairs(p):
        rho = np.where(state == 0, r1, r2)
        inn_a = (sources[:, a] - means[segments, a]) / stds[segments, a]
        inn_b = (sources[:, b] - means[segments, b]) / stds[segments, b]
        out[:, b] = means[segments, b] + stds[segments, b] * (rho * inn_a + np.sqrt(1 - rho ** 2) * inn_b)
    return out
