"""Match component maps with template maps: spatial correlation, best match, one-to-one.

:func:`load_templates` reads 4-D template maps (e.g. NeuroMark's), a 4-D binary ROI file
with a network list (GIFT's ``RSN.nii`` + ``RSN.txt``: each network the union of its
ROIs) or a 3-D label atlas, with its key (:mod:`trends_ivae.analysis.keys`), and resamples
them to the maps' grid with :func:`nilearn.image.resample_to_img` (continuous
interpolation for maps, nearest for atlas labels). :func:`match_templates` correlates
every component map with every template over the mask (Pearson), keeps each component's
best template, and assigns templates to components one-to-one with
:func:`scipy.optimize.linear_sum_assignment` (the Hungarian method, maximising the summed
correlation). Matching uses the absolute correlation: a component's sign is arbitrary,
and flipping it peak-positive fails for broad maps (a diffuse source's largest |z| can be
on its negative side); the tables keep the signed value, so a negative ``network_r``
says the component is the template upside down. The goodness of fit of each template is
the correlation of its one-to-one component and of its best component; a template is
``found`` when its one-to-one |correlation| reaches ``min_r``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from .keys import TemplateKey, TemplateKeyError, read_key

__all__ = ["Templates", "TemplateMatch", "TemplateError", "load_templates", "match_templates",
           "domain_order", "component_maps", "MIN_COVERAGE"]

#: the least share of the maps' mask that the template's field of view must cover
MIN_COVERAGE = 0.5


class TemplateError(ValueError):
    """Templates that cannot be used with these maps (the message names the file and why)."""


@dataclass
class Templates:
    """Templates on the maps' grid.

    Attributes
    ----------
    data : ndarray (n_templates, n_voxels)
        The in-mask values of each template.
    names, domains : list of str
    source : str
        The template file.
    coverage : float
        The share of the mask's voxels inside the template file's field of view.
    """

    data: np.ndarray
    names: list
    domains: list
    source: str
    coverage: float


def _key_for(key: TemplateKey | None, labels: list[int], path: Path, what: str) -> TemplateKey:
    """The key, checked against the volumes (or label values) ``labels`` of the image."""
    if key is None:
        names = [f"template{v:02d}" if what == "volume" else f"label{v}" for v in labels]
        return TemplateKey(names, [""] * len(names), [(v,) for v in labels], "none", "")
    if key.fmt == "names":
        if len(key) != len(labels):
            raise TemplateKeyError(f"{key.source}: {len(key)} names for the {len(labels)} {what}s of {path}")
        return TemplateKey(key.names, key.domains, [(v,) for v in labels], key.fmt, key.source)
    unknown = sorted({v for vals in key.values for v in vals} - set(labels))
    if unknown:
        raise TemplateKeyError(f"{key.source}: {what}s {unknown[:8]} are not in {path} "
                               f"({len(labels)} {what}s{'' if what == 'volume' else ': ' + str(labels[:8])})")
    if key.fmt in ("tsv", "indexed") and what == "volume" and len(key) != len(labels):
        raise TemplateKeyError(f"{key.source}: {len(key)} names for the {len(labels)} volumes of {path}")
    return key


def _grid_coverage(img: nib.spatialimages.SpatialImage, mask_img: nib.Nifti1Image) -> float:
    """The share of the mask's voxels whose centre lies inside ``img``'s field of view."""
    mask = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(mask)
    xyz = nib.affines.apply_affine(mask_img.affine, ijk)
    src = nib.affines.apply_affine(np.linalg.inv(img.affine), xyz)
    shape = np.asarray(img.shape[:3])
    inside = np.all((src > -0.5) & (src < shape - 0.5), axis=1)
    return float(inside.mean()) if len(inside) else 0.0


def load_templates(path: str | os.PathLike | nib.spatialimages.SpatialImage, mask_img: nib.Nifti1Image,
                   key: str | os.PathLike | TemplateKey | None = None,
                   min_coverage: float = MIN_COVERAGE) -> Templates:
    """Read templates (4-D maps, 4-D ROIs with a network list, or a 3-D atlas) on the mask's grid.

    Parameters
    ----------
    path : path or image
        The template file.
    mask_img : Nifti1Image
        The maps' mask (its grid is the target).
    key : path or TemplateKey, optional
        The names (:func:`~trends_ivae.analysis.keys.read_key`); default ``template01...``
        (volumes) or ``label<value>`` (atlas labels).
    min_coverage : float, default=0.5
        Refuse templates whose field of view covers less of the mask.

    Raises
    ------
    TemplateError
        The file is not a 3-D/4-D image, or it lies elsewhere than the maps (another space
        or grid that resampling cannot bridge), or it is empty inside the mask.
    TemplateKeyError
        The key does not fit the image (number of volumes, unknown ROIs or labels).
    """
    from nilearn.image import resample_to_img

    name = Path(path) if not isinstance(path, nib.spatialimages.SpatialImage) else Path("<image>")
    try:
        img = nib.load(str(path)) if not isinstance(path, nib.spatialimages.SpatialImage) else path
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise TemplateError(f"{name}: not a readable NIfTI image ({exc})") from None
    if isinstance(key, (str, os.PathLike)):
        key = read_key(key)
    if img.ndim not in (3, 4):
        raise TemplateError(f"{name}: a template file must be 3-D (label atlas) or 4-D (maps); it is {img.ndim}-D")
    coverage = _grid_coverage(img, mask_img)
    if coverage < min_coverage:
        raise TemplateError(f"{name}: its field of view covers {coverage:.0%} of the maps' mask (at least "
                            f"{min_coverage:.0%} needed): it is not in the maps' space, or its affine is wrong; "
                            "resample it to the maps' space first")
    data = np.asarray(img.dataobj)
    if img.ndim == 3:
        labels = [int(v) for v in np.unique(np.round(data)) if v > 0]
        if not labels:
            raise TemplateError(f"{name}: a 3-D atlas needs positive integer labels; it holds none")
        key = _key_for(key, labels, name, "label")
        src = np.stack([np.isin(np.round(data), vals) for vals in key.values], axis=-1).astype(np.float32)
    else:
        key = _key_for(key, list(range(1, data.shape[3] + 1)), name, "volume")
        src = np.stack([data[..., [v - 1 for v in vals]].max(axis=-1) if len(vals) > 1 else data[..., vals[0] - 1]
                        for vals in key.values], axis=-1).astype(np.float32)
    src_img = nib.Nifti1Image(src, img.affine)
    interp = "continuous" if img.ndim == 4 and key.fmt != "networks" else "linear"
    with warnings.catch_warnings():   # binary ROIs are resampled linearly on purpose (partial volumes)
        warnings.simplefilter("ignore", UserWarning)
        res = resample_to_img(src_img, mask_img, interpolation=interp, force_resample=True, copy_header=True)
    mask = np.asarray(mask_img.dataobj) > 0
    values = np.asarray(res.dataobj)[mask].T.astype(np.float64)
    values[~np.isfinite(values)] = 0.0
    empty = [n for n, v in zip(key.names, values) if np.ptp(v) == 0]
    if len(empty) == len(key.names):
        raise TemplateError(f"{name}: every template is constant inside the maps' mask; not the maps' space?")
    return Templates(values, list(key.names), list(key.domains), str(name), coverage)


@dataclass
class TemplateMatch:
    """Component maps against templates.

    Attributes
    ----------
    r : ndarray (n_components, n_templates)
        Spatial (Pearson) correlation over the mask.
    best : ndarray (n_components,) int
        Each component's best template.
    assigned : ndarray (n_components,) int
        The one-to-one template of each component (-1: none, more components than templates).
    names, domains : list of str
        The templates'.
    min_r : float
        The correlation a match needs to count.
    """

    r: np.ndarray
    best: np.ndarray
    assigned: np.ndarray
    names: list
    domains: list
    min_r: float

    def component_table(self) -> pd.DataFrame:
        """Per component: ``network``, ``domain``, ``network_r`` (the one-to-one template,
        ``n/a`` below ``min_r``), ``best_network``, ``best_network_r``."""
        rows = []
        for c in range(self.r.shape[0]):
            a, b = int(self.assigned[c]), int(self.best[c])
            ok = a >= 0 and abs(self.r[c, a]) >= self.min_r
            rows.append({"network": self.names[a] if ok else None, "domain": (self.domains[a] or None) if ok else None,
                         "network_r": float(self.r[c, a]) if a >= 0 else np.nan,
                         "best_network": self.names[b], "best_network_r": float(self.r[c, b])})
        return pd.DataFrame(rows)

    def template_table(self, component_names: list) -> pd.DataFrame:
        """Per template, its goodness of fit: the one-to-one component and correlation,
        the best component and correlation, and ``found`` (one-to-one r >= ``min_r``)."""
        owner = {int(t): c for c, t in enumerate(self.assigned) if t >= 0}
        rows = []
        for t, name in enumerate(self.names):
            c = owner.get(t)
            b = int(np.argmax(np.abs(self.r[:, t])))
            r_one = float(self.r[c, t]) if c is not None else np.nan
            rows.append({"template": name, "domain": self.domains[t] or None,
                         "component": component_names[c] if c is not None else None, "r": r_one,
                         "best_component": component_names[b], "best_r": float(self.r[b, t]),
                         "found": bool(c is not None and abs(r_one) >= self.min_r)})
        return pd.DataFrame(rows)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    na[na == 0], nb[nb == 0] = np.inf, np.inf
    return (a @ b.T) / np.outer(na, nb)


def match_templates(maps: np.ndarray, templates: Templates, min_r: float = 0.2) -> TemplateMatch:
    """Correlate component maps with templates; best match and one-to-one assignment.

    Parameters
    ----------
    maps : ndarray (n_components, n_voxels)
        In-mask component maps (the same voxels as ``templates.data``).
    templates : Templates
    min_r : float, default=0.2
        A one-to-one match with a lower absolute correlation names no network.

    Returns
    -------
    TemplateMatch
    """
    from scipy.optimize import linear_sum_assignment

    maps = np.asarray(maps, np.float64)
    if maps.shape[1] != templates.data.shape[1]:
        raise ValueError(f"maps have {maps.shape[1]} voxels, templates {templates.data.shape[1]}")
    r = _correlation(maps, templates.data)
    rows, cols = linear_sum_assignment(-np.abs(r))
    assigned = np.full(r.shape[0], -1)
    assigned[rows] = cols
    return TemplateMatch(r, np.argmax(np.abs(r), axis=1), assigned, list(templates.names), list(templates.domains), min_r)


def domain_order(table: pd.DataFrame) -> np.ndarray:
    """Component order by domain, then network, then decreasing correlation; unmatched last.

    ``table`` is :meth:`TemplateMatch.component_table`; returns the component indices.
    """
    key = pd.DataFrame({"d": table["domain"].fillna("~"), "n": table["network"].fillna("~"),
                        "r": -table["network_r"].abs().fillna(-1.0).to_numpy(), "i": np.arange(len(table))})
    return key.sort_values(["d", "n", "r", "i"]).index.to_numpy()


def component_maps(maps_img: Any, mask_img: nib.Nifti1Image) -> np.ndarray:
    """The in-mask values (n_components, n_voxels) of a 4-D maps image."""
    mask = np.asarray(mask_img.dataobj) > 0
    data = np.asarray(nib.load(str(maps_img)).dataobj if not hasattr(maps_img, "dataobj") else maps_img.dataobj)
    if data.ndim == 3:
        data = data[..., None]
    return data[mask].T.astype(np.float64)
