"""A subject's share of the prepare stage, saved to disk, and the group step that gathers them.

This is the io behind the BIDS App (``trends-ivae-bids``): the ``participant`` level
runs :func:`write_participant_share` once per subject (a separate cluster job each), the
``group`` level runs :func:`gather_shares` and fits. The result equals
:func:`~trends_ivae.reduction.prepare.prepare` on the same runs and options (same mask,
cleaning, MIGP basis and x, up to float rounding; ``tests/test_bids_app.py`` checks it),
except with ``subject_dims`` (see below).

A subject's share (its files and format: :mod:`trends_ivae.data.shares`) is written by
:func:`write_participant_share`; both paths share their steps (headers, censoring,
confounds, mask, basis, assembly) with ``prepare`` through :mod:`trends_ivae.reduction.stages`.

**Mask.** The subject's mask is the given mask, else the intersection of the runs'
fMRIPrep brain masks (``*_desc-brain_mask.nii.gz`` next to ``*_desc-preproc_bold``)
when every run has one, else the intersection of nilearn's ``compute_epi_mask`` over
the runs; minus voxels that are NaN/inf or constant in some run. The group mask is the
intersection of the subjects' masks, which is what ``prepare`` computes over all runs.
Cleaning acts voxel by voxel, so data cleaned in the (larger) subject mask and then
restricted to the group mask equal data cleaned in the group mask.

**Subject-level reduction.** The subject's cleaned, temporally centred data ``Y``
(volumes x voxels) are stored as ``Y = U R`` with ``U`` (volumes x K, orthonormal
columns) and ``R = U^T Y`` (K x voxels), from the eigen-decomposition of the small
``Y Y^T``. With the default ``K`` = all non-zero components this is lossless; MIGP
only needs ``R`` (``R^T R = Y^T Y``), and x is ``U (R V)``. With ``subject_dims`` K is
that number: smaller shares, and x then comes from the rank-K approximation of each
subject's data (``prepare``'s ``subject_dims`` compresses only inside MIGP).

**Run table.** Each run's file, entities, TR, number of volumes, the participants.tsv
row and the events table itself (as TSV text), so the group level can build u without
the raw dataset.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from ..data.auxiliary import RunMeta, build_aux
from ..data.bids import RunSpec, find_bids_runs
from ..data.cleaning import clean_run, confounds_summary
from ..data.errors import PrepareError
from ..data.images import load_mask
from .migp import MIGP
from ..data.settings import PrepareSettings, fill_doc
from ..data.shares import (SHARE_FORMAT, ParticipantShare, events_text, group_mean_image, read_events_text,
                     read_share_meta, share_paths, write_share)
from .stages import (as_settings, assemble, censor, confound_lists, denoise_keeps, finish_basis, given_mask,
                     intersect_masks, migp_dims, read_headers, run_stats)
from ..data.store import PreparedData, package_versions

logger = logging.getLogger(__name__)

__all__ = ["SHARE_FORMAT", "share_paths", "find_runs", "derivative_brain_mask",
           "write_participant_share", "read_share_meta", "gather_shares", "group_mean_image",
           "ParticipantShare"]

_DERIV_ENTITIES = {"space", "desc", "res", "den", "cohort"}


def _brain_region(runs: Sequence[RunSpec], shape: tuple) -> np.ndarray | None:
    """The intersection of the runs' fMRIPrep brain masks, when every run has one (else None)."""
    brain = [derivative_brain_mask(r.img) if isinstance(r.img, (str, Path)) else None for r in runs]
    if not all(b is not None for b in brain):
        return None
    region = None
    for b in brain:
        m = load_mask(b)
        if m.shape != shape:
            raise PrepareError(f"brain mask {str(b)!r} has shape {m.shape}, its run {shape}")
        arr = np.asarray(m.dataobj) > 0
        region = arr if region is None else region & arr
    return region


def derivative_brain_mask(bold: str | os.PathLike) -> Path | None:
    """fMRIPrep's brain mask of a ``*_desc-preproc_bold.nii[.gz]`` (same entities, ``desc-brain_mask``)."""
    bold = Path(bold)
    name = bold.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith("_bold" + ext):
            stem = name[: -len("_bold" + ext)]
            parts = [p for p in stem.split("_") if not p.startswith("desc-")]
            cand = bold.with_name("_".join(parts) + "_desc-brain_mask" + ext)
            return cand if cand.is_file() else None
    return None


