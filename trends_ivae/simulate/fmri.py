"""A SimTB-like fMRI simulator with known truth, and a BIDS writer.

The generative model, for subject ``s``, volume ``t`` and in-mask voxel ``v``::

    s_k(t)   sources: k < n_task are task-locked (HRF-convolved blocks of the BIDS
             events), the others are resting-state-like and non-stationary (mean and
             standard deviation redrawn in each segment of ``segment_length`` volumes);
             each run's mean and linear trend are removed from every source
             (``detrend_sources``; a run's offset and linear trend cannot be told apart
             from baseline and drift), then every source is standardised over all
             subjects and volumes.
    h(t)     = g(s(t)), the optional nonlinear mixing of the sources (the iVAE paper's
             injective MLP, ``mixing_layers`` layers; identity when 0), standardised.
    lin(v,t) = signal_scale * sum_k h_k(t) a_{s,k} M_{s,k}(v)      (percent signal change)
    y(v,t)   = saturation * tanh(lin / saturation)   (nonlinear voxel response)
               or lin                                 (``nonlinear=False``)
    Y(v,t)   = B(v) * (1 + (y + drift + noise) / 100)

``M_{s,k}`` are the subject's spatial maps: smooth Gaussian blobs (some bilateral, some
with a negative lobe), shifted and rescaled slightly per subject from the group template
``M_k`` (peak +1); ``a_{s,k}`` log-normal subject amplitudes; ``B`` a smooth baseline near
``baseline``; ``drift`` a slow scanner drift, per voxel
``drift_amplitude * (w_1(v) * ramp(t) + drift_curvature * w_2(v) * cos(2 pi t / T))``
with ``ramp`` going from -1/2 to +1/2 over the run and ``w_i`` smooth spatial fields
plus a global offset (unit standard deviation), so ``drift_amplitude`` is the typical
linear change over the run, in percent of baseline, and ``drift_curvature`` scales the
slow non-linear part that a linear detrend leaves; ``noise`` white Gaussian with standard
deviation ``std(y) / snr`` (``std`` over the subject's in-mask voxels and volumes).

Magnitudes. A source at one standard deviation changes its map's peak voxel by
``signal_scale`` % (2 %) before saturation at ``saturation`` % (1 %); summed over a
map that is a variance of about ``signal_scale**2 * sum(M**2)`` (%^2, 25-170 voxel-units
of ``M**2`` per map with the default blobs). The drift's residual after a linear detrend
is ``drift_amplitude * drift_curvature`` (0.1 %) per voxel, but it covers the whole brain,
so over ~4600 voxels its variance is comparable to one source's: it must stay this small
for the sources to be the leading principal components of detrended data.
How well methods recover the sources from these data (and why the drift default was
lowered) is measured in ``docs/benchmarks.md`` (section "simulated fMRI: what the
simulator's defaults give").

The truth kept for evaluation (:class:`SimulationTruth`):

- ``maps`` (k, n_voxels): the group template maps ``M_k`` (peak +1), the target for
  spatial-map matching when there is no source mixing;
- ``effect_maps`` (k, n_voxels): the mean over subjects and volumes of
  ``d y(v, t) / d s_k(t)``, the voxel effect of each *source* through the mixing and the
  voxel nonlinearity (the counterpart of a decoder-Jacobian map; with neither mixing nor
  saturation it is proportional to ``maps`` up to subject variability);
- ``timecourses`` (n_subjects, n_volumes, k): the sources ``s``; ``mixed``: ``h``;
- ``segments`` (n_subjects, n_volumes): the segment index of each volume;
- ``task_regressors``, segment means and standard deviations, the mask and affine.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``params.seed``, so a
simulation is a deterministic function of its parameters.

The pieces live in sibling modules, all re-exported here: :mod:`.params` (the
parameters), :mod:`.geometry` (grid, mask, blob maps), :mod:`.timecourses` (events,
HRF, resting sources, the mixing MLP), :mod:`.results` (the returned objects) and
:mod:`.writing` (the BIDS writer and :func:`load_truth`).
"""
from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from .coupling import couple_sources
from .geometry import blob_specs, render, smooth_field, brain_mask, mni_like_affine
from .params import CONDITION_NAMES, FMRISimParams
from .results import FMRISimulation, SimulationTruth
from .timecourses import (ar1, detrend_linear, glover_hrf, make_events, mix, mixing_matrices,
                          task_regressors)
