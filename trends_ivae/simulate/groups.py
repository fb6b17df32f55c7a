"""Known group differences added to a simulation: an amplitude effect and a coupling effect.

:func:`add_group_effects` changes the patients of a simulation (``participants.tsv``'s
``group`` column, alternating ``control`` / ``patient``):

- **amplitude**: source ``source``'s subject amplitude is raised by ``amplitude_d`` times
  the standard deviation of the amplitudes across subjects (``amplitude_sd``, the
  log-normal's spread), i.e. Cohen's d = ``amplitude_d`` on the subjects' amplitudes;
- **coupling**: in patients, source ``pair[1]`` becomes
  ``r * s_i + sqrt(1 - r**2) * s_j`` with ``r = delta_r`` (the controls' sources are
  independent, so the correlation differs by about ``delta_r``).

Both act on the linear signal: the change is added to the data as ``signal_scale`` percent
of each voxel's mean per unit, so they are exact for ``nonlinear=False`` simulations and
first-order with saturation; they assume no source mixing (``mixing_layers=0``). The truth's ``timecourses``, ``mixed`` and ``subject_maps`` are
updated; the returned dictionary says what was changed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .results import FMRISimulation

__all__ = ["add_group_effects"]


def add_group_effects(sim: FMRISimulation, *, source: int = 0, amplitude_d: float = 1.0,
                      pair: tuple[int, int] = (1, 2), delta_r: float = 0.3) -> tuple[FMRISimulation, dict]:
    """``sim`` with the patients' amplitude and coupling changed (see the module's docstring).

    Returns
    -------
    FMRISimulation
    effects : dict
        ``source``, ``pair``, ``amplitude_delta`` (added amplitude), ``delta_r``, ``patients``.
    """
    p = sim.params
    truth = sim.truth
    K = truth.maps.shape[0]
    i, j = pair
    if not (0 <= source < K and 0 <= i < K and 0 <= j < K and i != j):
        raise ValueError(f"source {source} and pair {pair} must be distinct components of 0..{K - 1}")
    if not 0 <= delta_r < 1:
        raise ValueError(f"delta_r must be in [0, 1), got {delta_r}")
    patients = [k for k, g in enumerate(sim.participants["group"]) if g == "patient"]
    delta = amplitude_d * p.amplitude_sd
    data = [d.copy() for d in sim.data]
    tcs = truth.timecourses.copy()
    sub_maps = truth.subject_maps.copy()
    for s in patients:
        base = data[s].mean(axis=0) * p.signal_scale / 100
        unit = sub_maps[s]                                   # a_{s,k} M_{s,k}, M peaking near 1
        amp_map = delta * unit[source] / max(np.abs(unit[source]).max(), 1e-12)
        change = np.outer(tcs[s, :, source], amp_map)
        new_j = delta_r * tcs[s, :, i] + np.sqrt(1 - delta_r ** 2) * tcs[s, :, j]
        change += np.outer(new_j - tcs[s, :, j], unit[j])
        data[s] = (data[s] + base * change).astype(np.float32)
        tcs[s, :, j] = new_j
        sub_maps[s, source] = unit[source] + amp_map
    new_truth = dataclasses.replace(truth, timecourses=tcs.astype(np.float32), mixed=tcs.astype(np.float32),
                                    subject_maps=sub_maps.astype(np.float32))
    effects = {"source": source, "pair": (i, j), "amplitude_delta": float(delta), "delta_r": float(delta_r),
               "patients": [truth.subjects[s] for s in patients]}
    return dataclasses.replace(sim, data=data, truth=new_truth), effects
