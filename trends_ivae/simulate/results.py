"""What :func:`trends_ivae.simulate.fmri.simulate_fmri` returns: the data with their truth."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from .params import FMRISimParams

__all__ = ["SimulationTruth", "FMRISimulation"]


@dataclass
class SimulationTruth:
    """Ground truth of a simulation (see the module docstring for the definitions).

    Attributes
    ----------
    maps : ndarray (n_components, n_voxels)
        Group template maps (peak +1).
    subject_maps : ndarray (n_subjects, n_components, n_voxels)
        Each subject's maps, amplitude included (``a_{s,k} M_{s,k}``).
    effect_maps : ndarray (n_components, n_voxels)
        Mean voxel effect (percent signal change per unit source) of each source.
    timecourses : ndarray (n_subjects, n_volumes, n_components)
        The sources.
    mixed : ndarray (n_subjects, n_volumes, n_components)
        The sources after the mixing MLP (equal to ``timecourses`` without mixing).
    segments : ndarray (n_subjects, n_volumes) int
        Segment index of each volume (0 .. n_segments - 1).
    segment_means, segment_stds : ndarray (n_subjects, n_segments, n_components)
        Segment parameters of the resting sources before detrending and standardisation
        (NaN for task sources).
    task_regressors : ndarray (n_subjects, n_volumes, n_task)
        HRF-convolved block regressors, one per condition.
    mask : ndarray bool, 3-D
    affine : ndarray (4, 4)
    tr : float
    component_names : list of str
        ``task-<condition>`` then ``rest-NN``.
    component_kinds : list of str
        ``"task"`` or ``"rest"``.
    conditions : list of str
        Task condition names (the ``trial_type`` values), in component order.
    subjects : list of str
        Subject labels (without ``sub-``).
    params : dict
        The :class:`FMRISimParams` as a dictionary.
    """

    maps: np.ndarray
    subject_maps: np.ndarray
    effect_maps: np.ndarray
    timecourses: np.ndarray
    mixed: np.ndarray
    segments: np.ndarray
    segment_means: np.ndarray
    segment_stds: np.ndarray
    task_regressors: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    tr: float
    component_names: list[str]
    component_kinds: list[str]
    conditions: list[str]
    subjects: list[str]
    params: dict[str, Any]

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())

    def mask_img(self) -> nib.Nifti1Image:
        """The mask as a uint8 NIfTI image."""
        return _nifti(self.mask.astype(np.uint8), self.affine)

    def maps_img(self, which: str = "maps") -> nib.Nifti1Image:
        """``maps`` or ``effect_maps`` as a 4-D float32 image (one volume per component)."""
        return _nifti(_unmask(getattr(self, which), self.mask), self.affine)


@dataclass
class FMRISimulation:
    """Result of :func:`simulate_fmri`.

    Attributes
    ----------
    params : FMRISimParams
    data : list of ndarray (n_volumes, n_voxels) float32
        Each subject's in-mask voxel intensities (zero outside the mask in the images).
    events : list of pandas.DataFrame
        Each subject's events (``onset``, ``duration``, ``trial_type``).
    participants : pandas.DataFrame
        ``participant_id``, ``group``, ``site``.
    truth : SimulationTruth
    """

    params: FMRISimParams
    data: list[np.ndarray]
    events: list[pd.DataFrame]
    participants: pd.DataFrame
    truth: SimulationTruth

    @property
    def mask(self) -> np.ndarray:
        return self.truth.mask

    @property
    def affine(self) -> np.ndarray:
        return self.truth.affine

    @property
    def subjects(self) -> list[str]:
        return self.truth.subjects

    def img(self, index: int, dtype: str = "float32") -> nib.Nifti1Image:
        """Subject ``index``'s 4-D BOLD image (TR in the header), ``float32`` or ``int16``
        (rounded intensities, no scaling)."""
        data = _unmask(self.data[index], self.mask)  # (x, y, z, t)
        if dtype == "int16":
            data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
        elif dtype == "float32":
            data = data.astype(np.float32)
        else:
            raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
        return _nifti(data, self.affine, tr=self.params.tr)

    @property
    def imgs(self) -> list[nib.Nifti1Image]:
        """All subjects' images (float32)."""
        return [self.img(i) for i in range(len(self.data))]


def _unmask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, n_voxels) -> (x, y, z, n) float32; (n_voxels,) -> (x, y, z)."""
    values = np.asarray(values)
    if values.ndim == 1:
        out = np.zeros(mask.shape, np.float32)
        out[mask] = values
        return out
    out = np.zeros(mask.shape + (values.shape[0],), np.float32)
    out[mask] = values.T
    return out


def _nifti(data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    if tr is not None and data.ndim == 4:
        img.header.set_zooms(tuple(np.sqrt((affine[:3, :3] ** 2).sum(0))) + (float(tr),))
        img.header.set_xyzt_units("mm", "sec")
    else:
        img.header.set_xyzt_units("mm")
    return img
