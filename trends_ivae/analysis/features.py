"""The features that tell a network from an artifact, per component.

Spatial, on the group z-map (``|z| > threshold`` is "in the map", or ``|z|`` above half
its peak when the peak is under twice the threshold: a broad map such as a rim reaches no
high z):

``gm_share``, ``wm_share``, ``csf_share``
    Share of the map's suprathreshold weight (sum of ``|z|``) in grey matter, white
    matter and CSF, from nilearn's shipped MNI152 tissue templates
    (:func:`nilearn.datasets.load_mni152_gm_template`, ``..._wm_template``; CSF is the
    MNI152 brain mask's remainder, plus the voxels outside it), each resampled to the
    maps' grid; ``n/a`` unless the maps are in MNI space.
``edge_share``
    Share of that weight within two voxels of the mask's boundary (eyes, motion rims).
``n_clusters``, ``largest_cluster``
    Face-connected clusters of suprathreshold voxels (of 3 voxels or more), and the
    share of the suprathreshold voxels in the largest.
``kurtosis``
    Excess kurtosis of the map over the mask (networks are sparse: high).

Temporal, on the per-run time courses (Welch spectra, averaged over runs; needs the TR):

``falff``
    Power in 0.01-0.10 Hz over the power in 0.01 Hz to Nyquist (Zou et al. 2008).
``dynamic_range``
    Peak minus lowest power right of the peak, on the spectrum normalised to sum 1
    (GIFT's spectral dynamic range).
``high_freq_share``
    Power above 0.15 Hz over the power above 0.01 Hz.
``confound_r``
    Largest absolute correlation of the time course with a confound column, when
    confounds are given (``n/a`` otherwise).

fALFF and the dynamic range are computed here with :func:`scipy.signal.welch` (a private
copy of what the spectral analysis computes; one definition is meant in the end).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["FEATURE_COLUMNS", "component_features", "spatial_features", "temporal_features", "tissue_shares"]

FEATURE_COLUMNS = {
    "name": "Component name",
    "gm_share": "Share of the suprathreshold map weight (sum of |z|, |z| > threshold) in grey matter "
                "(nilearn's MNI152 template); n/a outside MNI space",
    "wm_share": "The same in white matter",
    "csf_share": "The same in CSF (the MNI152 brain mask's remainder, and outside it)",
    "edge_share": "Share of the suprathreshold weight within two voxels of the mask's boundary",
    "n_clusters": "Face-connected suprathreshold clusters of 3 voxels or more",
    "largest_cluster": "Share of the suprathreshold voxels in the largest cluster",
    "kurtosis": "Excess kurtosis of the map over the mask",
    "falff": "Power in 0.01-0.10 Hz over the power from 0.01 Hz to Nyquist (Welch, mean over runs)",
    "dynamic_range": "Peak minus lowest power right of the peak, spectrum normalised to sum 1",
    "high_freq_share": "Power above 0.15 Hz over the power above 0.01 Hz",
    "confound_r": "Largest |correlation| of the time course with a confound column (n/a without confounds)",
}


def tissue_shares(maps_img: nib.Nifti1Image, mask_img: nib.Nifti1Image) -> np.ndarray:
    """Grey matter, white matter and CSF probability (3, n_voxels) in the mask, from
    nilearn's MNI152 templates resampled to the mask's grid (rows sum to 1)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template
    from nilearn.image import resample_to_img

    mask = np.asarray(mask_img.dataobj) > 0

    def on_grid(img):
        with warnings.catch_warnings():   # the shipped templates are stored as integers
            warnings.simplefilter("ignore", UserWarning)
            out = resample_to_img(img, mask_img, interpolation="continuous", force_resample=True, copy_header=True)
        return np.clip(np.nan_to_num(np.asarray(out.dataobj)[mask].astype(float)), 0, 1)

    gm, wm = on_grid(load_mni152_gm_template()), on_grid(load_mni152_wm_template())
    brain = on_grid(load_mni152_brain_mask())
    total = np.maximum(gm + wm, 1e-12)
    scale = np.where(gm + wm > brain, brain / total, 1.0)
    gm, wm = gm * scale, wm * scale
    return np.stack([gm, wm, np.clip(1 - gm - wm, 0, 1)])


def _boundary(mask: np.ndarray, width: int = 2) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(mask, iterations=width, border_value=0) if min(mask.shape) > 2 * width else \
        np.zeros_like(mask)
    return mask & ~inner


