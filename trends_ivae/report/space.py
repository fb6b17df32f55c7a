"""Where the maps live: their space, what to draw them on, peaks and atlas regions.

The space is read from what the files say, never guessed from how a mask overlaps a
template: a BIDS ``space-<label>`` entity in an input run's file name, else the NIfTI
sform code (then the qform code) of the maps, else those of the first input run (when it
lies on the maps' grid). NIfTI codes: 1 scanner anatomical, 2 aligned anatomical,
3 Talairach, 4 MNI152, 5 another template; 0 unknown. MNI maps are drawn on nilearn's
shipped MNI152 template (no download) and get a glass brain; all other maps are drawn on
the mean image of the first input run (or on the mask when that file is gone), get
maximum-intensity projections instead of the MNI glass brain, and their coordinates are
named after their space (``scanner (mm)`` for native data).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["Atlas", "Space", "load_atlas", "detect_space", "background_image", "peak_table",
           "mask_boundary", "EDGE_FRACTION", "EDGE_ENRICHMENT"]

log = logging.getLogger("trends_ivae.report")

#: NIfTI xform codes -> (kind, name as shown)
_CODES = {1: ("scanner", "native: scanner anatomical"), 2: ("aligned", "native: aligned anatomical"),
          3: ("talairach", "Talairach"), 4: ("mni", "MNI152"), 5: ("template", "a standard template")}
_COORDS = {"mni": "MNI (mm)", "talairach": "Talairach (mm)", "template": "template (mm)",
           "scanner": "scanner (mm)", "aligned": "aligned (mm)", "unknown": "world (mm)"}
#: BIDS space labels of subject (native) spaces; any other label is a template
_NATIVE_LABELS = {"t1w", "t2w", "t1", "t2", "anat", "func", "bold", "boldref", "orig", "individual",
                  "fsnative", "native", "scanner", "sbref", "epi"}
_SPACE_ENTITY = re.compile(r"(?:^|_)space-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class Space:
    """The space of the maps.

    Attributes
    ----------
    kind : str
        ``"mni"``, ``"talairach"``, ``"template"`` (another standard template),
        ``"scanner"``, ``"aligned"`` (native, aligned to an anatomy) or ``"unknown"``.
    name : str
        As shown in the report (``"MNI152"``, ``"native: scanner anatomical"``, a BIDS label).
    reason : str
        Where the decision comes from (``"sform_code 1"``, ``"BIDS space-T1w"``).
    """

    kind: str
    name: str
    reason: str

    @property
    def mni(self) -> bool:
        """Whether the maps are in MNI space (drawn on the MNI152 template)."""
        return self.kind == "mni"

    @property
    def coord_label(self) -> str:
        """Column name of the peak coordinates (``"MNI (mm)"``, ``"scanner (mm)"``, ...)."""
        return _COORDS[self.kind]

    def describe(self) -> str:
        """One line for the summary: the space and why."""
        return f"{self.name} ({self.reason})"


def _space_from_entity(label: str) -> Space:
    low = label.lower()
    if low.startswith("mni"):
        return Space("mni", f"MNI152 ({label})" if "152" in label else f"MNI ({label})", f"BIDS space-{label}")
    if low.startswith("talairach"):
        return Space("talairach", "Talairach", f"BIDS space-{label}")
    if low in _NATIVE_LABELS:
        kind = "scanner" if low == "scanner" else "aligned"
        return Space(kind, f"native: {label}", f"BIDS space-{label}")
    return Space("template", f"template {label}", f"BIDS space-{label}")


def _header_codes(hdr: Any) -> list[tuple[str, int]]:
    out = []
    for code_name in ("sform_code", "qform_code"):
        try:
            out.append((code_name, int(hdr[code_name])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def detect_space(img: nib.Nifti1Image, input_files: list | None = None) -> Space:
    """The space of ``img`` (the group maps) from file names and header codes.

    Parameters
    ----------
    img : Nifti1Image
        The maps (or the mask).
    input_files : list of path, optional
        The input runs: a BIDS ``space-<label>`` entity in a name decides; else, when the
        maps carry no code, the first run's codes count when it lies on the maps' grid.

    Returns
    -------
    Space
        ``kind "unknown"`` when nothing says (codes 0 and no entity). The decision never
        depends on where the voxels lie.
    """
    for f in input_files or []:
        m = _SPACE_ENTITY.search(Path(str(f)).name)
        if m:
            return _space_from_entity(m.group(1))
    for code_name, code in _header_codes(img.header):
        if code in _CODES:
            kind, name = _CODES[code]
            return Space(kind, name, f"{code_name} {code} of the maps")
    for f in (input_files or [])[:1]:
        try:
            if not os.path.isfile(str(f)):
                continue
            src = nib.load(str(f))
            if not np.allclose(src.affine, img.affine, atol=1e-3):
                continue
            for code_name, code in _header_codes(src.header):
                if code in _CODES:
                    kind, name = _CODES[code]
                    return Space(kind, name, f"{code_name} {code} of {Path(str(f)).name}")
        except Exception:  # noqa: BLE001 - a missing input only weakens the evidence
            continue
    return Space("unknown", "unknown space", "qform/sform codes 0 and no BIDS space- entity")


def background_image(space: Space, mask_img: nib.Nifti1Image, input_files: list | None = None,
                     max_values: float = 2.5e7) -> tuple[nib.Nifti1Image, str]:
    """The image maps are drawn on, and its name.

    MNI: nilearn's MNI152 template (2 mm). Otherwise the mean image of the first readable
    input run on the maps' grid (all its volumes, or the first ones when the run is large:
    at most ``max_values`` voxel values are read), else the mask.
    """
    if space.mni:
        from nilearn.datasets import load_mni152_template

        return load_mni152_template(resolution=2), "MNI152 template (nilearn)"
    for f in input_files or []:
        try:
            if not os.path.isfile(str(f)):
                continue
            src = nib.load(str(f))
            if src.ndim != 4 or src.shape[:3] != mask_img.shape[:3] \
                    or not np.allclose(src.affine, mask_img.affine, atol=1e-3):
                continue
            n_all = src.shape[3]
            n = int(min(n_all, max(1, max_values // max(int(np.prod(src.shape[:3])), 1))))
            data = np.asarray(src.dataobj[..., :n], dtype=np.float32).mean(-1)
            what = "all" if n == n_all else "the first"
            return (nib.Nifti1Image(data, src.affine),
                    f"the mean image of {Path(str(f)).name} ({what} {n} volumes)")
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


#: a component is flagged "edge" when more than this share of its suprathreshold weight
#: lies in the mask's boundary voxels ...
EDGE_FRACTION = 0.5
#: ... and that share is at least this many times the boundary voxels' share of the mask
#: (the share a map spread evenly over the mask would have)
EDGE_ENRICHMENT = 2.0


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a mask: in the mask, not in its erosion by one voxel.

    The erosion uses the 6 face neighbours, along the axes the grid has more than one
    voxel on (a one-slice volume is eroded in its plane, not away). Voxels on the grid's
    border count as boundary.
    """
    from scipy.ndimage import binary_erosion, generate_binary_structure

    mask = np.asarray(mask, bool)
    structure = generate_binary_structure(mask.ndim, 1)
    centre = tuple([1] * mask.ndim)
    for ax, n in enumerate(mask.shape):
        if n == 1:  # no neighbours along a one-voxel axis
            for side in (0, 2):
                idx = list(centre)
                idx[ax] = side
                structure[tuple(idx)] = False
    return mask & ~binary_erosion(mask, structure=structure, border_value=0)


