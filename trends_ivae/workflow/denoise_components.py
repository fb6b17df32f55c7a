"""Remove components from runs: ``trends-ivae denoise FIT_DIR --remove ... --out DIR``.

Not to be confused with ``--denoise STRATEGY`` of ``fit`` / ``prepare`` (nilearn's fMRIPrep
confound strategies, applied before the decomposition): this removes *components of the
fitted model* from the runs afterwards.

:func:`denoise_runs` writes, for each run (the fit's own runs, or new runs of the same
space given as files), ``OUT/sub-<label>/[ses-<label>/]func/<entities>_desc-ivaedenoised_bold.nii.gz``
(+ JSON sidecar: ``Sources``, ``RemovedComponents``, ``Method``) and the derivative's
``dataset_description.json``, in one folder that appears whole
(:func:`~trends_ivae.export.outputs.atomic_output_dir`; the inputs are never written).

Methods (``method``):

``regression`` (the default)
    ``fsl_regfilt`` non-aggressive: each run's in-mask voxel data are regressed on all the
    component time courses (posterior means; both centred), and the removed components'
    fitted contribution is subtracted (:func:`trends_ivae.analysis.denoise.regfilt`). It
    uses only the time courses, whatever the decoder.
``decoder``
    The model's own estimate of the removed components' signal: ``f(z) - f(z')`` with
    ``z'`` the time courses with the removed components set to their conditional prior
    mean given u, taken back to voxels through the basis, subtracted from the run. For a
    linear decoder this is ``(z_r - m_r) A_r``: the decoder's loadings (trained as a VAE)
    instead of the least-squares ones, so it differs from ``regression`` by how far the
    two loadings differ; for a nonlinear decoder it also removes the removed components'
    interactions with the kept ones. Needs torch, and data prepared without
    standardisation (the decoder's units are then the data's).

Volumes the fit left out (``--drop-initial``) are written unchanged.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .fit import WorkflowError
from .labels import read_fit_folder

__all__ = ["DenoiseSettings", "DenoiseResult", "denoise_runs", "METHODS", "DENOISED_DESC"]

METHODS = ("regression", "decoder")
#: the BIDS desc of a denoised run
DENOISED_DESC = "ivaedenoised"


@dataclass
class DenoiseSettings:
    """Options of ``trends-ivae denoise``.

    Attributes
    ----------
    remove : list of str
        Component names (``ic03``), numbers from 1, or ``artifacts``.
    out : path
        The output folder (a BIDS derivative).
    func : list of path, optional
        New runs of the fit's space (default: the fit's own runs).
    events : list of path, optional
        One events file per new run (needed when the fit's u has a task factor).
    method : {"regression", "decoder"}, default="regression"
    aggressive : bool, default=False
        ``regression`` only: regress on the removed time courses alone.
    force : bool, default=False
        Replace an earlier output folder of the tool's.
    """

    remove: list
    out: str | os.PathLike
    func: list | None = None
    events: list | None = None
    method: str = "regression"
    aggressive: bool = False
    force: bool = False


@dataclass
class DenoiseResult:
    """The written runs, the removed components and the method."""

    out: Path
    files: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    method: str = "regression"


def _own_runs(folder: Any) -> list[dict]:
    """The fit's runs: input file, entities, time courses (from the run TSVs)."""
    runs = []
    for tsv in sorted(folder.root.glob("sub-*/**/*_desc-ivae_timeseries.tsv")):
        meta = json.loads(tsv.with_suffix(".json").read_text()) if tsv.with_suffix(".json").is_file() else {}
        sources = meta.get("Sources") or []
        if not sources or not Path(sources[0]).is_file():
            raise WorkflowError(f"{tsv.with_suffix('.json')}: the run's input file "
                                f"{sources[0] if sources else '(none recorded)'} is not there; give the runs "
                                "with --func")
        import pandas as pd

        z = pd.read_csv(tsv, sep="\t")[folder.names].to_numpy(float)
        runs.append({"path": sources[0], "timecourses": z, "stem": tsv.name})
    if not runs:
        raise WorkflowError(f"{folder.root} holds no per-run time courses (sub-*/func/*_desc-ivae_timeseries.tsv)")
    return runs


def _kept_rows(n_volumes: int, n_rows: int, path: str, drop: int) -> slice:
    if n_rows == n_volumes:
        return slice(0, n_volumes)
    if n_rows == n_volumes - drop:
        return slice(drop, n_volumes)
    raise WorkflowError(f"{path}: {n_volumes} volumes but {n_rows} time-course rows (the fit left out volumes "
                        "other than the first --drop-initial ones); such runs cannot be denoised volume by volume")


def _decoder_contributions(fit_dir: Path, runs: list, remove: list, new: bool, events: list | None,
                           method: str = "decoder") -> list:
    """f(z) - f(z') in voxels (n_kept, n_voxels) per run, and the time courses (torch, via the group layer).

    In the spatial mode (samples are voxels) only the time courses, by spatial regression on
    the maps (``None`` for the voxels); ``method="decoder"`` is refused there.
    """
    from ..group.group_ivae import GroupIVAE
    from ..group.new_runs import reduce_new_runs
    from ..group.spatial import reduced_timecourses

    model = GroupIVAE.load(fit_dir)
    spatial = getattr(model, "ica_", "temporal") == "spatial"
    if spatial and method == "decoder":
        raise WorkflowError(f"{fit_dir}: --method decoder needs a temporal fit (this one is spatial: its decoder "
                            "maps voxels, not volumes); use --method regression")
    p = model.prepared_
    if p.clean_settings.standardize:
        raise WorkflowError(f"{fit_dir}: the data were standardised when prepared, so the decoder's output is not "
                            "in the runs' units; use --method regression")
    est = model.estimator_
    if new:
        from ..data.errors import PrepareError

        try:
            xs, us = reduce_new_runs(model, [r["path"] for r in runs], events, with_u=not spatial)
        except PrepareError as exc:
            raise WorkflowError(f"{exc} (for new runs, give --events)") from None
    else:
        index = {str(r.get("file")): i for i, r in enumerate(p.runs)}
        xs, us = [], []
        for r in runs:
            rows = np.flatnonzero(np.asarray(p.run) == index[r["path"]])
            xs.append(np.asarray(p.x)[rows])
            us.append(p.u.take(rows))
    if spatial:
        return [(None, z) for z in reduced_timecourses(model, xs, [None] * len(xs))]
    out = []
    for x, u in zip(xs, us):
        z = est.transform(x, u)
        mean, _ = est.prior_params(u)
        z0 = z.copy()
        z0[:, remove] = np.asarray(mean)[:, remove]
        delta = est.inverse_transform(z.astype(np.float32)) - est.inverse_transform(z0.astype(np.float32))
        voxels = p.reconstruct(delta) - p.reconstruct(np.zeros_like(delta[:1]))
        out.append((voxels, z))
    return out


def _write_run(dst: Path, run: dict, mask: np.ndarray, clean: np.ndarray, kept: slice, sidecar: dict) -> list:
    import nibabel as nib

    from ..export.naming import derivative_stem

    img = nib.load(run["path"])
    data = np.asarray(img.get_fdata(dtype=np.float32))
    data[mask, kept] = clean.T.astype(np.float32)
    folder, stem = derivative_stem({"path": run["path"]}, desc=DENOISED_DESC)
    (dst / folder).mkdir(parents=True, exist_ok=True)
    path = dst / folder / f"{stem}_bold.nii.gz"
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    header["scl_slope"], header["scl_inter"] = np.nan, np.nan
    nib.save(nib.Nifti1Image(data, img.affine, header), path)
    path.with_name(f"{stem}_bold.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return [folder / f"{stem}_bold.nii.gz"]


def denoise_runs(fit_dir: str | os.PathLike, settings: DenoiseSettings) -> DenoiseResult:
    """Remove components from runs and write them as a BIDS derivative (see the module's docstring).

    Raises
    ------
    WorkflowError
        An unknown component or method, a run that does not fit, a missing input (nothing
        is written).
    """
    from ..analysis.denoise import components_to_remove, regfilt
    from ..data.cleaning import masked_series
    from ..data.store import read_prepared
    from ..export.outputs import atomic_output_dir, refuse_existing_dir, write_dataset_description

    s = settings
    if s.method not in METHODS:
        raise WorkflowError(f"unknown method {s.method!r}; one of {', '.join(METHODS)}")
    folder = read_fit_folder(fit_dir)
    classes = list(folder.labels["class"]) if "class" in folder.labels else None
    try:
        remove = components_to_remove(folder.names, s.remove, classes)
    except ValueError as exc:
        raise WorkflowError(f"--remove: {exc}") from None
    out = Path(s.out).absolute()
    inputs = [Path(f).absolute() for f in (s.func or [])]
    if any(out == f or out in f.parents for f in inputs) or out == folder.root.absolute():
        raise WorkflowError(f"--out {out} would hold or replace inputs: choose another folder")
    refuse_existing_dir(out, s.force)
    new = bool(s.func)
    if new:
        runs = [{"path": str(f)} for f in s.func]
    else:
        runs = _own_runs(folder)
    prepared_path = folder.root / "prepared.h5"
    if not prepared_path.is_file():
        raise WorkflowError(f"{prepared_path} is missing (fit with --keep-prepared)")
    prepared = read_prepared(prepared_path)
    drop = int(getattr(prepared.clean_settings, "drop_initial", 0) or 0)
    mask = np.asarray(folder.mask_img.dataobj) > 0
    if s.method == "decoder" or new:
        decoded = _decoder_contributions(folder.root, runs, remove, new, s.events, s.method)
        for r, (voxels, z) in zip(runs, decoded):
            r["timecourses"], r["decoded"] = z, voxels
    result = DenoiseResult(out=out, removed=[folder.names[i] for i in remove], method=s.method)
    sidecar = {"Description": "Run with components of a trends-ivae fit removed", "Sources": None,
               "RemovedComponents": result.removed, "Method": s.method, "Aggressive": bool(s.aggressive),
               "FitFolder": str(folder.root.absolute())}
    with atomic_output_dir(out, force=s.force) as tmp:
        for r in runs:
            y = masked_series(r["path"], mask)
            kept = _kept_rows(len(y), len(r["timecourses"]), r["path"], drop)
            part = y[kept].astype(np.float64)
            if s.method == "regression":
                clean = regfilt(part, r["timecourses"], remove, aggressive=s.aggressive)
            else:
                clean = part - r["decoded"]
            full = y.astype(np.float64)
            full[kept] = clean
            result.files += _write_run(tmp, r, mask, full, slice(None), {**sidecar, "Sources": [r["path"]]})
        write_dataset_description(tmp, sources=sorted({str(Path(r["path"]).parent) for r in runs}))
    result.files = [out / f for f in result.files]
    return result
