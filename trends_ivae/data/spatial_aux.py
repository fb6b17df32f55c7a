"""u from space: the auxiliary variable of the spatial iVAE, one row per voxel.

In the spatial mode (``GroupIVAE(ica="spatial")``) the samples are voxels and the
sources are maps. The iVAE's identifying nonstationarity is then spatial: each
network's values are distributed differently from region to region (Sipilä, Nordhausen
& Taskinen 2024, arXiv 2311.08004). The builders here turn the mask into such a u:

``"segments"``
    k-means clusters of the voxels' world coordinates (mm): compact regions of about
    equal size. ``n_segments`` sets the scale; several values give a multi-scale u (one
    discrete factor per scale). The default for data without an atlas.
``"atlas"``
    The parcels of a label image the user gives (3D integer labels, or a 4D
    probabilistic atlas whose largest volume wins), on the mask's grid; voxels outside
    every parcel form one more level. Use it when a parcellation suited to the data
    exists (e.g. a functional atlas in the same space).
``"rbf"``
    Gaussian radial basis functions of position (``n_rbf`` centres by k-means of the
    coordinates, width the mean distance between neighbouring centres): a smooth,
    continuous u, as in the spatial iVAE papers.

Specs join with ``+`` (``"segments+rbf"``, ``"atlas+segments"``): discrete parts become
factors side by side; with ``rbf`` the one-hot columns and the RBF columns are one
continuous u. numpy, scikit-learn and nibabel only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..aux_variable import AuxVariable

__all__ = ["SPATIAL_AUX_KINDS", "SpatialAuxSettings", "voxel_coordinates", "segment_codes",
           "atlas_codes", "rbf_columns", "spatial_aux"]

#: the parts a spatial u spec may join with "+"
SPATIAL_AUX_KINDS = ("segments", "atlas", "rbf")


@dataclass(frozen=True)
class SpatialAuxSettings:
    """How the spatial u is built from the mask (see the module docstring).

    Parameters
    ----------
    spec : str
        Parts of :data:`SPATIAL_AUX_KINDS` joined by ``+``.
    n_segments : int or sequence of int
        Number of k-means segments; several values give one factor per scale.
    atlas : path or image, optional
        Label image for ``"atlas"``, on the mask's grid.
    n_rbf : int
        Number of radial basis functions for ``"rbf"``.
    random_state : int
        Seed of the k-means runs (the u is a deterministic function of the mask and it).
    """

    spec: str = "segments"
    n_segments: int | tuple[int, ...] = 100
    atlas: Any = None
    n_rbf: int = 32
    random_state: int = 0

    def parts(self) -> list[str]:
        """The spec's parts, checked (``ValueError`` naming an unknown one)."""
        parts = [p.strip() for p in str(self.spec).split("+") if p.strip()]
        unknown = [p for p in parts if p not in SPATIAL_AUX_KINDS]
        if not parts or unknown:
            raise ValueError(f"spatial u spec {self.spec!r}: unknown part(s) {unknown}; use "
                             f"{', '.join(SPATIAL_AUX_KINDS)} joined by '+'")
        if "atlas" in parts and self.atlas is None:
            raise ValueError("spatial u 'atlas' needs an atlas image (--aux-atlas / aux_atlas=)")
        return parts

    def scales(self) -> list[int]:
        """``n_segments`` as a list of positive ints."""
        values = [self.n_segments] if np.isscalar(self.n_segments) else list(self.n_segments)
        scales = [int(v) for v in values]
        if not scales or min(scales) < 2:
            raise ValueError(f"n_segments must be integers >= 2, got {self.n_segments!r}")
        return scales


