"""The prepare stage: functional runs -> (x, u) -> :class:`PreparedData`.

Passes (each streams subject by subject; with ``n_jobs > 1`` several subjects are
processed at once by joblib workers, or by Dask workers with ``scheduler="dask"``
(:mod:`trends_ivae.data.parallel`), one subject in memory per worker):

0. **Headers** (no voxel data): every run is checked to be a readable 4D image,
   on one grid (or resampled to the first with ``resample_to_first``); its TR is
   resolved (``tr`` argument > JSON sidecar > header) and u is built, so that bad
   events, windows or TRs fail before any heavy work.
1. **Mask**: one read of each run gives its mean image and which voxels are finite
   and vary in time; the mask is the given one or the intersection of
   ``compute_epi_mask`` over runs, minus non-finite and constant voxels (warned).
2. **Clean + MIGP**: each subject's runs are cleaned (:func:`clean_run`), stacked,
   written to a float32 ``.npy`` cache file, and fed to :class:`MIGP`.
3. **Project**: each subject's cached data are read back and projected on the final
   basis, ``x = (Y - voxel_mean) V`` (divided by ``scale`` when whitening).

The cache (``cache_dir``, default a temporary folder, deleted at the end) holds the
cleaned data of every subject on disk: ``n_volumes x n_voxels x 4`` bytes each. That
costs disk, not memory, and saves re-reading and re-cleaning every run in pass 3.
Peak memory is that of one subject (per worker) plus the MIGP matrix
(``n_keep x n_voxels``), whatever the number of subjects.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import tempfile
import time
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from ..data.auxiliary import RunMeta, build_aux
from ..data.bids import RunSpec
from ..data.cleaning import clean_run, confounds_summary
from ..data.errors import PrepareError
from ..data.images import header_info, load_4d, resolve_tr
from .migp import MIGP, project
from ..data.settings import DEFAULT_N_DIMS, CleanSettings, PrepareSettings, fill_doc
from .stages import (as_runs, as_settings, assemble, censor, confound_lists, denoise_keeps, finish_basis, given_mask,
                     intersect_masks, migp_dims, read_headers, run_labels, run_stats)
from ..data.store import PreparedData

logger = logging.getLogger(__name__)

__all__ = ["prepare", "transform_runs", "reduce_runs", "NewRuns", "new_run_trs", "DEFAULT_N_DIMS"]


def _clean_subject_task(runs: list[RunSpec], trs: list[float], mask_img, settings: CleanSettings,
                        cache_file: str) -> dict:
    parts = [clean_run(r, mask_img, settings, tr) for r, tr in zip(runs, trs)]
    Y = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    del parts
    np.save(cache_file, Y)
    return {"file": cache_file, "sum": Y.sum(axis=0, dtype=np.float64), "n": Y.shape[0]}


@fill_doc
def prepare(
    runs: Sequence[RunSpec] | Sequence,
    settings: PrepareSettings | None = None,
    *,
    mask=None,
    tr: float | None = None,
    verbose: int = 0,
    progress: bool = False,
) -> PreparedData:
    """Mask, clean and reduce fMRI runs to (x, u) with one spatial basis for all subjects.

    Parameters
    ----------
    runs : list of RunSpec, or list of paths / nibabel images
        From :func:`~trends_ivae.data.bids.find_bids_runs` or
        :func:`~trends_ivae.data.bids.runs_from_files` (bare images are wrapped by the
        latter: one subject per file unless the names carry ``sub-``). Runs of a
        subject need not be adjacent; the output is ordered subject by subject.
    %(settings)s
    %(mask)s
    %(tr)s
    %(verbose)s
    %(progress)s

    Returns
    -------
    PreparedData
        Write it with :func:`~trends_ivae.data.store.write_prepared`. The MIGP spectrum
        is kept in ``parameters["spectrum"]``.

    Raises
    ------
    PrepareError
        On bad input; the message names the file (or the option) and the problem.
        Subjects (or runs) that fail while being processed do not stop the others; one
        :class:`~trends_ivae.data.parallel.TaskFailures` (a ``PrepareError``) then lists
        every failed one by name.
    """
    from ..data.parallel import check_scheduler, raise_failures, run_tasks
    from ..data.progress import progress as show

    settings = as_settings(settings)
    clean, red, comp = settings.clean, settings.reduction, settings.compute
    check_scheduler(comp.scheduler, comp.n_jobs)
    if comp.dask_address is not None and comp.cache_dir is None:
        raise PrepareError("with a Dask scheduler address, give cache_dir (--cache-dir) on a file system "
                           "that every worker and this process share")
    par = dict(scheduler=comp.scheduler, n_jobs=comp.n_jobs, dask_address=comp.dask_address)
    t_start = time.perf_counter()
    log = logger.info if verbose else logger.debug
    specs = as_runs(runs)
    # group subject by subject (first appearance order), keep run order within a subject
    subjects = list(dict.fromkeys(r.subject for r in specs))
    specs = [r for s in subjects for r in specs if r.subject == s]
    names = [r.name for r in specs]

    # -- pass 0: headers, grid, TR, u -----------------------------------------
    infos, trs, target = read_headers(specs, tr, same_grid=not clean.resample)   # one TR for all runs
    metas = [RunMeta(name=n, subject=r.subject, run=label,
                     n_volumes=info["n_volumes"], tr=t, events=r.events, participant=r.participant)
             for r, n, info, t, label in zip(specs, names, infos, trs, run_labels(specs))]
    u = build_aux(settings.aux, metas)
    acquired = [m.n_volumes for m in metas]
    conf_cols = confound_lists(specs, acquired, clean)   # the columns asked for are checked first
    keeps = denoise_keeps(specs, acquired, clean)   # drop_initial, non-steady-state, the strategy's censoring
    u, metas = censor(u, metas, keeps)
    given = given_mask(mask, target, names[0], clean.resample)
    log("prepare: %d run(s) of %d subject(s); u=%s with %d level(s)", len(specs), len(subjects),
        u.spec, u.n_levels)

    # -- pass 1: mask -----------------------------------------------------------
    t0 = time.perf_counter()
    stats = list(show(run_tasks(run_stats, [(n, (r, target, clean.resample), {}) for n, r in zip(names, specs)],
                                **par),
                      enabled=progress, desc="prepare: mask", total=len(specs), unit="run"))
    raise_failures(stats, "run(s)")
    region = None if given is None else np.asarray(given.dataobj).astype(bool)
    mask_arr = intersect_masks([o.result for o in stats], names, region)
    n_voxels = int(mask_arr.sum())
    mask_img = nib.Nifti1Image(mask_arr.astype(np.uint8), target.affine)
    log("prepare: mask of %d voxels (%s) in %.1f s", n_voxels,
        "given" if given is not None else "EPI intersection", time.perf_counter() - t0)

    n_total = sum(m.n_volumes for m in metas)
    d = migp_dims(red.n_dims, n_voxels, n_total)

    # -- pass 2: clean, cache, MIGP ---------------------------------------------------
    t0 = time.perf_counter()
    migp = MIGP(d or 1, n_keep=max(red.n_keep, d or 1) if red.n_keep else None, subject_dims=red.subject_dims)
    by_subject = [[i for i, r in enumerate(specs) if r.subject == s] for s in subjects]
    tmp = tempfile.TemporaryDirectory(prefix="trends_ivae_prepare_", dir=comp.cache_dir)
    try:
        jobs = [(f"sub-{subjects[k]}", ([specs[i] for i in idx], [trs[i] for i in idx], mask_img, clean,
                                        str(Path(tmp.name) / f"subject{k:05d}.npy")), {})
                for k, idx in enumerate(by_subject)]
        cache_files, voxel_sum, outcomes, subject_ss = [], np.zeros(n_voxels), [], []
        cleaned = show(run_tasks(_clean_subject_task, jobs, **par), enabled=progress,
                       desc="prepare: clean and reduce", total=len(jobs), unit="subject")
        for k, out in enumerate(cleaned):
            outcomes.append(out)
            if not out.ok:
                logger.warning("prepare: %s failed: %s", out.name, out.error)
            if len(cache_files) < len(outcomes) - 1 or not out.ok:   # a failure: finish the others only
                continue
            res = out.result
            Y = np.load(res["file"])
            before = migp.total_ss_
            migp.partial_fit(Y)
            subject_ss.append(migp.total_ss_ - before)   # the denominators of the explained variance
            del Y
            voxel_sum += res["sum"]
            cache_files.append(res["file"])
            log("prepare: subject %d/%d sub-%s cleaned and reduced (%d volumes, %.1f s elapsed)",
                k + 1, len(subjects), subjects[k], res["n"], time.perf_counter() - t0)
        raise_failures(outcomes)
        reduced = finish_basis(migp, d, n_voxels, n_total, voxel_sum, red.whiten, mask=mask_arr)
        if reduced.order is not None:
            log("prepare: n_dims auto: %s", reduced.order.describe())

        # -- pass 3: project ----------------------------------------------------------
        x = np.empty((n_total, reduced.d), dtype=np.float32)
        row = 0
        for f in cache_files:
            Y = np.load(f, mmap_mode="r")
            x[row:row + Y.shape[0]] = project(np.asarray(Y), reduced.basis, reduced.voxel_mean, reduced.scale)
            row += Y.shape[0]
            del Y
    finally:
        tmp.cleanup()

    rows = [{"file": m.name, "entities": {k: str(v) for k, v in r.entities.items()},
             "events": str(r.events) if isinstance(r.events, (str, Path)) else None, "confounds": cols,
             **({"censoring": {"n_volumes_acquired": n_acq, "censored": [int(v) for v in np.flatnonzero(~keep)]}}
                if not keep.all() else {})}
            for m, r, cols, n_acq, keep in zip(metas, specs, conf_cols, acquired, keeps)]
    data = assemble(
        x=x, u=u, metas=metas, keeps=keeps, subjects=subjects, rows=rows, reduced=reduced, mask=mask_arr,
        affine=target.affine, settings=settings,
        record={"tr_override": tr,
                "mask": str(mask) if isinstance(mask, (str, Path)) else ("<image>" if mask is not None else None),
                "mask_source": "given" if mask is not None else "epi_intersection",
                "confounds_regressed": confounds_summary(conf_cols), "subject_sums_of_squares": subject_ss})
    log("prepare: done, x %s, %.1f s", x.shape, time.perf_counter() - t_start)
    return data


@dataclasses.dataclass
class NewRuns:
    """New runs cleaned and reduced as in a fit (:func:`reduce_runs`).

    Attributes
    ----------
    xs : list of ndarray (n_kept, d)
        Each run's reduced data, its kept volumes only.
    keeps : list of bool ndarray (n_acquired,)
        Each run's kept volumes among those acquired.
    trs : list of float
        Each run's TR (the fit's).
    """

    xs: list
    keeps: list
    trs: list


def new_run_trs(runs: Sequence[RunSpec], prepared: PreparedData, tr: float | None = None) -> list[float]:
    """The TR of each new run, checked against the TR at which ``prepared``'s runs were cleaned.

    A run's TR is ``tr`` when given, else the fit's own TR override when it had one
    (``parameters["tr_override"]``: the follow-up is cleaned as the fit was), else its
    sidecar's ``RepetitionTime``, else its header's.

    Raises
    ------
    PrepareError
        A run whose TR differs from the fit's (it would be filtered at the wrong rate and
        its u built on another time axis), or whose sidecar contradicts the fit's TR
        override; the message names the run, both TRs and what to do.
    """
    fit_trs = sorted({round(float(r["tr"]), 6) for r in prepared.runs if r.get("tr")} or {round(float(prepared.tr), 6)})
    fit_override = (prepared.parameters or {}).get("tr_override")
    said = " or ".join(f"{t:g}" for t in fit_trs)
    out = []
    for r in runs:
        if tr is not None:
            t, source = resolve_tr(r.name, override=tr, sidecar=None, header=None), "the tr given (--tr)"
        elif fit_override is not None:
            t, source = float(fit_override), "the fit's --tr"
            if r.tr is not None and abs(float(r.tr) - t) > 1e-3 * t:
                raise PrepareError(f"run {r.name!r}: its sidecar says RepetitionTime {float(r.tr):g} s, but the fit "
                                   f"was cleaned at TR {t:g} s (its --tr); resample the run to {t:g} s first, or, "
                                   f"if its sidecar is wrong, pass tr={t:g} (--tr {t:g}) to clean it at {t:g} s")
        else:
            info = header_info(load_4d(r.img))
            t = resolve_tr(r.name, override=None, sidecar=r.tr, header=info["header_tr"])
            source = "its sidecar" if r.tr is not None else "its header"
        if not any(abs(t - f) <= 1e-3 * f for f in fit_trs):
            raise PrepareError(f"run {r.name!r} has TR {t:g} s ({source}) but the fit's runs were cleaned at TR "
                               f"{said} s: it would be filtered at the wrong rate and its u built on another time "
                               f"axis; resample it to {said} s first, or, if its TR is wrong, pass tr={fit_trs[0]:g} "
                               f"(--tr {fit_trs[0]:g})")
        out.append(t)
    return out


def _fit_clean(specs: list[RunSpec], prepared: PreparedData) -> tuple[list[RunSpec], CleanSettings]:
    """The runs and the cleaning of ``prepared``, for new runs: the confound columns its runs
    regressed (a new run's confounds are ignored when the fit regressed none).

    Raises
    ------
    PrepareError
        The fit regressed confounds from every run and a new run has none.
    """
    clean = prepared.clean_settings
    regressed = (prepared.parameters or {}).get("confounds_regressed") or {}
    columns = regressed.get("columns") or []
    if clean.denoise:
        return specs, clean
    if not columns:
        return [dataclasses.replace(r, confounds=None) for r in specs], clean
    if regressed.get("n_runs") != regressed.get("n_runs_total"):
        return specs, clean
    missing = [r.name for r in specs if r.confounds is None]
    if missing:
        raise PrepareError(f"the fit regressed confounds from each of its runs ({', '.join(columns[:5])}"
                           f"{' ...' if len(columns) > 5 else ''}), but run {missing[0]!r} has no confounds table: "
                           "give each new run its confounds (confounds=..., --confounds-file)")
    if clean.confounds is None:   # every column of the fit's tables: those columns, by name
        clean = dataclasses.replace(clean, confounds=[glob.escape(c) for c in columns])
    return specs, clean


def reduce_runs(runs: Sequence[RunSpec] | Sequence, prepared: PreparedData, *,
                tr: float | None = None) -> NewRuns:
    """Clean new runs as ``prepared``'s runs were (its record), and project them on its basis.

    What ran is read from the store: the mask, the cleaning (detrending, filters at the
    fit's TR, standardisation, smoothing, the confound columns it regressed, the
    volumes left out: ``drop_initial``, non-steady-state volumes, a denoising
    strategy's censoring), the basis, the group mean and the scale.

    Parameters
    ----------
    runs : list of RunSpec or images
        New runs on the grid of ``prepared`` (resampled when it was prepared with
        ``resample_to_first``).
    prepared : PreparedData
    tr : float, optional
        The runs' TR (when a file lacks one, or its own is wrong); see :func:`new_run_trs`.

    Returns
    -------
    NewRuns

    Raises
    ------
    PrepareError
        A run at another TR than the fit's, without the confounds the fit regressed, or
        that cannot be cleaned.
    """
    specs = as_runs(runs)
    trs = new_run_trs(specs, prepared, tr)
    specs, clean = _fit_clean(specs, prepared)
    acquired = [header_info(load_4d(r.img))["n_volumes"] for r in specs]
    keeps = denoise_keeps(specs, acquired, clean)
    mask_img = prepared.mask_img()
    xs = [project(clean_run(r, mask_img, clean, t), prepared.basis, prepared.voxel_mean, prepared.scale)
          for r, t in zip(specs, trs)]
    return NewRuns(xs=xs, keeps=keeps, trs=trs)


def transform_runs(runs: Sequence[RunSpec] | Sequence, prepared: PreparedData, *,
                   tr: float | None = None) -> list[np.ndarray]:
    """Clean new runs like ``prepared`` and project them on its basis: :func:`reduce_runs`'s ``xs``.

    Returns
    -------
    list of ndarray
        One ``(n_kept, d)`` float32 array per run.
    """
    return reduce_runs(runs, prepared, tr=tr).xs