def _largest_cluster_peak(m: np.ndarray, threshold: float, sel: np.ndarray) -> tuple[tuple, int]:
    """Peak voxel of the largest suprathreshold cluster (positive and negative values
    clustered apart, 26-connectivity), and its size; the largest |value| when no voxel
    passes the threshold (size 0)."""
    from scipy.ndimage import generate_binary_structure, label

    structure = generate_binary_structure(3, 3)
    best: tuple[int, float, tuple] | None = None
    for sign in (1.0, -1.0):
        supra = (sign * m > threshold) & sel
        if not supra.any():
            continue
        lab, n = label(supra, structure=structure)
        sizes = np.bincount(lab.ravel())[1:]
        for c in np.flatnonzero(sizes == sizes.max()) + 1:
            vals = np.where(lab == c, np.abs(m), -np.inf)
            ijk = np.unravel_index(int(np.argmax(vals)), m.shape)
            cand = (int(sizes[c - 1]), float(np.abs(m[ijk])), tuple(int(v) for v in ijk))
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        a = np.where(sel, np.abs(m), -np.inf)
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(a)), m.shape)), 0
    return best[2], best[0]


def peak_table(maps: np.ndarray, affine: np.ndarray, names: list, *, threshold: float,
               coord_label: str = "scanner (mm)", atlas: Atlas | None = None,
               effects: np.ndarray | None = None, mask: np.ndarray | None = None) -> pd.DataFrame:
    """One row per component: the peak of its largest cluster, and a few numbers.

    Parameters
    ----------
    maps : ndarray (x, y, z, k)
        Group z-maps.
    affine : ndarray (4, 4)
        Their affine.
    names : list of str
        Component names.
    threshold : float
        |z| threshold of the clusters and of the voxel count.
    coord_label : str
        Name of the coordinate column (:attr:`Space.coord_label`).
    atlas : Atlas, optional
        Adds the region at the peak.
    effects : ndarray (x, y, z, k), optional
        Decoder-effect maps: adds their spatial correlation with the regression maps.
    mask : ndarray of bool (x, y, z), optional
        In-brain voxels: peaks are searched there, and the ``edge fraction`` column (the
        share of the suprathreshold |z| that lies in the mask's boundary voxels, see
        :func:`mask_boundary`) and the ``edge`` flag (see :data:`EDGE_FRACTION`,
        :data:`EDGE_ENRICHMENT`) are added.

    Returns
    -------
    pandas.DataFrame
        Columns ``component``, ``peak z`` (at the peak of the largest cluster of
        |z| > threshold; the largest |z| when no voxel passes), ``voxel (i, j, k)``,
        ``coord_label``, ``voxels |z|>T`` (all suprathreshold voxels), ``largest cluster``
        (its voxels), then ``edge fraction`` and ``edge`` (with a mask), ``region`` (with
        an atlas), ``r(regression, effect)`` (with effects).
    """
    sel = np.asarray(mask, bool) if mask is not None else np.ones(maps.shape[:3], bool)
    edge = mask_boundary(sel) if mask is not None else None
    edge_share = float(edge.sum() / max(sel.sum(), 1)) if edge is not None else 0.0
    rows = []
    for j, name in enumerate(names):
        m = np.nan_to_num(maps[..., j])
        ijk, size = _largest_cluster_peak(m, threshold, sel)
        xyz = nib.affines.apply_affine(affine, ijk)
        supra = (np.abs(m) > threshold) & sel
        row: dict[str, Any] = {"component": name, "peak z": float(m[ijk]),
                               "voxel (i, j, k)": tuple(int(v) for v in ijk),
                               coord_label: tuple(round(float(v), 1) for v in xyz),
                               f"voxels |z|>{threshold:g}": int(supra.sum()),
                               "largest cluster": int(size)}
        if edge is not None:
            w = np.abs(m) * (supra if supra.any() else sel)
            total = float(w.sum())
            frac = float(w[edge].sum() / total) if total > 0 else 0.0
            row["edge fraction"] = frac
            row["edge"] = bool(frac > EDGE_FRACTION and frac >= EDGE_ENRICHMENT * edge_share)
        if atlas is not None:
            row["region"] = atlas.region_at(xyz)
        if effects is not None:
            a, b = m[sel], np.nan_to_num(effects[..., j][sel])
            r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else np.nan
            row["r(regression, effect)"] = float(r)
        rows.append(row)
    return pd.DataFrame(rows)