def voxel_coordinates(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the mask's voxels, in the masker's (C) order: (n_voxels, 3)."""
    ijk = np.argwhere(np.asarray(mask) > 0)
    return (ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]).astype(np.float64)


def segment_codes(coords: np.ndarray, n_segments: int, random_state: int = 0) -> np.ndarray:
    """k-means segments of the coordinates: (n_voxels,) int64 codes in 0 .. n_segments - 1.

    Segments are renumbered by their centre's position (x, then y, then z), so the codes
    do not depend on k-means' labelling.
    """
    from sklearn.cluster import KMeans

    n = coords.shape[0]
    if n_segments > n:
        raise ValueError(f"n_segments={n_segments} is larger than the {n} voxels in the mask")
    km = KMeans(n_clusters=int(n_segments), n_init=1, random_state=random_state).fit(coords)
    order = np.lexsort(km.cluster_centers_.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[km.labels_].astype(np.int64)


def atlas_codes(atlas: Any, mask_img: Any) -> tuple[np.ndarray, list[str]]:
    """The atlas parcel of each mask voxel: codes (n_voxels,) and the level names.

    Parameters
    ----------
    atlas : path or image
        3D integer labels, or a 4D probabilistic atlas (the volume with the largest value
        wins; 0 everywhere is outside). Must be on the mask's grid (shape and affine).
    mask_img : image

    Raises
    ------
    ValueError
        The atlas is on another grid (naming it), or has fewer than two parcels in the mask.
    """
    import nibabel as nib

    name = str(atlas) if isinstance(atlas, (str, Path)) else "the atlas image"
    img = nib.load(str(atlas)) if isinstance(atlas, (str, Path)) else atlas
    mask = np.asarray(mask_img.get_fdata()) > 0
    if img.shape[:3] != mask.shape or not np.allclose(img.affine, mask_img.affine, atol=1e-3):
        raise ValueError(f"{name}: the atlas is on another grid ({img.shape[:3]}, affine differs or not) "
                         f"than the mask ({mask.shape}); resample it to the data first "
                         "(nilearn.image.resample_to_img(atlas, mask, interpolation='nearest'))")
    data = np.asarray(img.dataobj)
    if data.ndim == 4:
        inside = data[mask]
        labels = np.where(inside.max(axis=1) > 0, inside.argmax(axis=1) + 1, 0)
    else:
        labels = np.rint(data[mask]).astype(np.int64)
    values, codes = np.unique(labels, return_inverse=True)
    if values.size < 2:
        raise ValueError(f"{name}: fewer than two parcels inside the mask ({values.tolist()})")
    names = ["outside" if v == 0 else str(int(v)) for v in values]
    return codes.astype(np.int64), names


def rbf_columns(coords: np.ndarray, n_rbf: int, random_state: int = 0) -> np.ndarray:
    """Gaussian radial basis functions of position: (n_voxels, n_rbf) float32 in [0, 1].

    Centres by k-means of the coordinates; the width is the mean distance from each
    centre to its nearest other centre.
    """
    from scipy.spatial.distance import cdist

    if n_rbf < 2 or n_rbf > coords.shape[0]:
        raise ValueError(f"n_rbf={n_rbf} must be between 2 and the {coords.shape[0]} voxels in the mask")
    codes = segment_codes(coords, n_rbf, random_state)
    centres = np.stack([coords[codes == j].mean(0) for j in range(n_rbf)])
    between = cdist(centres, centres)
    np.fill_diagonal(between, np.inf)
    width = float(between.min(axis=1).mean())
    return np.exp(-0.5 * (cdist(coords, centres) / width) ** 2).astype(np.float32)


def spatial_aux(settings: SpatialAuxSettings, mask_img: Any) -> AuxVariable:
    """The spatial u of every mask voxel (in masker order) for ``settings``.

    Returns
    -------
    AuxVariable
        Discrete (one factor), factors (several) or continuous (with ``rbf``), its
        ``spec`` the settings' spec.
    """
    parts = settings.parts()
    mask = np.asarray(mask_img.get_fdata()) > 0
    coords = voxel_coordinates(mask, mask_img.affine)
    codes, factors = [], []
    for part in parts:
        if part == "segments":
            for k in settings.scales():
                codes.append(segment_codes(coords, k, settings.random_state))
                factors.append({"name": f"segments{k}", "levels": [str(i) for i in range(k)]})
        elif part == "atlas":
            c, names = atlas_codes(settings.atlas, mask_img)
            codes.append(c)
            factors.append({"name": "atlas", "levels": names})
    if "rbf" in parts:
        rbf = rbf_columns(coords, settings.n_rbf, settings.random_state)
        names = [f"rbf{j}" for j in range(rbf.shape[1])]
        if codes:
            factor_codes = np.stack(codes, axis=1)
            onehot = AuxVariable.from_factors(factor_codes, factors).dense()
            return AuxVariable.continuous(np.hstack([onehot, rbf]),
                                          AuxVariable.from_factors(factor_codes, factors).names + names,
                                          spec=settings.spec)
        return AuxVariable.continuous(rbf, names, spec=settings.spec)
    if len(codes) == 1:
        return AuxVariable.discrete(codes[0], [f"{factors[0]['name']}={lv}" for lv in factors[0]["levels"]],
                                    factors=factors, factor_codes=codes[0][:, None], spec=settings.spec)
    return AuxVariable.from_factors(np.stack(codes, axis=1), factors, spec=settings.spec)


def describe_settings(settings: SpatialAuxSettings) -> dict:
    """The settings as a JSON-ready record (the atlas as its path, or ``"image"``)."""
    atlas = settings.atlas
    if atlas is not None and not isinstance(atlas, (str, Path)):
        atlas = "image"
    scales: Sequence[int] = settings.scales()
    return {"spec": settings.spec, "n_segments": list(scales), "atlas": None if atlas is None else str(atlas),
            "n_rbf": int(settings.n_rbf), "random_state": int(settings.random_state)}