def _raw_key(ent: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in ent.items() if k not in _DERIV_ENTITIES))


def find_runs(bids_dir: str | os.PathLike, *, derivatives: str | os.PathLike | None = None,
              task: str | None = None, session: Sequence[str] | str | None = None,
              participant_label: Sequence[str] | None = None, space: str | None = None,
              with_confounds: bool = False) -> list[RunSpec]:
    """BOLD runs of a raw BIDS dataset, or of its fMRIPrep derivatives.

    Parameters
    ----------
    bids_dir : path
        The raw BIDS dataset (events, sidecars, ``participants.tsv``).
    derivatives : path, optional
        fMRIPrep output: the runs are its ``*_desc-preproc_bold.nii.gz`` (in ``space``),
        with their confounds (``*_desc-confounds_timeseries.tsv``, when
        ``with_confounds``) and brain masks (:func:`derivative_brain_mask`); events,
        TR sidecars and participants rows missing there are taken from the matching
        raw run.
    task, session, participant_label, space
        Filters, as for :func:`~trends_ivae.data.bids.find_bids_runs`.
    with_confounds : bool
        Attach the confounds tables.

    Returns
    -------
    list of RunSpec

    Raises
    ------
    PrepareError
        No run found, or derivatives with several spaces and no ``space``.
    """
    kw = dict(task=task, session=session, participant_label=participant_label)
    if derivatives is None:
        return find_bids_runs(bids_dir, space=space, with_confounds=with_confounds, **kw)
    runs = [r for r in find_bids_runs(derivatives, space=space, with_confounds=with_confounds, **kw)
            if r.entities.get("desc") == "preproc"]
    if not runs:
        raise PrepareError(f"no *_desc-preproc_bold.nii[.gz] in derivatives {str(derivatives)!r}"
                           + (f" with space {space!r}" if space else ""))
    keys = [_raw_key(r.entities) for r in runs]
    if len(set(keys)) != len(keys):
        spaces = sorted({str(r.entities.get("space")) for r in runs})
        raise PrepareError(f"derivatives {str(derivatives)!r} hold each run in several spaces {spaces}; "
                           "choose one with --space")
    try:
        raw = {_raw_key(r.entities): r for r in find_bids_runs(bids_dir, **kw)}
    except PrepareError:
        raw = {}
    for r, key in zip(runs, keys):
        src = raw.get(key)
        if src is None:
            continue
        if r.events is None:
            r.events = src.events
        if r.tr is None:
            r.tr = src.tr
        if not r.participant:
            r.participant = dict(src.participant)
    return runs


