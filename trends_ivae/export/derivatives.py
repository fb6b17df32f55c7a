"""Export a fit as BIDS derivatives: NIfTI maps, TSV time courses, JSON sidecars.

Layout written by :func:`write_derivatives`::

    OUT/dataset_description.json                 DatasetType "derivative", GeneratedBy
    OUT/group/desc-ivae_components.nii.gz (+.json) group z-maps, 4-D, one volume per component
    OUT/group/desc-ivae_effects.nii.gz (+.json)    decoder-effect maps (when given)
    OUT/group/desc-ivae_mask.nii.gz                the mask the maps live in
    OUT/group/desc-ivae_labels.tsv (+.json)        index, name (+ explained_variance, a fraction)
    OUT/sub-<label>/[ses-<label>/]func/<entities>_desc-ivae_timeseries.tsv (+.json)
    OUT/sub-<label>/[ses-<label>/]func/<entities>_desc-ivae_components.nii.gz (+.json)

``<entities>`` are the input run's BIDS entities (``sub``, ``ses``, ``task``, ``acq``,
``run``, ``space``, ...) without its suffix (``bold``) and without its ``desc``.

Everything is written into a temporary folder next to ``OUT`` and moved into place at the
end; an existing ``OUT`` is refused before any work unless ``force``, and replaced only
when it holds nothing but the tool's own files (:mod:`trends_ivae.export.outputs`, whose
names are re-exported here). :func:`write_derivative_files` writes the same files into a
folder being staged, beside other files of the same output (the model, the prepared
data). This module is independent of the prepared store: it takes a
:class:`~trends_ivae.export.fit_outputs.FitOutputs` (plain arrays, a mask image and run
descriptions). numpy, nibabel, pandas and json only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from ..docstrings import EXPLAINED_VARIANCE_DEFINITION
from .fit_outputs import FitOutputs
from .naming import component_names, derivative_stem, run_entities
from .outputs import (MANIFEST_NAME, ForeignFilesError, atomic_output_dir, foreign_files, read_manifest,
                      record_outputs, remove_own_outputs, write_dataset_description, refuse_existing_dir)
from .space import copy_space, with_input_space

__all__ = [
    "FitOutputs",
    "write_derivatives",
    "write_derivative_files",
    "unmask",
    "load_mask",
    "component_names",
    "run_entities",
    "derivative_stem",
    "atomic_output_dir",
    "MANIFEST_NAME",
    "ForeignFilesError",
    "foreign_files",
    "read_manifest",
    "record_outputs",
    "remove_own_outputs",
]

#: what the labels' ``stability`` column holds (trends_ivae.estimators.consensus)
STABILITY_DEFINITION = ("ICASSO-style stability index of the component across restarts: the mean absolute "
                        "correlation of its time course with the matched component (Hungarian assignment) of "
                        "every other converged restart, on up to 5000 volumes; 1 means every restart found it; "
                        "n/a with a single restart")

# ----------------------------------------------------------------------------- helpers
def load_mask(mask_img: nib.spatialimages.SpatialImage | str | os.PathLike) -> nib.Nifti1Image:
    """A 3-D mask image (a path or an image); voxels > 0 are in the mask."""
    img = nib.load(str(mask_img)) if isinstance(mask_img, (str, os.PathLike)) else mask_img
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise ValueError(f"the mask must be a 3-D image, got shape {img.shape}")
    return img


def unmask(maps: np.ndarray, mask_img: nib.spatialimages.SpatialImage | str | os.PathLike, *,
           dtype: Any = np.float32, intent: str | None = None,
           descrip: str | None = None) -> nib.Nifti1Image:
    """Put masked values back on the mask's grid.

    The same as ``nilearn.masking.unmask`` (voxels in C order of the mask's ``> 0``
    voxels), plus the header details the export needs.

    Parameters
    ----------
    maps : ndarray (k, n_voxels) or (n_voxels,)
        Values of the in-mask voxels.
    mask_img : image or path
        3-D mask; its affine and its qform/sform codes and spatial units are kept.
    dtype : numpy dtype
        Data type of the image (default float32).
    intent : str, optional
        NIfTI intent name (e.g. ``"z score"``).
    descrip : str, optional
        Header description (truncated to 79 characters).

    Returns
    -------
    nibabel.Nifti1Image
        4-D (x, y, z, k) for 2-D ``maps``, 3-D for 1-D; ``cal_min``/``cal_max`` set to the
        data range.
    """
    mimg = load_mask(mask_img)
    mask = np.asarray(mimg.dataobj) > 0
    maps = np.asarray(maps)
    n_vox = int(mask.sum())
    if maps.shape[-1] != n_vox or maps.ndim not in (1, 2):
        raise ValueError(f"maps must be (k, n_voxels) or (n_voxels,) with n_voxels={n_vox} "
                         f"(the mask's), got {maps.shape}")
    if maps.ndim == 1:
        data = np.zeros(mask.shape, dtype=dtype)
        data[mask] = maps
    else:
        data = np.zeros(mask.shape + (maps.shape[0],), dtype=dtype)
        data[mask] = maps.T
    header = nib.Nifti1Header()
    img = nib.Nifti1Image(data, mimg.affine, header)
    copy_space(mimg, img)
    src = mimg.header if isinstance(mimg.header, nib.Nifti1Header) else None
    units = src.get_xyzt_units()[0] if src is not None else "mm"
    img.header.set_xyzt_units(units if units != "unknown" else "mm")
    img.header.set_data_dtype(dtype)
    if intent is not None:
        img.header.set_intent(intent)
    finite = data[np.isfinite(data)]
    if finite.size:
        img.header["cal_min"] = float(finite.min())
        img.header["cal_max"] = float(finite.max())
    if descrip:
        img.header["descrip"] = descrip.encode("ascii", "replace")[:79]
    return img


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class _Checked:
    """Outputs checked against the mask, ready to write."""

    outputs: FitOutputs       # arrays as arrays, runs and time courses as lists
    mimg: nib.spatialimages.SpatialImage   # the mask in the input's space
    names: list[str]
    stems: list[tuple[Path, str]]


def _check(outputs: FitOutputs, names: Sequence[str] | None, space_img: Any) -> _Checked:
    """Validate everything before anything is written (ValueError says what is wrong)."""
    o = outputs
    mimg = with_input_space(load_mask(o.mask_img), space_img, o.runs)
    n_vox = int((np.asarray(mimg.dataobj) > 0).sum())
    group_maps = np.asarray(o.group_maps)
    if group_maps.ndim != 2 or group_maps.shape[1] != n_vox:
        raise ValueError(f"group_maps must be (k, {n_vox}) for this mask, got {group_maps.shape}")
    k = group_maps.shape[0]
    effect_maps = o.effect_maps
    if effect_maps is not None:
        effect_maps = np.asarray(effect_maps)
        if effect_maps.shape != group_maps.shape:
            raise ValueError(f"effect_maps {effect_maps.shape} must match group_maps {group_maps.shape}")
    names = list(names) if names is not None else component_names(k)
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"names must be {k} distinct strings, got {names}")
    if o.explained_variance is not None:
        _check_shares(o.explained_variance, k, o.total_explained_variance)
    if o.stability is not None and len(o.stability) != k:
        raise ValueError(f"stability must have {k} values, got {len(o.stability)}")
    runs = list(o.runs)
    timecourses = [np.asarray(t) for t in o.timecourses]
    if len(timecourses) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(timecourses)} time-course arrays")
    for i, t in enumerate(timecourses):
        if t.ndim != 2 or t.shape[1] != k:
            raise ValueError(f"timecourses[{i}] must be (n_volumes, {k}), got {t.shape}")
    subject_maps = o.subject_maps
    if subject_maps is not None:
        if not isinstance(subject_maps, Sequence):   # a lazy Sequence stays lazy: one map in memory
            subject_maps = list(subject_maps)
        if len(subject_maps) != len(runs):
            raise ValueError(f"{len(runs)} runs but {len(subject_maps)} subject maps")
    stems = [derivative_stem(r) for r in runs]
    seen = [str(f / s) for f, s in stems]
    dupes = sorted({s for s in seen if seen.count(s) > 1})
    if dupes:
        raise ValueError(f"runs with the same output name: {dupes}; give distinct entities (e.g. run)")
    checked = replace(o, group_maps=group_maps, effect_maps=effect_maps, runs=runs, timecourses=timecourses,
                      subject_maps=subject_maps)
    return _Checked(checked, mimg, names, stems)


def write_derivatives(out_dir: str | os.PathLike, outputs: FitOutputs, *, names: Sequence[str] | None = None,
                      effects_zscored: bool = True, force: bool = False, space_img: Any = None) -> Path:
    """Write the maps and time courses of a fit as a BIDS-derivatives dataset.

    Parameters
    ----------
    out_dir : path
        Output folder; refused if it exists, unless ``force`` (then replaced as a whole,
        when it holds only the tool's own files).
    outputs : FitOutputs
        The fit's maps, time courses, runs and numbers. The explained variance goes to the
        labels TSV (its JSON sidecar gives the definition and the unit) and to the maps'
        sidecars (``ExplainedVariance``, with ``ExplainedVarianceUnits`` and
        ``ExplainedVarianceDefinition``), the total as ``TotalExplainedVariance``; the
        stability to a ``stability`` column of the labels TSV (``n/a`` when NaN) and
        ``Stability`` in the maps' sidecars, with its definition; the nonlinearity test as
        ``NonlinearityTest`` in the maps' sidecars; ``source`` as ``SourceDatasets``.
    names : sequence of str, optional
        Component names (default ``ic01, ic02, ...``).
    effects_zscored : bool, default=True
        Whether the effect maps are z-scores (sets their NIfTI intent).
    force : bool, default=False
        Replace an existing ``out_dir``.
    space_img : image or path, optional
        An input image whose qform/sform codes (e.g. 4, MNI152) every output map gets
        when its affine is the mask's. Default: the first run's ``path`` when it is a
        readable image on the mask's grid (:func:`~trends_ivae.export.space.with_input_space`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    FileExistsError
        ``out_dir`` exists and ``force`` is False (nothing is written).
    ValueError
        Inconsistent shapes or run descriptions (nothing is written).
    """
    out = Path(out_dir)
    refuse_existing_dir(out, force)
    checked = _check(outputs, names, space_img)   # everything before writing anything
    with atomic_output_dir(out, force=force) as root:
        _write_checked(root, checked, effects_zscored)
    return out


def write_derivative_files(root: str | os.PathLike, outputs: FitOutputs, *, names: Sequence[str] | None = None,
                           effects_zscored: bool = True, space_img: Any = None) -> None:
    """Write :func:`write_derivatives`' files into ``root``, a folder that is being staged
    (:func:`~trends_ivae.export.outputs.atomic_output_dir`), with the same checks."""
    _write_checked(Path(root), _check(outputs, names, space_img), effects_zscored)


def _write_checked(root: Path, checked: _Checked, effects_zscored: bool) -> None:
    o = checked.outputs
    write_dataset_description(root, sources=[str(o.source)] if o.source else [])
    _write_group(root / "group", checked, effects_zscored)
    _write_runs(root, checked)


def _write_group(group: Path, checked: _Checked, effects_zscored: bool) -> None:
    """``group/``: the maps, the mask and the labels, with their sidecars."""
    o, mimg, names = checked.outputs, checked.mimg, checked.names
    k = len(names)
    group.mkdir()
    common = {"Components": names, "Parameters": dict(o.params or {})}
    if o.explained_variance is not None:
        common["ExplainedVariance"] = [float(v) for v in o.explained_variance]
        common["ExplainedVarianceUnits"] = EXPLAINED_VARIANCE_UNITS
        common["ExplainedVarianceDefinition"] = EXPLAINED_VARIANCE_DEFINITION
    if o.total_explained_variance is not None:
        common["TotalExplainedVariance"] = float(o.total_explained_variance)
    if o.stability is not None:
        common["Stability"] = [None if not np.isfinite(v) else float(v) for v in np.asarray(o.stability, float)]
        common["StabilityDefinition"] = STABILITY_DEFINITION
    if o.nonlinearity_test is not None:
        common["NonlinearityTest"] = dict(o.nonlinearity_test)
    unmask(o.group_maps, mimg, intent="z score",
           descrip="trends_ivae group regression z-maps").to_filename(group / "desc-ivae_components.nii.gz")
    _write_json(group / "desc-ivae_components.json", {
        **common, "Units": "z",
        "Description": "Group spatial maps: mean over subjects of the regression of each "
                       "subject's data on its component time courses, z-scored across "
                       "voxels; sign set so the strongest peak is positive."})
    if o.effect_maps is not None:
        unmask(o.effect_maps, mimg, intent="z score" if effects_zscored else None,
               descrip="trends_ivae decoder effect maps").to_filename(group / "desc-ivae_effects.nii.gz")
        _write_json(group / "desc-ivae_effects.json", {
            **common, "Units": "z" if effects_zscored else "arbitrary",
            "Description": "Decoder-effect maps: mean Jacobian of the iVAE decoder with "
                           "respect to each component, projected to voxels through the "
                           "reduction" + (", z-scored across voxels." if effects_zscored else ".")})
    mask_out = nib.Nifti1Image((np.asarray(mimg.dataobj) > 0).astype(np.uint8), mimg.affine)
    copy_space(mimg, mask_out)
    mask_out.to_filename(group / "desc-ivae_mask.nii.gz")
    labels = pd.DataFrame({"index": np.arange(1, k + 1), "name": names})
    if o.explained_variance is not None:
        labels["explained_variance"] = np.asarray(o.explained_variance, dtype=float)
    if o.stability is not None:
        labels["stability"] = np.asarray(o.stability, dtype=float)
    labels.to_csv(group / "desc-ivae_labels.tsv", sep="\t", index=False, float_format="%.6g", na_rep="n/a")
    if o.explained_variance is not None or o.stability is not None:
        _write_json(group / "desc-ivae_labels.json", {
            "index": {"Description": "Component number (volume of the 4-D maps, from 1)"},
            "name": {"Description": "Component name, as in the time-course columns"},
            **({"explained_variance": {"Description": EXPLAINED_VARIANCE_DEFINITION,
                                       "Units": EXPLAINED_VARIANCE_UNITS}}
               if o.explained_variance is not None else {}),
            **({"stability": {"Description": STABILITY_DEFINITION, "Units": "correlation (0 to 1)"}}
               if o.stability is not None else {}),
            **({"TotalExplainedVariance": float(o.total_explained_variance)}
               if o.total_explained_variance is not None else {})})


def _write_runs(root: Path, checked: _Checked) -> None:
    """Each run's time courses and subject maps, with their sidecars."""
    o, mimg, names = checked.outputs, checked.mimg, checked.names
    for i, (run, (folder, stem)) in enumerate(zip(o.runs, checked.stems)):
        func = root / folder
        func.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(o.timecourses[i], columns=names).to_csv(
            func / f"{stem}_timeseries.tsv", sep="\t", index=False, float_format="%.6g")
        side: dict[str, Any] = {"Columns": names,
                                "Description": "Component time courses (iVAE posterior means)"}
        if run.get("tr"):
            side["RepetitionTime"] = float(run["tr"])
            side["SamplingFrequency"] = 1.0 / float(run["tr"])
        if run.get("path"):
            side["Sources"] = [os.fspath(run["path"])]
        _write_json(func / f"{stem}_timeseries.json", side)
        smap = None if o.subject_maps is None else o.subject_maps[i]
        if smap is not None:
            if np.shape(smap) != o.group_maps.shape:
                raise ValueError(f"subject_maps[{i}] must be {o.group_maps.shape}, got {np.shape(smap)}")
            unmask(smap, mimg, intent="z score",
                   descrip="trends_ivae subject regression z-maps").to_filename(func / f"{stem}_components.nii.gz")
            _write_json(func / f"{stem}_components.json", {
                "Components": names, "Units": "z",
                "Description": "Subject spatial maps: regression of the subject's data on "
                               "its component time courses, z-scored across voxels."})


#: the unit of the explained variance in the sidecars
EXPLAINED_VARIANCE_UNITS = "fraction of the cleaned data's variance (0 to 1)"

def _check_shares(shares: Sequence[float], k: int, total: float | None) -> None:
    """Refuse explained variances that are not fractions adding up to at most 1 (or ``total``)."""
    if len(shares) != k:
        raise ValueError(f"explained_variance must have {k} values, got {len(shares)}")
    arr = np.asarray(shares, dtype=float)
    bound = 1.0 if total is None else float(total)
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.sum() > bound * (1 + 1e-6) + 1e-9:
        raise ValueError(f"explained_variance must be fractions in [0, 1] adding up to at most "
                         f"{bound:.6g} (the total); got {arr.tolist()} (sum {arr.sum():.6g})")
