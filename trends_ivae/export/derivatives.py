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
names are re-exported here). This module is independent of the prepared store: it takes plain arrays, a
mask image and run descriptions (dicts). numpy, nibabel, pandas and json only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from ..group.backprojection import EXPLAINED_VARIANCE_DEFINITION   # numpy only
from .naming import component_names, derivative_stem, run_entities
from .outputs import (MANIFEST_NAME, ForeignFilesError, atomic_output_dir, foreign_files, read_manifest,
                      record_outputs, remove_own_outputs, write_dataset_description)

__all__ = [
    "write_derivatives",
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
    _copy_space(mimg, img)
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
def write_derivatives(
    out_dir: str | os.PathLike,
    *,
    mask_img: nib.spatialimages.SpatialImage | str | os.PathLike,
    group_maps: np.ndarray,
    effect_maps: np.ndarray | None = None,
    runs: Sequence[Mapping[str, Any]] = (),
    timecourses: Sequence[np.ndarray] = (),
    subject_maps: Sequence[np.ndarray | None] | None = None,
    params: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    explained_variance: Sequence[float] | None = None,
    total_explained_variance: float | None = None,
    stability: Sequence[float] | None = None,
    effects_zscored: bool = True,
    source: str | None = None,
    extra: Callable[[Path], None] | None = None,
    force: bool = False,
    space_img: nib.spatialimages.SpatialImage | str | os.PathLike | None = None,
    nonlinearity_test: Mapping[str, Any] | None = None,
) -> Path:
    """Write the maps and time courses of a fit as a BIDS-derivatives dataset.

    Parameters
    ----------
    out_dir : path
        Output folder; refused if it exists, unless ``force`` (then replaced as a whole).
    mask_img : image or path
        3-D mask (voxels > 0) on the input grid; its affine and qform/sform codes are
        copied to every map.
    group_maps : ndarray (k, n_voxels)
        Group z-maps (``BackProjection.maps``).
    effect_maps : ndarray (k, n_voxels), optional
        Decoder-effect maps (``BackProjection.effect_maps``).
    runs : sequence of dict
        One per input run: the input's file (``path`` or ``stem``, a BIDS name whose
        entities are kept) and/or entities (``sub`` required, ``ses``, ``task``, ``acq``,
        ``run``, ``space`` ...), and optionally ``tr`` (seconds).
    timecourses : sequence of ndarray (n_volumes, k)
        One per run, in component order (``BackProjection.timecourses``, split by run).
    subject_maps : sequence of ndarray (k, n_voxels) or None, optional
        One per run (a subject's maps may repeat for each of its runs); None entries or a
        None sequence write no subject maps.
    params : dict, optional
        Parameters of the fit, stored in the group sidecars (JSON-serialisable; numpy
        values are converted).
    names : sequence of str, optional
        Component names (default ``ic01, ic02, ...``).
    explained_variance : sequence of float, optional
        Each component's share of the cleaned data's variance (fractions in [0, 1],
        ``GroupIVAE.explained_variance_``): added to the labels TSV (its JSON sidecar gives
        the definition and the unit) and to the maps' sidecars (``ExplainedVariance``, with
        ``ExplainedVarianceUnits`` and ``ExplainedVarianceDefinition``).
    total_explained_variance : float, optional
        The fraction all components explain together (R^2), written as
        ``TotalExplainedVariance`` in the maps' sidecars.
    stability : sequence of float, optional
        Each component's stability index across restarts (``GroupIVAE.stability_``,
        NaN with one restart): a ``stability`` column of the labels TSV (``n/a`` when
        NaN) and ``Stability`` in the maps' sidecars, with its definition.
    nonlinearity_test : mapping, optional
        The held-out nonlinearity test (``NonlinearityTest.to_dict()``):
        ``NonlinearityTest`` in the maps' sidecars.
    effects_zscored : bool
        Whether the effect maps are z-scores (sets their NIfTI intent).
    source : str, optional
        The input dataset, recorded as ``SourceDatasets``.
    extra : callable, optional
        ``extra(tmp_root)`` is called before the move, to add more files (model
        checkpoint, configuration, prepared store) to the same atomic write.
    force : bool
        Replace an existing ``out_dir``.
    space_img : image or path, optional
        An input image whose qform/sform codes (e.g. 4, MNI152) every output map gets
        when its affine is the mask's. Default: the first run's ``path`` when it is a
        readable image on the mask's grid. A mask computed by nilearn carries generic
        codes (qform 1, sform 2), so without this the maps would lose the input's space.

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
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force) to overwrite")

    # -- validate everything before writing anything
    mimg = _with_input_space(load_mask(mask_img), space_img, runs)
    n_vox = int((np.asarray(mimg.dataobj) > 0).sum())
    group_maps = np.asarray(group_maps)
    if group_maps.ndim != 2 or group_maps.shape[1] != n_vox:
        raise ValueError(f"group_maps must be (k, {n_vox}) for this mask, got {group_maps.shape}")
    k = group_maps.shape[0]
    if effect_maps is not None:
        effect_maps = np.asarray(effect_maps)
        if effect_maps.shape != group_maps.shape:
            raise ValueError(f"effect_maps {effect_maps.shape} must match group_maps {group_maps.shape}")
    names = list(names) if names is not None else component_names(k)
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"names must be {k} distinct strings, got {names}")
    if explained_variance is not None:
        _check_shares(explained_variance, k, total_explained_variance)
    if stability is not None and len(stability) != k:
        raise ValueError(f"stability must have {k} values, got {len(stability)}")
    runs = list(runs)
    timecourses = [np.asarray(t) for t in timecourses]
    if len(timecourses) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(timecourses)} time-course arrays")
    for i, t in enumerate(timecourses):
        if t.ndim != 2 or t.shape[1] != k:
            raise ValueError(f"timecourses[{i}] must be (n_volumes, {k}), got {t.shape}")
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
    params = dict(params or {})

    with atomic_output_dir(out, force=force) as root:
        write_dataset_description(root, sources=[str(source)] if source else [])

        group = root / "group"
        group.mkdir()
        common = {"Components": names, "Parameters": params}
        if explained_variance is not None:
            common["ExplainedVariance"] = [float(v) for v in explained_variance]
            common["ExplainedVarianceUnits"] = EXPLAINED_VARIANCE_UNITS
            common["ExplainedVarianceDefinition"] = EXPLAINED_VARIANCE_DEFINITION
        if total_explained_variance is not None:
            common["TotalExplainedVariance"] = float(total_explained_variance)
        if stability is not None:
            common["Stability"] = [None if not np.isfinite(v) else float(v) for v in np.asarray(stability, float)]
            common["StabilityDefinition"] = STABILITY_DEFINITION
        if nonlinearity_test is not None:
            common["NonlinearityTest"] = dict(nonlinearity_test)
        unmask(group_maps, mimg, intent="z score",
               descrip="trends_ivae group regression z-maps").to_filename(
            group / "desc-ivae_components.nii.gz")
        _write_json(group / "desc-ivae_components.json", {
            **common, "Units": "z",
            "Description": "Group spatial maps: mean over subjects of the regression of each "
                           "subject's data on its component time courses, z-scored across "
                           "voxels; sign set so the strongest peak is positive."})
        if effect_maps is not None:
            unmask(effect_maps, mimg, intent="z score" if effects_zscored else None,
                   descrip="trends_ivae decoder effect maps").to_filename(
                group / "desc-ivae_effects.nii.gz")
            _write_json(group / "desc-ivae_effects.json", {
                **common, "Units": "z" if effects_zscored else "arbitrary",
                "Description": "Decoder-effect maps: mean Jacobian of the iVAE decoder with "
                               "respect to each component, projected to voxels through the "
                               "reduction" + (", z-scored across voxels." if effects_zscored else ".")})
        mask_data = (np.asarray(mimg.dataobj) > 0).astype(np.uint8)
        mask_out = nib.Nifti1Image(mask_data, mimg.affine)
        _copy_space(mimg, mask_out)
        mask_out.to_filename(group / "desc-ivae_mask.nii.gz")
        labels = pd.DataFrame({"index": np.arange(1, k + 1), "name": names})
        if explained_variance is not None:
            labels["explained_variance"] = np.asarray(explained_variance, dtype=float)
        if stability is not None:
            labels["stability"] = np.asarray(stability, dtype=float)
        labels.to_csv(group / "desc-ivae_labels.tsv", sep="\t", index=False, float_format="%.6g", na_rep="n/a")
        if explained_variance is not None or stability is not None:
            _write_json(group / "desc-ivae_labels.json", {
                "index": {"Description": "Component number (volume of the 4-D maps, from 1)"},
                "name": {"Description": "Component name, as in the time-course columns"},
                **({"explained_variance": {"Description": EXPLAINED_VARIANCE_DEFINITION,
                                           "Units": EXPLAINED_VARIANCE_UNITS}}
                   if explained_variance is not None else {}),
                **({"stability": {"Description": STABILITY_DEFINITION, "Units": "correlation (0 to 1)"}}
                   if stability is not None else {}),
                **({"TotalExplainedVariance": float(total_explained_variance)}
                   if total_explained_variance is not None else {})})

        for i, (run, (folder, stem)) in enumerate(zip(runs, stems)):
            func = root / folder
            func.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(timecourses[i], columns=names).to_csv(
                func / f"{stem}_timeseries.tsv", sep="\t", index=False, float_format="%.6g")
            side: dict[str, Any] = {"Columns": names,
                                    "Description": "Component time courses (iVAE posterior means)"}
            if run.get("tr"):
                side["RepetitionTime"] = float(run["tr"])
                side["SamplingFrequency"] = 1.0 / float(run["tr"])
            if run.get("path"):
                side["Sources"] = [os.fspath(run["path"])]
            _write_json(func / f"{stem}_timeseries.json", side)
            smap = None if subject_maps is None else subject_maps[i]
            if smap is not None:
                if np.shape(smap) != group_maps.shape:
                    raise ValueError(f"subject_maps[{i}] must be {group_maps.shape}, got {np.shape(smap)}")
                unmask(smap, mimg, intent="z score",
                       descrip="trends_ivae subject regression z-maps").to_filename(
                    func / f"{stem}_components.nii.gz")
                _write_json(func / f"{stem}_components.json", {
                    "Components": names, "Units": "z",
                    "Description": "Subject spatial maps: regression of the subject's data on "
                                   "its component time courses, z-scored across voxels."})
        if extra is not None:
            extra(root)
    return out


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


def _with_input_space(mimg: nib.spatialimages.SpatialImage, space_img: Any,
                      runs: Sequence[Mapping[str, Any]]) -> nib.spatialimages.SpatialImage:
    """The mask with the qform/sform codes of the input (``space_img`` or the first run's
    file) when that image lies on the mask's grid; the mask unchanged otherwise."""
    ref = space_img
    if ref is None:
        paths = [r.get("path") for r in runs if r.get("path")]
        ref = paths[0] if paths else None
    if ref is None:
        return mimg
    try:
        rimg = nib.load(str(ref)) if isinstance(ref, (str, os.PathLike)) else ref
        hdr = rimg.header
        if not isinstance(hdr, nib.Nifti1Header) or not np.allclose(rimg.affine, mimg.affine, atol=1e-4):
            return mimg
        if tuple(rimg.shape[:3]) != tuple(mimg.shape[:3]):
            return mimg
        qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    except (OSError, ValueError, TypeError, nib.filebasedimages.ImageFileError):
        return mimg
    if not (qcode or scode):
        return mimg
    out = nib.Nifti1Image(np.asarray(mimg.dataobj), mimg.affine)
    out.header.set_qform(mimg.affine, code=qcode or scode)
    out.header.set_sform(mimg.affine, code=scode or qcode)
    if isinstance(mimg.header, nib.Nifti1Header):
        out.header.set_xyzt_units(*mimg.header.get_xyzt_units())
    return out


def _copy_space(src: nib.spatialimages.SpatialImage, dst: nib.Nifti1Image) -> None:
    hdr = src.header if isinstance(src.header, nib.Nifti1Header) else None
    dst.header.set_qform(src.affine, code=int(hdr["qform_code"]) if hdr is not None and hdr["qform_code"] else 1)
    dst.header.set_sform(src.affine, code=int(hdr["sform_code"]) if hdr is not None and hdr["sform_code"] else 1)