@fill_doc
def write_participant_share(
    runs: Sequence[RunSpec],
    out_dir: str | os.PathLike,
    settings: PrepareSettings | None = None,
    *,
    mask: Any = None,
    tr: float | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Mask, clean and factor one subject's runs; write its share under ``out_dir``.

    Parameters
    ----------
    runs : list of RunSpec
        All runs of one subject (same ``sub`` entity), on one grid.
    out_dir : path
        The BIDS App's OUTPUT_DIR; files go to ``out_dir/sub-<label>/``.
    %(settings)s
        The share uses ``settings.clean`` and ``settings.reduction.subject_dims``
        (default: keep every subject component, lossless); with ``denoise`` it holds
        the kept volumes only, and its run table each run's acquired and censored ones.
    %(mask)s
    %(tr)s
    force : bool
        Replace an existing share.

    Returns
    -------
    dict
        The written paths (``share``, ``mask``, ``mean``).

    Raises
    ------
    PrepareError
        Bad input (the message names the file or the option); nothing is written.
    FileExistsError
        The share exists and ``force`` is False.
    """
    settings = as_settings(settings)
    clean, subject_dims, denoise = settings.clean, settings.reduction.subject_dims, settings.clean.denoise
    runs = list(runs)
    if not runs:
        raise PrepareError("no run given for the participant share")
    labels = sorted({r.subject for r in runs})
    if len(labels) != 1:
        raise PrepareError(f"a participant share holds one subject; got runs of {labels}")
    label = labels[0]
    paths = share_paths(out_dir, label)
    if paths["share"].exists() and not force:
        raise FileExistsError(f"{paths['share']} exists; pass force=True (--force) to overwrite")
    infos, trs, grid = read_headers(runs, tr)
    shape, affine = grid.shape, grid.affine
    acquired = [i["n_volumes"] for i in infos]
    keeps = denoise_keeps(runs, acquired, clean)   # drop_initial, non-steady-state, denoise
    conf_cols = confound_lists(runs, acquired, clean)   # what each run regresses is recorded
    events = [events_text(r.events) for r in runs]

    given = given_mask(mask, grid, runs[0].name, resample=False)
    if given is not None:
        region, mask_source = np.asarray(given.dataobj) > 0, "given"
    else:
        region = _brain_region(runs, shape)
        mask_source = "epi_intersection" if region is None else "fmriprep_brain_mask"
    stats = [run_stats(r, epi=region is None, mean=True) for r in runs]
    mean = (sum(st.pop("mean").astype(np.float64) for st in stats) / len(runs)).astype(np.float32)
    mask_arr = intersect_masks(stats, [r.name for r in runs], region)
    mask_img = nib.Nifti1Image(mask_arr.astype(np.uint8), affine)

    parts = [clean_run(r, mask_img, clean, t) for r, t in zip(runs, trs)]
    Y = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    del parts
    gram = (Y.astype(np.float64) @ Y.T.astype(np.float64))
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    keep = evals > (evals[0] * 1e-10 if evals.size and evals[0] > 0 else np.inf)
    k = int(keep.sum())
    if subject_dims is not None:
        k = min(k, int(subject_dims))
    if k < 1:
        raise PrepareError(f"the cleaned data of sub-{label} are all zero")
    U = evecs[:, order[:k]]
    R = (U.T @ Y.astype(np.float64)).astype(np.float32)
    total_ss = float(np.einsum("ij,ij->", Y, Y, dtype=np.float64))
    del Y

    table = [{"file": str(Path(r.img).resolve()) if isinstance(r.img, (str, Path)) else r.name,
              "name": r.name, "entities": {kk: str(v) for kk, v in r.entities.items()},
              "n_volumes": int(keep.sum()), "tr": t, "events_text": ev,
              "events": str(r.events) if isinstance(r.events, (str, Path)) else None,
              "confounds": cols,
              **({"n_volumes_acquired": n_acq, "censored": [int(v) for v in np.flatnonzero(~keep)]}
                 if not keep.all() else {})}
             for r, n_acq, t, ev, cols, keep in zip(runs, acquired, trs, events, conf_cols, keeps)]
    meta = {"format": "trends_ivae.participant_share", "share_format": SHARE_FORMAT, "subject": label,
            "runs": table, "participant": {kk: str(v) for kk, v in runs[0].participant.items()},
            "clean": clean.to_dict(), "mask_source": mask_source, "subject_dims": subject_dims,
            "n_components_kept": k, "total_sum_of_squares": total_ss, "shape": list(shape),
            "versions": package_versions()}
    write_share(paths, U=U, singular_values=np.sqrt(evals[:k]), R=R, mask_img=mask_img,
                mean=nib.Nifti1Image(mean, affine), meta=meta)
    logger.info("sub-%s: share of %d volumes x %d voxels (K=%d) written to %s", label,
                sum(acquired), int(mask_arr.sum()), k, paths["share"])
    return paths


@fill_doc
def gather_shares(
    shares: Sequence[ParticipantShare | str | os.PathLike],
    settings: PrepareSettings | None = None,
    *,
    verbose: int = 0,
    progress: bool = False,
) -> PreparedData:
    """The group step: one mask, MIGP over the subjects' shares, projection, u.

    Parameters
    ----------
    shares : list of ParticipantShare or paths
        One per subject, in the order the subjects get their indices.
    %(settings)s
        The group step uses ``settings.aux`` and ``settings.reduction`` (``n_dims``,
        ``whiten``, ``n_keep``; ``n_dims="auto"`` too); the cleaning is the shares'.
    %(verbose)s
    %(progress)s

    Returns
    -------
    PreparedData
        As ``prepare`` returns it; ``parameters['reduction']`` is
        ``"MIGP over participant shares"``.

    Raises
    ------
    PrepareError
        Shares on different grids or cleaned differently, an empty group mask, bad u.
    """
    settings = as_settings(settings)
    red = settings.reduction
    log = logger.info if verbose else logger.debug
    shares = [s if isinstance(s, ParticipantShare) else read_share_meta(s) for s in shares]
    if not shares:
        raise PrepareError("no participant share to gather")
    labels = [s.subject for s in shares]
    if len(set(labels)) != len(labels):
        raise PrepareError(f"subjects repeated among the shares: {labels}")
    ref = shares[0]
    for s in shares[1:]:
        if s.shape != ref.shape or not np.allclose(s.affine, ref.affine, atol=1e-3):
            raise PrepareError(f"share {str(s.path)!r} is on another grid than {str(ref.path)!r}")
        if s.meta["clean"] != ref.meta["clean"]:
            diff = sorted(k for k in s.meta["clean"] if s.meta["clean"][k] != ref.meta["clean"].get(k))
            raise PrepareError(f"share {str(s.path)!r} was cleaned with other options ({', '.join(diff)}) "
                               f"than {str(ref.path)!r}; rerun the participant level with the same options")
    group_mask = np.ones(ref.shape, bool)
    for s in shares:   # masks are read one at a time: memory flat in the number of subjects
        group_mask &= s.mask
    n_voxels = int(group_mask.sum())
    if n_voxels == 0:
        raise PrepareError("the intersection of the subjects' masks is empty")
    metas, run_specs = [], []
    for s in shares:
        for i, r in enumerate(s.meta["runs"]):
            metas.append(RunMeta(name=r["name"], subject=s.subject, run=str(r["entities"].get("run", i + 1)),
                                 n_volumes=int(r.get("n_volumes_acquired", r["n_volumes"])), tr=float(r["tr"]),
                                 events=read_events_text(r["events_text"]), participant=s.meta["participant"]))
            run_specs.append(r)
    u = build_aux(settings.aux, metas)
    keeps = []   # the volumes a denoising strategy kept (u is built on the acquired ones)
    for m, r in zip(metas, run_specs):
        keep = np.ones(m.n_volumes, dtype=bool)
        keep[[int(v) for v in r.get("censored", [])]] = False
        keeps.append(keep)
    u, metas = censor(u, metas, keeps)
    n_total = sum(m.n_volumes for m in metas)
    d = migp_dims(red.n_dims, n_voxels, n_total)

    migp = MIGP(d or 1, n_keep=max(red.n_keep, d or 1) if red.n_keep else None)
    voxel_sum = np.zeros(n_voxels)
    subject_ss = []   # on the group's voxels (||U R||^2 = ||R||^2): the explained variance's denominators
    from ..data.progress import progress as show

    for s in show(shares, enabled=progress, desc="group: gather shares", unit="subject"):
        U, R = s.factors(group_mask[s.mask])   # the group voxels among the share's voxels
        before = migp.total_ss_
        migp.partial_fit(R)
        subject_ss.append(migp.total_ss_ - before)
        voxel_sum += U.sum(axis=0).astype(np.float64) @ R.astype(np.float64)
        log("group: sub-%s gathered (%d volumes)", s.subject, U.shape[0])
    reduced = finish_basis(migp, d, n_voxels, n_total, voxel_sum, red.whiten, mask=group_mask)
    x = np.empty((n_total, reduced.d), np.float32)
    row = 0
    basis = reduced.basis.astype(np.float64)
    mean_proj = reduced.voxel_mean.astype(np.float64) @ basis
    for s in shares:
        U, R = s.factors(group_mask[s.mask])
        xs = U.astype(np.float64) @ (R.astype(np.float64) @ basis) - mean_proj
        x[row:row + U.shape[0]] = (xs / reduced.scale).astype(np.float32)
        row += U.shape[0]

    rows = [{"file": r["file"], "entities": r["entities"], "events": r.get("events"),
             "confounds": r.get("confounds"),
             **({"censoring": {k: r[k] for k in ("n_volumes_acquired", "censored")}} if "censored" in r else {})}
            for r in run_specs]
    return assemble(
        x=x, u=u, metas=metas, keeps=keeps, subjects=labels, rows=rows, reduced=reduced, mask=group_mask,
        affine=ref.affine, settings=settings,
        record={"subject_dims": ref.meta.get("subject_dims"),
                "mask_source": "intersection of participant masks (" + ref.meta["mask_source"] + ")",
                "resample_to_first": False, "clean": dict(ref.meta["clean"]),
                "confounds_regressed": (confounds_summary([r["confounds"] for r in run_specs])
                                        if all("confounds" in r for r in run_specs) else None),   # older shares
                "total_sum_of_squares": float(sum(s.meta["total_sum_of_squares"] for s in shares)),
                "subject_sums_of_squares": subject_ss, "reduction": "MIGP over participant shares",
                "shares": [str(s.path) for s in shares]})
