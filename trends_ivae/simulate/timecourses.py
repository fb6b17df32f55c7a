"""The simulator's time: task events and HRF regressors, resting sources, the mixing MLP."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .params import FMRISimParams

__all__ = ["glover_hrf", "make_events", "task_regressors", "detrend_linear", "ar1", "mixing_matrices", "mix"]


def glover_hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """Glover's canonical HRF sampled every ``dt`` seconds, normalised to unit sum
    (the same difference of gammas as ``nilearn.glm.first_level.glover_hrf``)."""
    t = np.linspace(0, length, int(np.rint(length / dt)))
    peak = stats.gamma.pdf(t, 6 / 0.9, loc=dt, scale=0.9)
    under = stats.gamma.pdf(t, 12 / 0.9, loc=dt, scale=0.9)
    h = peak - 0.35 * under
    return h / h.sum()


def make_events(p: FMRISimParams, conditions: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Blocks of the task conditions in a random order per cycle, separated by fixation."""
    total = p.n_volumes * p.tr
    rows, t = [], float(rng.uniform(*p.rest_between_blocks))
    while conditions:
        for c in rng.permutation(len(conditions)):
            if t + p.block_duration > total:
                return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])
            rows.append((round(t, 3), p.block_duration, conditions[c]))
            t += p.block_duration + float(rng.uniform(*p.rest_between_blocks))
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def task_regressors(events: pd.DataFrame, conditions: list[str], p: FMRISimParams,
                     rng: np.random.Generator) -> np.ndarray:
    """(n_volumes, n_conditions) HRF-convolved boxcars with block amplitudes varying by
    ``task_noise / 2``."""
    over = 16
    dt = p.tr / over
    n_fine = p.n_volumes * over + int(32 / dt)
    out = np.zeros((p.n_volumes, len(conditions)))
    hrf = glover_hrf(dt)
    for j, cond in enumerate(conditions):
        box = np.zeros(n_fine)
        for onset, dur in events.loc[events.trial_type == cond, ["onset", "duration"]].to_numpy():
            a = 1.0 + 0.5 * p.task_noise * rng.standard_normal()
            box[int(round(onset / dt)):int(round((onset + dur) / dt))] = a
        conv = np.convolve(box, hrf)[:n_fine]
        out[:, j] = conv[np.arange(p.n_volumes) * over]
    return out


def detrend_linear(a: np.ndarray) -> np.ndarray:
    """Remove each run's mean and linear trend along axis 1 of ``a`` (S, T, K)."""
    T = a.shape[1]
    G = np.c_[np.ones(T), np.linspace(-1, 1, T)]  # (T, 2)
    coef = np.linalg.lstsq(G, a.transpose(1, 0, 2).reshape(T, -1), rcond=None)[0]
    fit = (G @ coef).reshape(T, a.shape[0], a.shape[2]).transpose(1, 0, 2)
    return a - fit


def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance stationary AR(1) series of length ``n``."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    s = np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + s * e[t]
    return x


def _leaky_tanh(y: np.ndarray, slope: float) -> np.ndarray:
    return np.tanh(y) + slope * y


def mixing_matrices(k: int, n_layers: int, rng: np.random.Generator) -> list[np.ndarray]:
    from .synthetic import well_conditioned_matrix
    return [well_conditioned_matrix(k, k, rng, n_draws_for_threshold=1000) for _ in range(n_layers)]


def mix(S: np.ndarray, mats: list[np.ndarray], slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Apply the MLP to ``S`` (n, k); return ``(H, J)`` with ``J[t, j, m] = dH_m / dS_j``."""
    n, k = S.shape
    X = S
    J = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    for layer, A in enumerate(mats):
        pre = X @ A
        J = J @ A
        if layer < len(mats) - 1:
            X = _leaky_tanh(pre, slope)
            J = J * (1 - np.tanh(pre) ** 2 + slope)[:, None, :]
        else:
            X = pre
    return X, J
