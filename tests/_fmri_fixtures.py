"""Tiny synthetic 4D NIfTIs for the io tests (seeded; no dependency on trends_ivae.simulate).

A run is a brain-like ellipsoid of bright voxels (baseline ~1000) over a dark
background, carrying a few low-rank spatial sources whose time courses are shared
across subjects, plus white noise.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (12, 12, 8)


def brain_mask(shape=SHAPE) -> np.ndarray:
    """Ellipsoid filling most of the box."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2.0
    radii = np.array(shape) / 2.0 * 0.8
    dist = sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    return dist <= 1.0


def make_data(n_volumes=40, shape=SHAPE, n_sources=3, seed=0, noise=1.0, subject_seed=None):
    """(data 4-D float32, mask 3-D bool, spatial maps (n_sources, n_voxels))."""
    rng = np.random.default_rng(seed)
    mask = brain_mask(shape)
    nvox = int(mask.sum())
    maps = rng.normal(size=(n_sources, nvox)) * 5.0
    srng = np.random.default_rng(seed + 1000 if subject_seed is None else subject_seed)
    tc = np.cumsum(srng.normal(size=(n_volumes, n_sources)), axis=0)
    tc -= tc.mean(0)
    series = 1000.0 + tc @ maps + srng.normal(scale=noise, size=(n_volumes, nvox))
    data = np.zeros(shape + (n_volumes,), dtype=np.float32)
    data[mask] = series.T
    data[~mask] = srng.normal(scale=1.0, size=(int((~mask).sum()), n_volumes)) + 10.0
    return data, mask, maps


def affine(zoom=3.0):
    aff = np.diag([zoom, zoom, zoom, 1.0])
    aff[:3, 3] = -10.0
    return aff


def write_run(path, *, n_volumes=40, tr=2.0, seed=0, shape=SHAPE, data=None, zoom=3.0,
              header_tr=True) -> Path:
    """Write a 4-D run; returns its path. ``header_tr=False`` writes pixdim[4] = 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data, _, _ = make_data(n_volumes, shape=shape, seed=0, subject_seed=seed)
    img = nib.Nifti1Image(data.astype(np.float32), affine(zoom))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((zoom, zoom, zoom, tr if header_tr else 0.0))
    nib.save(img, path)
    return path


def write_mask(path, shape=SHAPE, zoom=3.0) -> Path:
    path = Path(path)
    nib.save(nib.Nifti1Image(brain_mask(shape).astype(np.uint8), affine(zoom)), path)
    return path


def write_events(path, rows) -> Path:
    """rows: list of (onset, duration, trial_type)."""
    path = Path(path)
    pd.DataFrame(rows, columns=["onset", "duration", "trial_type"]).to_csv(path, sep="\t", index=False)
    return path


BLOCK_EVENTS = [(4.0, 16.0, "face"), (30.0, 16.0, "house"), (56.0, 10.0, "face")]


def make_bids(root, *, n_subjects=2, n_runs=2, n_volumes=40, tr=2.0, task="faces",
              sessions=None, participants=True) -> Path:
    """A tiny BIDS dataset with events, sidecars and participants.tsv."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"}))
    rows = []
    for s in range(1, n_subjects + 1):
        sub = f"{s:02d}"
        rows.append({"participant_id": f"sub-{sub}", "group": "patient" if s % 2 else "control",
                     "site": "A"})
        for ses in (sessions or [None]):
            func = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "func"
            for r in range(1, n_runs + 1):
                stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + f"_task-{task}_run-{r}"
                write_run(func / f"{stem}_bold.nii.gz", n_volumes=n_volumes, tr=tr,
                          seed=100 * s + r, header_tr=False)
                (func / f"{stem}_bold.json").write_text(json.dumps({"RepetitionTime": tr}))
                write_events(func / f"{stem}_events.tsv", BLOCK_EVENTS)
    if participants:
        pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root
