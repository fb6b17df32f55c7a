"""Artifact sources added to a simulation, so that labels can be checked against truth.

:func:`add_artifacts` returns a new :class:`~trends_ivae.simulate.results.FMRISimulation`
whose data carry, on top of the networks, artifact sources of these kinds:

``edge``
    A motion-like rim: the mask's outer two voxels over the upper half of the brain,
    with a time course of random steps and spikes (head movements) per subject.
``csf``
    A CSF-like source: a deep, central ellipsoid (ventricles) with a fast time course
    (AR(1) with coefficient -0.5: power piled up near Nyquist, like aliased cardiac and
    respiratory pulsation).
``highfreq``
    A diffuse, scanner-like source: a smooth field over the whole brain carrying white
    noise.

Each adds ``amplitude * signal_scale`` percent of the voxel's mean signal at one standard
deviation of its time course (``signal_scale`` as the networks). The truth is extended:
``maps``, ``effect_maps``, ``subject_maps``, ``timecourses`` and ``mixed`` get one more
component per artifact, named ``artifact-<kind>`` with kind ``artifact``. The networks'
data are unchanged otherwise (the same draws), so the same simulation with and without
artifacts can be compared.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .geometry import smooth_field
from .results import FMRISimulation

__all__ = ["ARTIFACT_KINDS", "add_artifacts", "artifact_map", "artifact_timecourse"]

ARTIFACT_KINDS = ("edge", "csf", "highfreq")


def artifact_map(kind: str, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The in-mask map (n_voxels,) of an artifact ``kind`` (peak 1)."""
    from scipy.ndimage import binary_erosion

    if kind == "edge":
        rim = mask & ~binary_erosion(mask, iterations=2)
        upper = np.zeros_like(mask)
        upper[..., mask.shape[2] // 2:] = True
        vol = (rim & upper).astype(float)
    elif kind == "csf":
        grid = np.indices(mask.shape).astype(float)
        centre = np.array([np.mean(np.nonzero(mask)[i]) for i in range(3)])
        radii = np.array(mask.shape) * np.array([0.08, 0.12, 0.08])
        vol = np.exp(-sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
    elif kind == "highfreq":
        vol = 1.0 + 0.5 * smooth_field(mask.shape, 4.0, rng)
    else:
        raise ValueError(f"unknown artifact kind {kind!r}; one of {', '.join(ARTIFACT_KINDS)}")
    values = np.clip(vol[mask], 0, None)
    return values / (values.max() or 1.0)


def artifact_timecourse(kind: str, n_volumes: int, rng: np.random.Generator) -> np.ndarray:
    """A standardised time course (n_volumes,) of an artifact ``kind``."""
    if kind == "edge":
        steps = np.cumsum(rng.standard_normal(n_volumes) * (rng.random(n_volumes) < 0.05) * 3.0)
        spikes = rng.standard_normal(n_volumes) * (rng.random(n_volumes) < 0.08) * 4.0
        x = steps + spikes + 0.3 * rng.standard_normal(n_volumes)
    elif kind == "csf":
        x = np.zeros(n_volumes)
        e = rng.standard_normal(n_volumes)
        for t in range(n_volumes):
            x[t] = (-0.5 * x[t - 1] if t else 0.0) + e[t]
    elif kind == "highfreq":
        x = rng.standard_normal(n_volumes)
    else:
        raise ValueError(f"unknown artifact kind {kind!r}; one of {', '.join(ARTIFACT_KINDS)}")
    x = x - x.mean()
    return x / (x.std() or 1.0)


def add_artifacts(sim: FMRISimulation, kinds: Sequence[str] = ARTIFACT_KINDS, *, amplitude: float = 1.0,
                  seed: int | None = None) -> FMRISimulation:
    """``sim`` with artifact sources added to its data and truth (see the module's docstring).

    Parameters
    ----------
    sim : FMRISimulation
    kinds : sequence of str
        Artifact kinds, in :data:`ARTIFACT_KINDS` (a kind may repeat).
    amplitude : float, default=1.0
        Relative to the networks' ``signal_scale``.
    seed : int, optional
        Seed of the artifacts' draws (default: the simulation's seed + 1).
    """
    rng = np.random.default_rng(sim.params.seed + 1 if seed is None else seed)
    truth = sim.truth
    mask = truth.mask
    S, T = len(sim.data), sim.params.n_volumes
    maps = np.stack([artifact_map(k, mask, rng) for k in kinds])                     # (A, V)
    tcs = np.stack([np.stack([artifact_timecourse(k, T, rng) for k in kinds], axis=1) for _ in range(S)])  # (S, T, A)
    scale = amplitude * sim.params.signal_scale
    data = []
    for s in range(S):
        base = sim.data[s].mean(axis=0)
        data.append((sim.data[s] + base * (tcs[s] @ (scale * maps)) / 100).astype(np.float32))
    sub_maps = np.broadcast_to(maps, (S,) + maps.shape)
    new_truth = dataclasses.replace(
        truth,
        maps=np.concatenate([truth.maps, maps]).astype(np.float32),
        effect_maps=np.concatenate([truth.effect_maps, scale * maps]).astype(np.float32),
        subject_maps=np.concatenate([truth.subject_maps, sub_maps], axis=1).astype(np.float32),
        timecourses=np.concatenate([truth.timecourses, tcs], axis=2).astype(np.float32),
        mixed=np.concatenate([truth.mixed, tcs], axis=2).astype(np.float32),
        component_names=list(truth.component_names) + [f"artifact-{k}" for k in kinds],
        component_kinds=list(truth.component_kinds) + ["artifact"] * len(kinds),
    )
    return dataclasses.replace(sim, data=data, truth=new_truth)
