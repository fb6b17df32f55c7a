"""The MELODIC folder's files beyond the maps and time courses: what the model can produce honestly.

:func:`~trends_ivae.export.layouts.write_melodic` writes ``melodic_IC``, ``melodic_mix``,
``melodic_FTmix``, ``melodic_ICstats``, ``mask`` and ``mean``; :func:`write_melodic_extras`
adds, into the same staged folder::

    OUT/melodic_unmix            the unmixing: (k, d) plain text, one row per component: the
                                 least-squares linear map from the reduced data (the MIGP
                                 scores x of prepared.h5, d columns) to the time courses,
                                 melodic_mix ~= x @ melodic_unmix.T; for the nonlinear model
                                 it is the encoder's best linear approximation (its R^2 is in
                                 log.txt)
    OUT/melodic_pca.nii.gz       the group PCA maps: the MIGP basis, one volume per reduced
                                 dimension (d volumes)
    OUT/eigenvalues_percent      one row: the cumulative fraction (0 to 1) of the cleaned data's
                                 variance in the first 1 .. d MIGP dimensions, as MELODIC's
    OUT/log.txt                  what ran: the process, the version, the reduction, the model,
                                 the training (early stopping), the nonlinearity test, and what
                                 each file is
    OUT/stats/thresh_zstatN.nii.gz
                                 component N's z-map (N from 1) where |z| > THRESHOLD (2.3),
                                 0 elsewhere

The z-maps are regression maps z-scored across voxels, so the threshold is descriptive
(about 2 % of the voxels of a Gaussian map), not MELODIC's mixture-model inference:
``stats/probmap_N`` and ``stats/MMstats_N`` (the Gaussian/Gamma mixture fit) are not
written, nor ``melodic_Tmodes`` (tensor ICA's subject modes), ``melodic_white`` /
``melodic_dewhite`` (MELODIC's whitening, which a temporal iVAE does not have) or
``melodic_oIC``. numpy and nibabel only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .derivatives import unmask
from .fit_outputs import FitOutputs

__all__ = ["THRESHOLD", "write_melodic_extras", "check_melodic_extras", "cumulative_variance", "melodic_log"]

#: |z| above which a voxel is kept in ``stats/thresh_zstatN.nii.gz``
THRESHOLD = 2.3


def cumulative_variance(fractions: Any) -> np.ndarray:
    """``eigenvalues_percent``: the running sum of each PCA dimension's variance fraction.

    Parameters
    ----------
    fractions : array-like of shape (d,)
        Each dimension's fraction of the cleaned data's variance (NaN when unknown: then
        the fractions of the reduced data's variance, which end at 1).

    Returns
    -------
    ndarray of shape (d,)
    """
    f = np.asarray(fractions, dtype=float)
    if f.size == 0:
        return f
    if not np.all(np.isfinite(f)):
        raise ValueError("the PCA variance fractions are not all finite")
    return np.cumsum(f)


def melodic_log(outputs: FitOutputs, unmix_r2: float | None) -> str:
    """The text of ``log.txt`` (``outputs.log`` followed by the files' descriptions)."""
    lines = [outputs.log.rstrip() if outputs.log else "trends-ivae fit (no record of the call was given)", ""]
    k = np.asarray(outputs.group_maps).shape[0]
    lines.append("files")
    lines.append(f"  melodic_IC.nii.gz       {k} group z-maps (regression maps z-scored across voxels)")
    lines.append("  melodic_mix             time courses (posterior means), runs concatenated in the run table's order")
    lines.append("  melodic_FTmix           their power spectra (mean periodogram over runs)")
    lines.append("  melodic_ICstats         percent of the explained variance, percent of the total variance")
    if outputs.unmixing is not None:
        fit = f"; R^2 of melodic_mix from the reduced data: {unmix_r2:.4f}" if unmix_r2 is not None else ""
        lines.append(f"  melodic_unmix           ({k}, {np.asarray(outputs.unmixing).shape[1]}) least-squares unmixing "
                     f"of the reduced data (prepared.h5 x) into the time courses{fit}")
    if outputs.pca_maps is not None:
        lines.append(f"  melodic_pca.nii.gz      the MIGP basis ({np.asarray(outputs.pca_maps).shape[0]} maps)")
    if outputs.pca_variance is not None:
        lines.append("  eigenvalues_percent     cumulative fraction of the cleaned data's variance per MIGP dimension")
    lines.append(f"  stats/thresh_zstatN     component N's z-map where |z| > {THRESHOLD} (descriptive: the maps are "
                 "z-scored across voxels; no mixture model)")
    lines.append("  not written             melodic_Tmodes, melodic_white, melodic_dewhite, melodic_oIC, "
                 "stats/probmap_N, stats/MMstats_N (see docs/pipelines.md)")
    return "\n".join(lines) + "\n"


def _unmix_r2(outputs: FitOutputs) -> float | None:
    """R^2 of the concatenated time courses from the reduced data through ``outputs.unmixing``."""
    if outputs.unmixing is None or outputs.reduced_data is None:
        return None
    x = np.asarray(outputs.reduced_data, dtype=np.float64)
    z = np.concatenate([np.asarray(t, np.float64) for t in outputs.timecourses], axis=0)
    resid = z - x @ np.asarray(outputs.unmixing, np.float64).T
    total = float(((z - z.mean(0)) ** 2).sum())
    return 1.0 - float((resid ** 2).sum()) / total if total > 0 else None


def check_melodic_extras(outputs: FitOutputs, group_maps: np.ndarray) -> None:
    """Check the unmixing, the PCA maps and their variance against the maps (ValueError)."""
    k, n_vox = np.asarray(group_maps).shape
    d = None
    if outputs.unmixing is not None:
        unmix = np.atleast_2d(np.asarray(outputs.unmixing))
        if unmix.ndim != 2 or unmix.shape[0] != k:
            raise ValueError(f"the unmixing must be (k={k}, d), one row per component, got {unmix.shape}")
        d = unmix.shape[1]
    if outputs.pca_maps is not None:
        shape = np.shape(outputs.pca_maps)
        if len(shape) != 2 or shape[1] != n_vox or (d is not None and shape[0] != d):
            raise ValueError(f"the PCA maps must be ({d or 'd'}, {n_vox}) for this mask and unmixing, got {shape}")
        d = shape[0]
    if outputs.pca_variance is not None:
        n = len(outputs.pca_variance)
        if d is not None and n != d:
            raise ValueError(f"{n} PCA variance fractions for {d} PCA dimensions")
        cumulative_variance(outputs.pca_variance)


def write_melodic_extras(root: Path, outputs: FitOutputs, mimg: Any, group_maps: np.ndarray) -> list[Path]:
    """Write the files of the module docstring into ``root`` (a folder being staged).

    Parameters
    ----------
    root : Path
        The MELODIC folder being written.
    outputs : FitOutputs
        ``unmixing``, ``pca_maps`` and ``pca_variance`` are written when given.
    mimg : nibabel image
        The mask, in the input's space (as for ``melodic_IC``).
    group_maps : ndarray of shape (k, n_voxels)
        The group z-maps (checked against the mask).

    Returns
    -------
    list of Path
        The files written.
    """
    check_melodic_extras(outputs, group_maps)
    written = []
    if outputs.unmixing is not None:
        written.append(root / "melodic_unmix")
        np.savetxt(written[-1], np.atleast_2d(np.asarray(outputs.unmixing, dtype=float)), fmt="%.8e", delimiter="  ")
    if outputs.pca_maps is not None:
        written.append(root / "melodic_pca.nii.gz")
        nib.save(unmask(np.asarray(outputs.pca_maps, dtype=np.float32), mimg,
                        descrip="trends_ivae MIGP basis (group PCA maps)"), written[-1])
    if outputs.pca_variance is not None:
        written.append(root / "eigenvalues_percent")
        np.savetxt(written[-1], np.atleast_2d(cumulative_variance(outputs.pca_variance)), fmt="%.8f",
                   delimiter="  ")
    stats = root / "stats"
    stats.mkdir(exist_ok=True)
    for i, zmap in enumerate(np.asarray(group_maps, dtype=np.float32)):
        kept = np.where(np.abs(zmap) > THRESHOLD, zmap, 0.0).astype(np.float32)
        written.append(stats / f"thresh_zstat{i + 1}.nii.gz")
        nib.save(unmask(kept, mimg, intent="z score",
                        descrip=f"trends_ivae ic{i + 1:02d} |z|>{THRESHOLD}"), written[-1])
    written.append(root / "log.txt")
    written[-1].write_text(melodic_log(outputs, _unmix_r2(outputs)))
    return written
