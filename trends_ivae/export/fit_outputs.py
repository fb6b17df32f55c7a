"""A fit's results as arrays: what every layout writer takes (:class:`FitOutputs`).

The workflow builds one from a fitted ``GroupIVAE`` and its prepared data
(:func:`trends_ivae.group.fit_folder.fit_outputs`); the writers of
:mod:`~trends_ivae.export.derivatives` and :mod:`~trends_ivae.export.layouts` read it.
Plain numpy, images and dicts: nothing here imports torch, and nothing is checked until a
writer checks it against the mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["FitOutputs"]


@dataclass(frozen=True)
class FitOutputs:
    """The maps, time courses and numbers of one fit, as the export writes them.

    Component ``i`` is the same component, with the same sign, in every array.

    Attributes
    ----------
    mask_img : nibabel image or path
        3-D mask (voxels > 0) on the input grid; every map lives in its voxels.
    group_maps : ndarray of shape (n_components, n_voxels)
        Group z-maps (``GroupIVAE.components_``).
    timecourses : sequence of ndarray of shape (n_volumes, n_components), default=()
        One per run, in the order of ``runs`` (``GroupIVAE.timecourses_``).
    runs : sequence of dict, default=()
        One per input run: the input's file (``path`` or ``stem``, a BIDS name whose
        entities are kept) and/or entities (``sub`` required, ``ses``, ``task``, ``acq``,
        ``run``, ``space`` ...), and optionally ``tr`` (seconds).
    subject_maps : sequence of ndarray of shape (n_components, n_voxels) or None, default=None
        One per run (a subject's maps repeat for each of its runs; a lazy sequence is read
        one map at a time); None, or None entries: no subject maps.
    effect_maps : ndarray of shape (n_components, n_voxels), optional
        Decoder-effect maps (``GroupIVAE.effects_``).
    params : mapping, optional
        The fit's parameters, stored in the group sidecars (JSON-serialisable; numpy values
        are converted).
    explained_variance : sequence of float, optional
        Each component's share of the cleaned data's variance (fractions in [0, 1],
        ``GroupIVAE.explained_variance_``).
    total_explained_variance : float, optional
        The fraction all components explain together (R^2).
    stability : sequence of float, optional
        Each component's stability index across restarts (``GroupIVAE.stability_``; NaN
        with one restart).
    nonlinearity_test : mapping, optional
        The held-out nonlinearity test (``NonlinearityTest.to_dict()``).
    source : str, optional
        The input dataset (``SourceDatasets`` of ``dataset_description.json``).
    """

    mask_img: Any
    group_maps: np.ndarray
    timecourses: Sequence[np.ndarray] = ()
    runs: Sequence[Mapping[str, Any]] = ()
    subject_maps: Sequence[np.ndarray | None] | None = None
    effect_maps: np.ndarray | None = None
    params: Mapping[str, Any] | None = None
    explained_variance: Sequence[float] | None = None
    total_explained_variance: float | None = None
    stability: Sequence[float] | None = None
    nonlinearity_test: Mapping[str, Any] | None = None
    source: str | None = None

    @property
    def tr(self) -> float | None:
        """The first run's repetition time (seconds), if it has one."""
        return float(self.runs[0]["tr"]) if self.runs and self.runs[0].get("tr") else None

    @property
    def paths(self) -> list:
        """The runs' input files (those that have one), in order."""
        return [r.get("path") for r in self.runs if r.get("path")]