from .writing import load_truth, write_bids

__all__ = [
    "FMRISimParams",
    "FMRISimulation",
    "SimulationTruth",
    "simulate_fmri",
    "write_bids",
    "load_truth",
    "glover_hrf",
    "brain_mask",
    "mni_like_affine",
]


def simulate_fmri(params: FMRISimParams | None = None, **overrides: Any) -> FMRISimulation:
    """Simulate a multi-subject fMRI dataset with known sources and maps.

    Parameters
    ----------
    params : FMRISimParams, optional
        Parameters (defaults when None).
    **overrides
        Fields of :class:`FMRISimParams` overriding ``params``, e.g.
        ``simulate_fmri(n_subjects=2, seed=3)``.

    Returns
    -------
    FMRISimulation
        Voxel data, events, participants and the :class:`SimulationTruth`.
    """
    p = FMRISimParams() if params is None else params
    if overrides:
        p = FMRISimParams.from_dict({**p.to_dict(), **overrides})
    p.validate()
    rng = np.random.default_rng(p.seed)
    S, K, T = p.n_subjects, p.n_components, p.n_volumes
    shape = tuple(int(s) for s in p.shape)

    # geometry
    affine = mni_like_affine(shape, p.voxel_size)
    mask = brain_mask(shape, rng)
    vox = np.argwhere(mask)
    coords = nib.affines.apply_affine(affine, vox)
    V = len(coords)
    base_field = 1.0 + 0.15 * np.clip(smooth_field(shape, 3.0, rng)[mask], -2, 2) / 2
    baseline = p.baseline * base_field

    # spatial maps: group template, then per-subject shifted / rescaled copies
    specs = blob_specs(p, mask, coords, affine, rng)
    maps = np.stack([render(b, coords) for b in specs])
    amps = np.exp(p.amplitude_sd * rng.standard_normal((S, K)))
    subject_maps = np.empty((S, K, V))
    for s in range(S):
        for k, blobs in enumerate(specs):
            moved = [(c + p.map_shift * rng.standard_normal(3), sig * np.exp(0.05 * rng.standard_normal()), a)
                     for c, sig, a in blobs]
            subject_maps[s, k] = amps[s, k] * render(moved, coords)

    # time courses
    conditions = list(CONDITION_NAMES[:p.n_task])
    names = [f"task-{c}" for c in conditions] + [f"rest-{i + 1:02d}" for i in range(K - p.n_task)]
    kinds = ["task"] * p.n_task + ["rest"] * (K - p.n_task)
    n_seg = int(np.ceil(T / p.segment_length))
    segments = np.tile(np.arange(T) // p.segment_length, (S, 1))
    seg_means = np.full((S, n_seg, K), np.nan)
    seg_stds = np.full((S, n_seg, K), np.nan)
    lo, hi = np.log(p.segment_std_range)
    shared_mean = rng.uniform(-p.segment_mean_range, p.segment_mean_range, (n_seg, K))
    shared_std = np.exp(rng.uniform(lo, hi, (n_seg, K)))
    events, regressors = [], np.zeros((S, T, p.n_task))
    sources = np.zeros((S, T, K))
    for s in range(S):
        ev = make_events(p, conditions, rng)
        events.append(ev)
        if p.n_task:
            reg = task_regressors(ev, conditions, p, rng)
            regressors[s] = reg
            sd = reg.std(axis=0, keepdims=True) + 1e-12
            sources[s, :, :p.n_task] = reg / sd + p.task_noise * np.stack(
                [ar1(T, p.rest_ar, rng) for _ in range(p.n_task)], axis=1)
        for k in range(p.n_task, K):
            if p.shared_segments:
                mu, sd = shared_mean[:, k], shared_std[:, k]
            else:
                mu = rng.uniform(-p.segment_mean_range, p.segment_mean_range, n_seg)
                sd = np.exp(rng.uniform(lo, hi, n_seg))
            seg_means[s, :, k], seg_stds[s, :, k] = mu, sd
            seg = segments[s]
            sources[s, :, k] = mu[seg] + sd[seg] * ar1(T, p.rest_ar, rng)
        sources[s] = couple_sources(sources[s], seg_means[s], seg_stds[s], segments[s], p)   # coupling_block > 0
    if p.detrend_sources:
        sources = detrend_linear(sources)
    flat = sources.reshape(S * T, K)
    sources = ((sources - flat.mean(0)) / flat.std(0)).astype(np.float64)

    # optional nonlinear mixing of the sources
    mats = mixing_matrices(K, p.mixing_layers, rng) if p.mixing_layers else []
    if mats:
        H, J = mix(sources.reshape(S * T, K), mats, p.mixing_slope)
        h_mean, h_std = H.mean(0), H.std(0)
        mixed = ((H - h_mean) / h_std).reshape(S, T, K)
        J = (J / h_std[None, None, :]).reshape(S, T, K, K)
    else:
        mixed, J = sources, None

    # voxel signals
    ramp = np.linspace(-0.5, 0.5, T)                        # linear drift, removed by detrending
    curve = np.cos(2 * np.pi * (np.arange(T) + 0.5) / T)   # one slow cycle, orthogonal to the ramp
    data, effect_sum = [], np.zeros((K, V))
    for s in range(S):
        AM = p.signal_scale * subject_maps[s]  # (K, V), amplitude included
        lin = mixed[s] @ AM  # (T, V)
        if p.nonlinear:
            th = np.tanh(lin / p.saturation)
            y, dy = p.saturation * th, 1 - th ** 2
        else:
            y, dy = lin, np.ones_like(lin)
        if J is None:
            effect_sum += AM * dy.mean(0)[None, :]
        else:
            for j in range(K):
                effect_sum[j] += np.mean(dy * (J[s, :, j, :] @ AM), axis=0)
        w_lin, w_curve = ((smooth_field(shape, 4.0, rng)[mask] + rng.standard_normal()) / np.sqrt(2)
                          for _ in range(2))
        drift = p.drift_amplitude * (np.outer(ramp, w_lin) + p.drift_curvature * np.outer(curve, w_curve))
        sigma = y.std() / p.snr
        noise = sigma * rng.standard_normal((T, V))
        data.append((baseline * (1 + (y + drift + noise) / 100)).astype(np.float32))

    subjects = [f"{i + 1:02d}" for i in range(S)]
    participants = pd.DataFrame({
        "participant_id": [f"sub-{s}" for s in subjects],
        "group": ["control" if i % 2 == 0 else "patient" for i in range(S)],
        "site": ["A" if i < (S + 1) // 2 else "B" for i in range(S)],
    })
    truth = SimulationTruth(
        maps=maps.astype(np.float32),
        subject_maps=subject_maps.astype(np.float32),
        effect_maps=(effect_sum / S).astype(np.float32),
        timecourses=sources.astype(np.float32),
        mixed=np.asarray(mixed, dtype=np.float32),
        segments=segments.astype(np.int64),
        segment_means=seg_means,
        segment_stds=seg_stds,
        task_regressors=regressors.astype(np.float32),
        mask=mask,
        affine=affine,
        tr=float(p.tr),
        component_names=names,
        component_kinds=kinds,
        conditions=conditions,
        subjects=subjects,
        params=p.to_dict(),
    )
    return FMRISimulation(params=p, data=data, events=events, participants=participants, truth=truth)
