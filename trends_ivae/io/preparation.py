"""The prepare stage: functional runs -> (x, u) -> :class:`PreparedData`.

Passes (each streams subject by subject; with ``n_jobs > 1`` several subjects are
processed at once by joblib workers, or by Dask workers with ``scheduler="dask"``
(:mod:`trends_ivae.io.parallel`), one subject in memory per worker):

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
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from .auxiliary import RunMeta, build_aux, take_rows
from .bids import RunSpec, runs_from_files
from .cleaning import (clean_run, confound_columns, confounds_summary, denoise_confounds, epi_mask,
                       run_statistics)
from .images import PrepareError, check_same_grid, header_info, load_4d, load_mask, resolve_tr
from .reduction import MIGP, project
from .settings import AUTO, DEFAULT_N_DIMS, CleanSettings, PrepareSettings, fill_doc, is_auto
from .store import PreparedData, package_versions

logger = logging.getLogger(__name__)

__all__ = ["prepare", "transform_runs", "DEFAULT_N_DIMS"]



def resolve_n_dims(n_dims: int, n_voxels: int, n_total: int) -> int:
    """The reduced dimension: ``n_dims``, lowered (with a warning) to what ``n_voxels``
    voxels and ``n_total`` volumes allow."""
    d = int(n_dims)
    if d < 1:
        raise PrepareError(f"n_dims must be >= 1, got {n_dims}")
    if d > min(n_voxels, n_total - 1):
        new_d = max(1, min(n_voxels, n_total - 1))
        warnings.warn(f"n_dims={d} exceeds what the data allow ({n_voxels} voxels, {n_total} volumes); "
                      f"using {new_d}", UserWarning, stacklevel=3)
        d = new_d
    return d


def _migp_dims(n_dims, n_voxels: int, n_total: int) -> int | None:
    """The reduced dimension known before the data are seen (None for ``"auto"``)."""
    return None if is_auto(n_dims) else resolve_n_dims(n_dims, n_voxels, n_total)


def choose_n_dims(migp: MIGP, d: int | None, n_voxels: int, n_total: int):
    """``(d, order)``: ``d`` as given, or the estimated model order once MIGP has seen the data.

    With ``d`` None the order is Minka's Laplace estimate (:mod:`trends_ivae.io.order`)
    on the MIGP spectrum, capped by what the data allow; ``migp.n_dims`` is set to it.
    ``order`` is the :class:`~trends_ivae.io.order.OrderEstimate` (None when ``d`` was given).
    """
    if d is not None:
        return d, None
    from .order import estimate_order

    s = migp.spectrum()
    cap = max(1, min(n_voxels, n_total - 1, s.size - 1))
    try:
        order = estimate_order(s ** 2 / n_voxels, n_voxels, max_order=cap)
    except ValueError as exc:
        raise PrepareError(f"the model order cannot be estimated: {exc}; give n_dims") from exc
    migp.n_dims = order.n_components
    return order.n_components, order


def spectrum_record(migp: MIGP, n_voxels: int) -> dict:
    """The MIGP spectrum as stored in ``parameters["spectrum"]`` (for a later ``auto`` order)."""
    return {"singular_values": [float(v) for v in migp.spectrum()], "n_voxels": int(n_voxels),
            "of": "the MIGP running matrix (rows x voxels)"}


def _run_labels(specs: Sequence[RunSpec]) -> list[str]:
    """Each run's ``run`` entity, or its 1-based position among its subject's runs."""
    seen: dict[str, int] = {}
    labels = []
    for r in specs:
        seen[r.subject] = seen.get(r.subject, 0) + 1
        labels.append(str(r.entities.get("run", seen[r.subject])))
    return labels


def _as_runs(runs) -> list[RunSpec]:
    if isinstance(runs, (RunSpec, str, Path, nib.spatialimages.SpatialImage)):
        runs = [runs]
    runs = list(runs)
    if not runs:
        raise PrepareError("no run given")
    if all(isinstance(r, RunSpec) for r in runs):
        return runs
    if any(isinstance(r, RunSpec) for r in runs):
        raise PrepareError("give either RunSpec objects or images, not a mix")
    return runs_from_files(runs)


class _Grid:
    """Shape and affine of the target grid, for grid comparisons and resampling."""

    def __init__(self, shape, affine):
        self.shape = shape
        self.affine = affine


def _stats_task(run: RunSpec, target, resample: bool) -> dict:
    stats = run_statistics(run.img, target=target, resample=resample)
    stats["epi"] = epi_mask(stats.pop("mean"), stats["affine"])
    return stats


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
    **options,
) -> PreparedData:
    """Mask, clean and reduce fMRI runs to (x, u) with one spatial basis for all subjects.

    Parameters
    ----------
    runs : list of RunSpec, or list of paths / nibabel images
        From :func:`~trends_ivae.io.bids.find_bids_runs` or
        :func:`~trends_ivae.io.bids.runs_from_files` (bare images are wrapped by the
        latter: one subject per file unless the names carry ``sub-``). Runs of a
        subject need not be adjacent; the output is ordered subject by subject.
    %(settings)s
    %(mask)s
    %(tr)s
    %(verbose)s
    %(progress)s
    %(options)s

    Returns
    -------
    PreparedData
        Write it with :func:`~trends_ivae.io.store.write_prepared`. The MIGP spectrum
        is kept in ``parameters["spectrum"]``.

    Raises
    ------
    PrepareError
        On bad input; the message names the file (or the option) and the problem.
        Subjects (or runs) that fail while being processed do not stop the others; one
        :class:`~trends_ivae.io.parallel.TaskFailures` (a ``PrepareError``) then lists
        every failed one by name.
    """
    settings = PrepareSettings.from_options(settings, **options)
    clean, aux_spec, red, comp = settings.clean, settings.aux, settings.reduction, settings.compute
    window, step, hrf_delay = aux_spec.window, aux_spec.step, aux_spec.hrf_delay
    min_event_duration, aux_combine = aux_spec.min_event_duration, aux_spec.combine
    n_dims, whiten, n_keep, subject_dims = red.n_dims, red.whiten, red.n_keep, red.subject_dims
    n_jobs, cache_dir, scheduler, dask_address = comp.n_jobs, comp.cache_dir, comp.scheduler, comp.dask_address
    resample_to_first, denoise = clean.resample, clean.denoise
    from .parallel import _check, raise_failures, run_tasks
    from .progress import progress as show

    _check(scheduler, n_jobs)
    if dask_address is not None and cache_dir is None:
        raise PrepareError("with a Dask scheduler address, give cache_dir (--cache-dir) on a file system "
                           "that every worker and this process share")
    par = dict(scheduler=scheduler, n_jobs=n_jobs, dask_address=dask_address)
    t_start = time.perf_counter()
    log = logger.info if verbose else logger.debug
    specs = _as_runs(runs)
    # group subject by subject (first appearance order), keep run order within a subject
    subjects = list(dict.fromkeys(r.subject for r in specs))
    specs = [r for s in subjects for r in specs if r.subject == s]
    names = [r.name for r in specs]

    # -- pass 0: headers, grid, TR, u -----------------------------------------
    infos = [header_info(load_4d(r.img)) for r in specs]
    if not resample_to_first:
        check_same_grid(infos, names)
    target = _Grid(infos[0]["shape"], infos[0]["affine"])
    trs = [resolve_tr(n, override=tr, sidecar=r.tr, header=i["header_tr"])
           for r, n, i in zip(specs, names, infos)]
    if len(set(np.round(trs, 6))) > 1:
        warnings.warn(f"runs have different TRs {sorted(set(trs))}; each run is filtered with its own",
                      UserWarning, stacklevel=2)
    run_labels = _run_labels(specs)
    metas = [RunMeta(name=n, subject=r.subject, run=label,
                     n_volumes=info["n_volumes"], tr=t, events=r.events, participant=r.participant)
             for r, n, info, t, label in zip(specs, names, infos, trs, run_labels)]
    u = build_aux(aux_spec, metas)
    acquired = [m.n_volumes for m in metas]
    if denoise:   # the strategy's sample masks, cheap (the confounds tables only)
        keeps = [denoise_confounds(r.img, denoise, m.n_volumes, m.name)[1] for r, m in zip(specs, metas)]
        for m, keep in zip(metas, keeps):
            if keep.sum() < 2:
                raise PrepareError(f"denoise={denoise!r} censors {int((~keep).sum())} of the {m.n_volumes} "
                                   f"volumes of {m.name!r}, leaving fewer than 2")
        u = take_rows(u, np.concatenate(keeps))
        metas = [dataclasses.replace(m, n_volumes=int(keep.sum())) for m, keep in zip(metas, keeps)]
    else:
        keeps = [np.ones(n, dtype=bool) for n in acquired]
    # confounds are cheap to check before the heavy passes; what each run regresses is recorded
    conf_cols = [[] if denoise else confound_columns(r.confounds, clean.confounds, m.n_volumes, m.name)
                 for r, m in zip(specs, metas)]
    given_mask = None
    if mask is not None:
        given_mask = load_mask(mask)
        same = given_mask.shape == target.shape and np.allclose(given_mask.affine, target.affine, atol=1e-3)
        if not same:
            if not resample_to_first:
                raise PrepareError(
                    f"mask {mask if isinstance(mask, (str, Path)) else '<image>'!s} (shape "
                    f"{given_mask.shape}) is not on the grid of {names[0]!r} (shape {target.shape}); "
                    "pass resample_to_first=True (--resample-to-first) to resample it"
                )
            from nilearn.image import resample_img

            given_mask = resample_img(given_mask, target_affine=target.affine, target_shape=target.shape,
                                      interpolation="nearest", force_resample=True, copy_header=True)
    log("prepare: %d run(s) of %d subject(s); u=%s with %d level(s)", len(specs), len(subjects),
        u.spec, u.n_levels)

    # -- pass 1: mask -----------------------------------------------------------
    t0 = time.perf_counter()
    keep = None if given_mask is None else np.asarray(given_mask.dataobj).astype(bool)
    epi = None
    keep_valid = None
    bad_finite, bad_const = [], []
    stats = list(show(run_tasks(_stats_task, [(n, (r, target, resample_to_first), {})
                                              for n, r in zip(names, specs)], **par),
                      enabled=progress, desc="prepare: mask", total=len(specs), unit="run"))
    raise_failures(stats, "run(s)")
    for name, st in zip(names, (o.result for o in stats)):
        region = keep if keep is not None else st["epi"]
        n_nan = int((region & ~st["finite"]).sum())
        n_const = int((region & st["finite"] & ~st["varying"]).sum())
        if n_nan:
            bad_finite.append(f"{name!r} ({n_nan})")
        if n_const:
            bad_const.append(f"{name!r} ({n_const})")
        if given_mask is None:
            epi = st["epi"] if epi is None else (epi & st["epi"])
        valid = st["finite"] & st["varying"]
        keep_valid = valid if keep_valid is None else keep_valid & valid
    mask_arr = (epi if given_mask is None else keep) & keep_valid
    if bad_finite:
        warnings.warn("voxels with NaN/inf values dropped from the mask: " + ", ".join(bad_finite),
                      UserWarning, stacklevel=2)
    if bad_const:
        warnings.warn("voxels constant in time dropped from the mask: " + ", ".join(bad_const),
                      UserWarning, stacklevel=2)
    n_voxels = int(mask_arr.sum())
    if n_voxels == 0:
        raise PrepareError(f"the mask is empty after removing NaN/constant voxels (first run {names[0]!r})")
    mask_img = nib.Nifti1Image(mask_arr.astype(np.uint8), target.affine)
    log("prepare: mask of %d voxels (%s) in %.1f s", n_voxels,
        "given" if given_mask is not None else "EPI intersection", time.perf_counter() - t0)

    n_total = sum(m.n_volumes for m in metas)
    d = _migp_dims(n_dims, n_voxels, n_total)

    # -- pass 2: clean, cache, MIGP ---------------------------------------------------
    t0 = time.perf_counter()
    migp = MIGP(d or 1, n_keep=max(n_keep, d or 1) if n_keep else None, subject_dims=subject_dims)
    by_subject = [[i for i, r in enumerate(specs) if r.subject == s] for s in subjects]
    tmp = tempfile.TemporaryDirectory(prefix="trends_ivae_prepare_", dir=cache_dir)
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
        d, order = choose_n_dims(migp, d, n_voxels, n_total)
        if order is not None:
            log("prepare: n_dims auto: %s", order.describe())
        try:
            basis, sing = migp.basis()
        except ValueError as exc:
            raise PrepareError(f"group PCA failed: {exc}; lower n_dims") from exc
        voxel_mean = (voxel_sum / n_total).astype(np.float32)
        scale = (sing / np.sqrt(max(n_total - 1, 1))).astype(np.float32) if whiten \
            else np.ones(d, np.float32)

        # -- pass 3: project ----------------------------------------------------------
        x = np.empty((n_total, d), dtype=np.float32)
        row = 0
        for f in cache_files:
            Y = np.load(f, mmap_mode="r")
            x[row:row + Y.shape[0]] = project(np.asarray(Y), basis, voxel_mean, scale)
            row += Y.shape[0]
            del Y
    finally:
        tmp.cleanup()

    subject_idx = np.concatenate([np.full(m.n_volumes, subjects.index(m.subject)) for m in metas])
    run_idx = np.concatenate([np.full(m.n_volumes, i) for i, m in enumerate(metas)])
    volume = np.concatenate([np.flatnonzero(keep) for keep in keeps])   # acquired volume numbers
    starts = np.concatenate([[0], np.cumsum([m.n_volumes for m in metas])[:-1]])
    run_table = [{
        "subject": m.subject, "subject_index": subjects.index(m.subject), "run": m.run,
        "file": m.name, "n_volumes": m.n_volumes, "tr": m.tr, "start": int(s),
        "entities": {k: str(v) for k, v in r.entities.items()},
        "events": str(r.events) if isinstance(r.events, (str, Path)) else None,
        "confounds": cols,
        **({"n_volumes_acquired": n_acq, "censored": [int(v) for v in np.flatnonzero(~keep)]} if denoise else {}),
    } for m, r, s, cols, n_acq, keep in zip(metas, specs, starts, conf_cols, acquired, keeps)]
    parameters = {
        "aux": u.spec, "window": window, "step": step, "hrf_delay": hrf_delay,
        "min_event_duration": min_event_duration, "aux_combine": aux_combine,
        "n_dims": d, "n_dims_requested": AUTO if is_auto(n_dims) else int(n_dims), "whiten": bool(whiten),
        "order": None if order is None else order.to_dict(), "spectrum": spectrum_record(migp, n_voxels),
        "n_keep": migp.n_keep, "subject_dims": subject_dims, "tr_override": tr,
        "mask": str(mask) if isinstance(mask, (str, Path)) else ("<image>" if mask is not None else None),
        "mask_source": "given" if mask is not None else "epi_intersection",
        "resample_to_first": bool(resample_to_first), "clean": clean.to_dict(),
        "confounds_regressed": confounds_summary(conf_cols),
        "total_sum_of_squares": migp.total_ss_, "subject_sums_of_squares": subject_ss, "reduction": "MIGP",
    }
    data = PreparedData(
        x=x, u=None if u.dense_on_demand else u.values,   # concatenated factors: u_factors only
        subject=subject_idx.astype(np.int64), run=run_idx.astype(np.int64),
        volume=volume.astype(np.int64), basis=basis, voxel_mean=voxel_mean, mask=mask_arr.astype(np.uint8),
        affine=np.asarray(target.affine), u_kind=u.kind, u_names=list(u.names),
        aux={"spec": u.spec, "factors": u.factors, "combine": aux_combine, "window": window,
             "step": step if step is not None else window, "hrf_delay": hrf_delay,
             "min_event_duration": min_event_duration},
        subjects=subjects, runs=run_table, tr=float(trs[0]), parameters=parameters,
        versions=package_versions(), scale=scale, singular_values=sing, u_factors=u.factor_codes,
    )
    log("prepare: done, x %s, %.1f s", x.shape, time.perf_counter() - t_start)
    return data


def transform_runs(runs: Sequence[RunSpec] | Sequence, prepared: PreparedData, *,
                   tr: float | None = None) -> list[np.ndarray]:
    """Clean new runs like ``prepared`` and project them on its basis.

    Parameters
    ----------
    runs : list of RunSpec or images
        New runs on the grid of ``prepared`` (resampled when it was prepared with
        ``resample_to_first``).
    prepared : PreparedData
    tr : float, optional
        Overrides sidecar / header TRs.

    Returns
    -------
    list of ndarray
        One ``(n_volumes, d)`` float32 array per run.
    """
    specs = _as_runs(runs)
    mask_img = prepared.mask_img()
    settings = prepared.clean_settings
    out = []
    for r in specs:
        info = header_info(load_4d(r.img))
        t = resolve_tr(r.name, override=tr, sidecar=r.tr, header=info["header_tr"])
        Y = clean_run(r, mask_img, settings, t)
        out.append(project(Y, prepared.basis, prepared.voxel_mean, prepared.scale))
    return out
