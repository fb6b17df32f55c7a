"""Where the maps live: MNI or not, what to draw them on, peaks and atlas regions.

MNI-like means any of: the maps' (or the input run's) qform/sform code is 4 (MNI152), a
BIDS ``space-MNI*`` entity, or a geometric check (at least 85 % of the mask's voxels fall
inside nilearn's MNI152 brain mask, dilated by 8 mm, and the mask's centre lies within
35 mm of the MNI brain's centre). MNI maps are drawn on nilearn's shipped MNI152 template
(no download) and get a glass brain; other maps are drawn on the mean of the first run's
first volumes (or on the mask when that file is gone) and get maximum-intensity
projections instead of the MNI glass brain.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["Atlas", "load_atlas", "is_mni_like", "background_image", "peak_table"]

log = logging.getLogger("trends_ivae.report")

_MNI_CENTRE = np.array([0.0, -18.0, 12.0])


def is_mni_like(img: nib.Nifti1Image, mask: np.ndarray | None = None,
                input_files: list | None = None) -> tuple[bool, str]:
    """Whether ``img``'s grid is MNI space, and why.

    Parameters
    ----------
    img : Nifti1Image
        The maps (or the mask).
    mask : ndarray of bool, optional
        In-brain voxels of ``img``'s grid (for the geometric check).
    input_files : list of path, optional
        The input runs; their header codes and BIDS ``space`` entity count too.

    Returns
    -------
    (bool, str)
        The decision and a short reason for the summary.
    """
    for code_name in ("sform_code", "qform_code"):
        if int(img.header.get(code_name, 0)) == 4:
            return True, f"{code_name} 4 (MNI152)"
    for f in input_files or []:
        name = Path(str(f)).name
        if "space-MNI" in name:
            return True, "BIDS space-MNI* input"
        try:
            if os.path.isfile(str(f)):
                hdr = nib.load(str(f)).header
                if int(hdr.get("sform_code", 0)) == 4 or int(hdr.get("qform_code", 0)) == 4:
                    if np.allclose(nib.load(str(f)).affine, img.affine, atol=1e-3):
                        return True, "input header code 4 (MNI152)"
        except Exception:  # noqa: BLE001 - a missing input only weakens the evidence
            pass
        break
    if mask is not None and mask.any():
        try:
            from nilearn.datasets import load_mni152_brain_mask

            brain = load_mni152_brain_mask(resolution=2)
            bdata = np.asarray(brain.dataobj) > 0
            from scipy.ndimage import binary_dilation

            bdata = binary_dilation(bdata, iterations=4)
            ijk = np.argwhere(mask)
            xyz = nib.affines.apply_affine(img.affine, ijk)
            bijk = np.rint(nib.affines.apply_affine(np.linalg.inv(brain.affine), xyz)).astype(int)
            inside = np.all((bijk >= 0) & (bijk < np.array(bdata.shape)), axis=1)
            hit = np.zeros(len(bijk), bool)
            hit[inside] = bdata[tuple(bijk[inside].T)]
            centre = xyz.mean(0)
            if hit.mean() >= 0.85 and np.linalg.norm(centre - _MNI_CENTRE) <= 35:
                return True, f"{hit.mean():.0%} of the mask inside the MNI152 brain"
        except Exception as exc:  # noqa: BLE001
            log.debug("MNI check failed: %s", exc)
    return False, "not MNI (no MNI header code, space entity or overlap)"


def background_image(mni: bool, mask_img: nib.Nifti1Image, input_files: list | None = None,
                     n_volumes: int = 20) -> tuple[nib.Nifti1Image, str]:
    """The image maps are drawn on, and its name.

    MNI: nilearn's MNI152 template (2 mm). Otherwise the mean of the first ``n_volumes``
    volumes of the first readable input run on the maps' grid, else the mask.
    """
    if mni:
        from nilearn.datasets import load_mni152_template

        return load_mni152_template(resolution=2), "MNI152 template (nilearn)"
    for f in input_files or []:
        try:
            if not os.path.isfile(str(f)):
                continue
            src = nib.load(str(f))
            if src.ndim != 4 or src.shape[:3] != mask_img.shape[:3]:
                continue
            n = min(n_volumes, src.shape[3])
            data = np.asarray(src.dataobj[..., :n], dtype=np.float32).mean(-1)
            return nib.Nifti1Image(data, src.affine), f"mean of {n} volumes of {Path(str(f)).name}"
        except Exception:  # noqa: BLE001
            continue
    data = (np.asarray(mask_img.dataobj) > 0).astype(np.float32)
    return nib.Nifti1Image(data, mask_img.affine), "the mask (input runs not found)"


@dataclass
class Atlas:
    """A label atlas: an integer image (or a 4-D probabilistic one) and label names."""

    img: nib.Nifti1Image
    names: dict
    source: str

    def region_at(self, xyz: np.ndarray) -> str:
        """Name of the region at world coordinate ``xyz`` (mm)."""
        data = np.asarray(self.img.dataobj)
        ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(self.img.affine), xyz)).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.array(data.shape[:3])):
            return "outside atlas"
        if data.ndim == 4:
            vals = data[tuple(ijk)]
            if not np.any(vals > 0):
                return "none"
            label = int(np.argmax(vals)) + 1
        else:
            label = int(round(float(data[tuple(ijk)])))
        if label == 0:
            return "none"
        return str(self.names.get(label, f"label {label}"))


def _read_label_names(path: Path, n4d: int | None = None) -> dict:
    """``index -> name`` from a TSV/CSV with ``index`` and ``name`` columns, a two-column
    headerless lookup table (``1 Name``), or one name per line (index 1, 2, ... for a 4-D
    atlas; 0, 1, ... with the first line 'Background' for a 3-D one)."""
    text = path.read_text().strip("\n")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is not None:
        df = pd.read_csv(path, sep=sep, comment="#")
        cols = {c.lower(): c for c in df.columns}
        if "index" in cols and ("name" in cols or "label" in cols):
            ncol = cols.get("name", cols.get("label"))
            return {int(i): str(n) for i, n in zip(df[cols["index"]], df[ncol])}
        df = pd.read_csv(path, sep=sep, header=None, comment="#")
        if df.shape[1] >= 2 and pd.api.types.is_integer_dtype(df[0]):
            return {int(i): str(n) for i, n in zip(df[0], df[1])}
    parts = [ln.split(None, 1) for ln in lines]
    if all(len(p) == 2 and p[0].isdigit() for p in parts):
        return {int(p[0]): p[1].strip() for p in parts}
    start = 1 if n4d or lines[0].strip().lower() not in ("background", "0") else 0
    return {i + start: ln.strip() for i, ln in enumerate(lines)}


def load_atlas(img_path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> Atlas:
    """Read an atlas image and its labels.

    Parameters
    ----------
    img_path : path
        3-D integer label image, or 4-D probabilistic maps (region = the largest map).
    labels_path : path, optional
        Label names (see :func:`_read_label_names`); default a ``.tsv`` next to the
        image with the same stem (``atlas_dseg.tsv`` for ``atlas_dseg.nii.gz``), else
        ``label N``.

    Returns
    -------
    Atlas

    Raises
    ------
    ValueError
        The image is not 3-D or 4-D, or the labels file cannot be read.
    """
    p = Path(img_path)
    img = nib.load(str(p))
    if img.ndim not in (3, 4):
        raise ValueError(f"atlas {p}: expected a 3-D label image or 4-D maps, got shape {img.shape}")
    if labels_path is None:
        stem = p.name.split(".nii")[0]
        for cand in (p.with_name(stem + ".tsv"), p.with_name(stem + "_labels.tsv"),
                     p.with_name(stem + ".txt"), p.with_name(stem + ".csv")):
            if cand.is_file():
                labels_path = cand
                break
    names: dict = {}
    if labels_path is not None:
        try:
            names = _read_label_names(Path(labels_path), img.shape[3] if img.ndim == 4 else None)
        except (OSError, ValueError, IndexError) as exc:
            raise ValueError(f"atlas labels {labels_path}: cannot read ({exc})") from exc
    return Atlas(img=img, names=names, source=p.name + (f" + {Path(labels_path).name}" if labels_path else ""))


def peak_table(maps: np.ndarray, affine: np.ndarray, names: list, *, threshold: float,
               mni: bool, atlas: Atlas | None = None,
               effects: np.ndarray | None = None, mask: np.ndarray | None = None) -> pd.DataFrame:
    """One row per component: its peak (largest absolute value) and a few numbers.

    Parameters
    ----------
    maps : ndarray (x, y, z, k)
        Group z-maps.
    affine : ndarray (4, 4)
        Their affine.
    names : list of str
        Component names.
    threshold : float
        |z| threshold for the cluster size column.
    mni : bool
        Whether coordinates are MNI (only changes the column name).
    atlas : Atlas, optional
        Adds the region at the peak.
    effects : ndarray (x, y, z, k), optional
        Decoder-effect maps: adds their spatial correlation with the regression maps.
    mask : ndarray of bool (x, y, z), optional
        In-brain voxels (for the correlation).

    Returns
    -------
    pandas.DataFrame
    """
    coord = "MNI (mm)" if mni else "scanner (mm)"
    rows = []
    for j, name in enumerate(names):
        m = np.nan_to_num(maps[..., j])
        ijk = np.unravel_index(int(np.argmax(np.abs(m))), m.shape)
        xyz = nib.affines.apply_affine(affine, ijk)
        row: dict[str, Any] = {"component": name, "peak z": float(m[ijk]),
                               "voxel (i, j, k)": tuple(int(v) for v in ijk),
                               coord: tuple(round(float(v), 1) for v in xyz),
                               f"voxels |z|>{threshold:g}": int((np.abs(m) > threshold).sum())}
        if atlas is not None:
            row["region"] = atlas.region_at(xyz)
        if effects is not None:
            sel = mask if mask is not None else np.ones(m.shape, bool)
            a, b = m[sel], np.nan_to_num(effects[..., j][sel])
            r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else np.nan
            row["r(regression, effect)"] = float(r)
        rows.append(row)
    return pd.DataFrame(rows)