def spatial_features(maps: np.ndarray, mask: np.ndarray, tissue: np.ndarray | None = None,
                     threshold: float = 2.0) -> pd.DataFrame:
    """The spatial features (see the module's docstring) of in-mask maps (k, n_voxels)."""
    from scipy.ndimage import label
    from scipy.stats import kurtosis

    mask = np.asarray(mask, bool)
    edge = _boundary(mask)[mask]
    rows = []
    for m in np.asarray(maps, float):
        z = (m - m.mean()) / (m.std() or 1.0)
        cut = min(threshold, 0.5 * np.abs(z).max())     # a broad map (a rim) has no voxel at |z| > 2
        w = np.where(np.abs(z) > cut, np.abs(z), 0.0)
        total = w.sum() or np.nan
        vol = np.zeros(mask.shape, bool)
        vol[mask] = w > 0
        lab, n = label(vol)
        sizes = np.bincount(lab.ravel())[1:]
        big = sizes[sizes >= 3]
        row = {"edge_share": float(w[edge].sum() / total), "n_clusters": int(len(big)),
               "largest_cluster": float(sizes.max() / sizes.sum()) if len(sizes) else np.nan,
               "kurtosis": float(kurtosis(z))}
        if tissue is not None:
            row.update({f"{t}_share": float(tissue[i] @ w / total) for i, t in enumerate(("gm", "wm", "csf"))})
        else:
            row.update({"gm_share": np.nan, "wm_share": np.nan, "csf_share": np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def _spectrum(x: np.ndarray, tr: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import welch

    n = len(x)
    f, p = welch(x - x.mean(axis=0), fs=1.0 / tr, nperseg=min(n, 64), axis=0, detrend="constant")
    return f, p


def temporal_features(runs: Sequence[tuple[np.ndarray, float]], confounds: Sequence[np.ndarray] | None = None
                      ) -> pd.DataFrame:
    """Temporal features of each component, averaged over ``runs`` ((n_volumes, k), TR)."""
    per_run = []
    for i, (x, tr) in enumerate(runs):
        x = np.asarray(x, float)
        f, p = _spectrum(x, tr)
        band = f >= 0.01
        total = p[band].sum(0) + 1e-300
        low = p[(f >= 0.01) & (f <= 0.10)].sum(0) / total
        high = p[f > 0.15].sum(0) / total
        pn = p[band] / total
        peak = pn.argmax(0)
        dyn = np.array([pn[peak[j], j] - pn[peak[j]:, j].min() for j in range(x.shape[1])])
        conf = np.full(x.shape[1], np.nan)
        if confounds is not None and confounds[i] is not None and len(confounds[i]) == len(x):
            c = np.asarray(confounds[i], float)
            c = (c - c.mean(0)) / (c.std(0) + 1e-12)
            xz = (x - x.mean(0)) / (x.std(0) + 1e-12)
            conf = np.abs(xz.T @ c / len(x)).max(axis=1)
        per_run.append(np.stack([low, dyn, high, conf]))
    with warnings.catch_warnings():   # a feature n/a in every run stays n/a
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.stack(per_run), axis=0) if per_run else np.full((4, 0), np.nan)
    return pd.DataFrame({"falff": mean[0], "dynamic_range": mean[1], "high_freq_share": mean[2],
                         "confound_r": mean[3]})


def component_features(maps_img: Any, mask_img: nib.Nifti1Image, runs: Sequence[tuple], *,
                       names: Sequence[str], mni: bool = False, threshold: float = 2.0,
                       confounds: Sequence[np.ndarray] | None = None) -> pd.DataFrame:
    """Every feature of every component (the columns of :data:`FEATURE_COLUMNS`).

    Parameters
    ----------
    maps_img : Nifti1Image
        The group maps (4-D).
    mask_img : Nifti1Image
    runs : sequence of tuple
        ``(subject, stem, tr, timecourses (n_volumes, k))`` per run; runs without a TR
        give no temporal features.
    names : sequence of str
    mni : bool, default=False
        Whether the maps are in MNI space (the tissue shares need it).
    threshold : float, default=2.0
    confounds : sequence of ndarray, optional
        Per run, (n_volumes, n_confounds).
    """
    mask = np.asarray(mask_img.dataobj) > 0
    data = np.asarray(maps_img.dataobj)
    maps = (data[..., None] if data.ndim == 3 else data)[mask].T
    tissue = tissue_shares(maps_img, mask_img) if mni else None
    spatial = spatial_features(maps, mask, tissue, threshold)
    timed = [(r[3], float(r[2])) for r in runs if r[2]]
    temporal = temporal_features(timed, confounds) if timed else \
        pd.DataFrame(np.nan, index=range(len(names)), columns=["falff", "dynamic_range", "high_freq_share", "confound_r"])
    out = pd.concat([spatial, temporal], axis=1)
    out.insert(0, "name", list(names))
    return out[list(FEATURE_COLUMNS)]
