"""A subject's share of the prepare stage, saved to disk, and the group step that gathers them.

This is the io behind the BIDS App (``trends-ivae-bids``): the ``participant`` level
runs :func:`write_participant_share` once per subject (a separate cluster job each), the
``group`` level runs :func:`gather_shares` and fits. The result equals
:func:`~trends_ivae.io.preparation.prepare` on the same runs and options (same mask,
cleaning, MIGP basis and x, up to float rounding; ``tests/test_bids_app.py`` checks it),
except with ``subject_dims`` (see below).

A subject's share, ``OUTPUT_DIR/sub-<label>/``::

    sub-<label>_desc-ivae_share.h5        cleaned data, factored; the run table; settings
    sub-<label>_desc-ivae_mask.nii.gz     the subject's mask (uint8)
    sub-<label>_desc-mean_boldref.nii.gz  the subject's mean EPI (mean over time and runs)

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

import dataclasses
import io as _io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from .auxiliary import RunMeta, build_aux, take_rows
from .bids import RunSpec, find_bids_runs
from .cleaning import (clean_run, confound_columns, confounds_summary, denoise_confounds, epi_mask,
                       run_statistics)
from .images import PrepareError, check_same_grid, header_info, load_4d, load_mask, resolve_tr
from .preparation import _migp_dims, choose_n_dims, spectrum_record
from .reduction import MIGP
from .settings import AUTO, PrepareSettings, fill_doc, is_auto
from .store import PreparedData, package_versions

logger = logging.getLogger(__name__)

__all__ = ["SHARE_FORMAT", "share_paths", "find_runs", "derivative_brain_mask",
           "write_participant_share", "read_share_meta", "gather_shares", "group_mean_image",
           "ParticipantShare"]

#: version of the share file format
SHARE_FORMAT = 1

_DERIV_ENTITIES = {"space", "desc", "res", "den", "cohort"}


def share_paths(out_dir: str | os.PathLike, label: str) -> dict[str, Path]:
    """The files of subject ``label``'s share under ``out_dir`` (``share``, ``mask``, ``mean``)."""
    label = label[4:] if label.startswith("sub-") else label
    sub = Path(out_dir) / f"sub-{label}"
    return {"share": sub / f"sub-{label}_desc-ivae_share.h5",
            "mask": sub / f"sub-{label}_desc-ivae_mask.nii.gz",
            "mean": sub / f"sub-{label}_desc-mean_boldref.nii.gz"}


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
        Filters, as for :func:`~trends_ivae.io.bids.find_bids_runs`.
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


@dataclass
class ParticipantShare:
    """A subject's share as read back: metadata and affine; arrays are read on demand.

    ``mask`` and ``mean`` are read from the file at each access (not kept), so that
    the group level, which holds one of these per subject, stays flat in memory in
    the number of subjects (a mean EPI on a 2 mm grid is ~3.6 MB; 1000 of them 3.6 GB).
    """

    path: Path
    subject: str
    meta: dict
    affine: np.ndarray
    shape: tuple

    @property
    def n_volumes(self) -> int:
        return sum(r["n_volumes"] for r in self.meta["runs"])

    def _read(self, name: str) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[name][()]

    @property
    def mask(self) -> np.ndarray:
        """The subject's mask, bool (read from the file)."""
        return self._read("mask").astype(bool)

    @property
    def mean(self) -> np.ndarray:
        """The subject's mean EPI, float32 (read from the file)."""
        return self._read("mean")

    def factors(self, voxels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(U, R)``; ``R`` restricted to ``voxels`` (bool over the share's mask voxels)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            U = f["scores"][()]
            R = f["rows"][()]
        if voxels is not None:
            R = R[:, voxels]
        return U, R


def _events_text(events) -> str | None:
    if events is None:
        return None
    if isinstance(events, pd.DataFrame):
        return events.to_csv(sep="\t", index=False)
    path = Path(events)
    if not path.is_file():
        raise PrepareError(f"events file {str(path)!r} does not exist")
    return path.read_text()


@fill_doc
def write_participant_share(
    runs: Sequence[RunSpec],
    out_dir: str | os.PathLike,
    settings: PrepareSettings | None = None,
    *,
    mask: Any = None,
    tr: float | None = None,
    force: bool = False,
    **options: Any,
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
    %(options)s

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
    settings = PrepareSettings.from_options(settings, **options)
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
    names = [r.name for r in runs]
    infos = [header_info(load_4d(r.img)) for r in runs]
    check_same_grid(infos, names)
    shape, affine = infos[0]["shape"], infos[0]["affine"]
    trs = [resolve_tr(n, override=tr, sidecar=r.tr, header=i["header_tr"]) for r, n, i in zip(runs, names, infos)]
    keeps = []
    for r, n, info in zip(runs, names, infos):
        if denoise:
            keeps.append(denoise_confounds(r.img, denoise, info["n_volumes"], n)[1])
            if keeps[-1].sum() < 2:
                raise PrepareError(f"denoise={denoise!r} leaves fewer than 2 of the {info['n_volumes']} "
                                   f"volumes of {n!r}")
        else:
            keeps.append(np.ones(info["n_volumes"], dtype=bool))
    # checked before the heavy passes; what each run regresses is recorded (denoise: the strategy's own)
    conf_cols = [[] if denoise else confound_columns(r.confounds, clean.confounds, info["n_volumes"], n)
                 for r, n, info in zip(runs, names, infos)]
    events = [_events_text(r.events) for r in runs]

    if mask is not None:
        given = load_mask(mask)
        if given.shape != shape or not np.allclose(given.affine, affine, atol=1e-3):
            raise PrepareError(f"mask {mask if isinstance(mask, (str, Path)) else '<image>'!s} (shape "
                               f"{given.shape}) is not on the grid of {names[0]!r} (shape {shape})")
        region, mask_source = np.asarray(given.dataobj) > 0, "given"
    else:
        brain = [derivative_brain_mask(r.img) if isinstance(r.img, (str, Path)) else None for r in runs]
        if all(b is not None for b in brain):
            region = None
            for b in brain:
                m = load_mask(b)
                if m.shape != shape:
                    raise PrepareError(f"brain mask {str(b)!r} has shape {m.shape}, its run {shape}")
                arr = np.asarray(m.dataobj) > 0
                region = arr if region is None else region & arr
            mask_source = "fmriprep_brain_mask"
        else:
            region, mask_source = None, "epi_intersection"
    mean_sum = np.zeros(shape)
    valid = np.ones(shape, bool)
    epi = None
    for r, n in zip(runs, names):
        st = run_statistics(r.img)
        mean_sum += st["mean"]
        valid &= st["finite"] & st["varying"]
        if region is None and mask_source == "epi_intersection":
            e = epi_mask(st["mean"], st["affine"])
            epi = e if epi is None else epi & e
    region = epi if region is None else region
    dropped = int((region & ~valid).sum())
    if dropped:
        warnings.warn(f"sub-{label}: {dropped} voxels NaN/inf or constant in time dropped from the mask",
                      UserWarning, stacklevel=2)
    mask_arr = region & valid
    if not mask_arr.any():
        raise PrepareError(f"the mask of sub-{label} is empty (first run {names[0]!r})")
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
              "name": n, "entities": {kk: str(v) for kk, v in r.entities.items()},
              "n_volumes": int(keep.sum()), "tr": t, "events_text": ev,
              "events": str(r.events) if isinstance(r.events, (str, Path)) else None,
              "confounds": cols,
              **({"n_volumes_acquired": info["n_volumes"], "censored": [int(v) for v in np.flatnonzero(~keep)]}
                 if denoise else {})}
             for r, n, info, t, ev, cols, keep in zip(runs, names, infos, trs, events, conf_cols, keeps)]
    meta = {"format": "trends_ivae.participant_share", "share_format": SHARE_FORMAT, "subject": label,
            "runs": table, "participant": {kk: str(v) for kk, v in runs[0].participant.items()},
            "clean": clean.to_dict(), "mask_source": mask_source, "subject_dims": subject_dims,
            "n_components_kept": k, "total_sum_of_squares": total_ss, "shape": list(shape),
            "versions": package_versions()}
    import h5py

    paths["share"].parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        tmp = Path(tempfile.mkstemp(prefix=".share-", suffix=".h5", dir=paths["share"].parent)[1])
        written.append(tmp)
        with h5py.File(tmp, "w") as f:
            f.create_dataset("scores", data=U.astype(np.float32))
            f.create_dataset("singular_values", data=np.sqrt(evals[:k]))
            f.create_dataset("rows", data=R, compression="gzip", compression_opts=4,
                             chunks=(min(k, 64), R.shape[1]))
            f.create_dataset("mask", data=mask_arr.astype(np.uint8), compression="gzip")
            f.create_dataset("affine", data=np.asarray(affine, float))
            f.create_dataset("mean", data=(mean_sum / len(runs)).astype(np.float32), compression="gzip")
            f.attrs["meta"] = json.dumps(meta, default=str)
        tmp_mask = paths["mask"].with_name(".tmp-" + paths["mask"].name)
        tmp_mean = paths["mean"].with_name(".tmp-" + paths["mean"].name)
        written += [tmp_mask, tmp_mean]
        nib.save(mask_img, tmp_mask)
        nib.save(nib.Nifti1Image((mean_sum / len(runs)).astype(np.float32), affine), tmp_mean)
        os.replace(tmp_mask, paths["mask"])
        os.replace(tmp_mean, paths["mean"])
        os.replace(tmp, paths["share"])
    except BaseException:
        for p in written:
            if p.exists():
                p.unlink()
        raise
    logger.info("sub-%s: share of %d volumes x %d voxels (K=%d) written to %s", label,
                sum(i["n_volumes"] for i in infos), int(mask_arr.sum()), k, paths["share"])
    return paths


def read_share_meta(path: str | os.PathLike) -> ParticipantShare:
    """Read a share's metadata, mask and mean image (not its data).

    Raises
    ------
    PrepareError
        The file is missing, unreadable or not a share of this format.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs["meta"])
            shape = tuple(int(v) for v in f["mask"].shape)
            affine = f["affine"][()]
            if f["mean"].shape != shape or not {"scores", "rows"} <= set(f):
                raise KeyError("datasets missing or of the wrong shape")
    except (OSError, KeyError, ValueError) as exc:
        raise PrepareError(f"participant share {str(path)!r} cannot be read: {exc}") from exc
    if meta.get("format") != "trends_ivae.participant_share" or meta.get("share_format") != SHARE_FORMAT:
        raise PrepareError(f"{str(path)!r} is not a participant share of format {SHARE_FORMAT}")
    return ParticipantShare(path=path, subject=meta["subject"], meta=meta, affine=affine, shape=shape)


def group_mean_image(shares: Sequence[ParticipantShare]) -> nib.Nifti1Image:
    """Mean EPI of the group: the subjects' means weighted by their number of runs."""
    total = np.zeros(shares[0].shape)
    for s in shares:   # one subject's mean in memory at a time
        total += s.mean.astype(np.float64) * len(s.meta["runs"])
    n = sum(len(s.meta["runs"]) for s in shares)
    return nib.Nifti1Image((total / n).astype(np.float32), shares[0].affine)


def _read_events_text(text: str | None):
    if text is None:
        return None
    return pd.read_csv(_io.StringIO(text), sep="\t", na_values=["n/a", "N/A", ""], keep_default_na=False)


@fill_doc
def gather_shares(
    shares: Sequence[ParticipantShare | str | os.PathLike],
    settings: PrepareSettings | None = None,
    *,
    verbose: int = 0,
    progress: bool = False,
    **options: Any,
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
    %(options)s

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
    settings = PrepareSettings.from_options(settings, **options)
    aux_spec, red = settings.aux, settings.reduction
    window, step, hrf_delay = aux_spec.window, aux_spec.step, aux_spec.hrf_delay
    min_event_duration, aux_combine = aux_spec.min_event_duration, aux_spec.combine
    n_dims, whiten, n_keep = red.n_dims, red.whiten, red.n_keep
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
                                 events=_read_events_text(r["events_text"]), participant=s.meta["participant"]))
            run_specs.append(r)
    u = build_aux(aux_spec, metas)
    keeps = []   # the volumes a denoising strategy kept (u is built on the acquired ones)
    for m, r in zip(metas, run_specs):
        keep = np.ones(m.n_volumes, dtype=bool)
        keep[[int(v) for v in r.get("censored", [])]] = False
        keeps.append(keep)
    if any(not k.all() for k in keeps):
        u = take_rows(u, np.concatenate(keeps))
        metas = [dataclasses.replace(m, n_volumes=int(k.sum())) for m, k in zip(metas, keeps)]
    n_total = sum(m.n_volumes for m in metas)
    d = _migp_dims(n_dims, n_voxels, n_total)

    migp = MIGP(d or 1, n_keep=max(n_keep, d or 1) if n_keep else None)
    voxel_sum = np.zeros(n_voxels)
    subject_ss = []   # on the group's voxels (||U R||^2 = ||R||^2): the explained variance's denominators
    from .progress import progress as show

    for s in show(shares, enabled=progress, desc="group: gather shares", unit="subject"):
        U, R = s.factors(group_mask[s.mask])   # the group voxels among the share's voxels
        before = migp.total_ss_
        migp.partial_fit(R)
        subject_ss.append(migp.total_ss_ - before)
        voxel_sum += U.sum(axis=0).astype(np.float64) @ R.astype(np.float64)
        log("group: sub-%s gathered (%d volumes)", s.subject, U.shape[0])
    d, order = choose_n_dims(migp, d, n_voxels, n_total)
    try:
        basis, sing = migp.basis()
    except ValueError as exc:
        raise PrepareError(f"group PCA failed: {exc}; lower n_dims") from exc
    voxel_mean = (voxel_sum / n_total).astype(np.float32)
    scale = (sing / np.sqrt(max(n_total - 1, 1))).astype(np.float32) if whiten else np.ones(d, np.float32)
    x = np.empty((n_total, d), np.float32)
    row = 0
    mean_proj = voxel_mean.astype(np.float64) @ basis.astype(np.float64)
    for s in shares:
        U, R = s.factors(group_mask[s.mask])
        xs = U.astype(np.float64) @ (R.astype(np.float64) @ basis.astype(np.float64)) - mean_proj
        x[row:row + U.shape[0]] = (xs / scale).astype(np.float32)
        row += U.shape[0]

    subject_idx = np.concatenate([np.full(m.n_volumes, labels.index(m.subject)) for m in metas])
    run_idx = np.concatenate([np.full(m.n_volumes, i) for i, m in enumerate(metas)])
    volume = np.concatenate([np.flatnonzero(k) for k in keeps])   # acquired volume numbers
    starts = np.concatenate([[0], np.cumsum([m.n_volumes for m in metas])[:-1]])
    run_table = [{
        "subject": m.subject, "subject_index": labels.index(m.subject), "run": m.run,
        "file": r["file"], "n_volumes": m.n_volumes, "tr": m.tr, "start": int(st),
        "entities": r["entities"], "events": r.get("events"), "confounds": r.get("confounds"),
        **({k: r[k] for k in ("n_volumes_acquired", "censored")} if "censored" in r else {}),
    } for m, r, st in zip(metas, run_specs, starts)]
    clean = dict(ref.meta["clean"])
    parameters = {
        "aux": u.spec, "window": window, "step": step, "hrf_delay": hrf_delay,
        "min_event_duration": min_event_duration, "aux_combine": aux_combine,
        "n_dims": d, "n_dims_requested": AUTO if is_auto(n_dims) else int(n_dims), "whiten": bool(whiten),
        "order": None if order is None else order.to_dict(), "spectrum": spectrum_record(migp, n_voxels),
        "n_keep": migp.n_keep, "subject_dims": ref.meta.get("subject_dims"), "tr_override": None,
        "mask": None, "mask_source": "intersection of participant masks (" + ref.meta["mask_source"] + ")",
        "resample_to_first": False, "clean": clean,
        "confounds_regressed": (confounds_summary([r["confounds"] for r in run_specs])
                                if all("confounds" in r for r in run_specs) else None),   # older shares: unknown
        "total_sum_of_squares": float(sum(s.meta["total_sum_of_squares"] for s in shares)),
        "subject_sums_of_squares": subject_ss,
        "reduction": "MIGP over participant shares",
        "shares": [str(s.path) for s in shares],
    }
    return PreparedData(
        x=x, u=None if u.dense_on_demand else u.values,   # concatenated factors: u_factors only
        subject=subject_idx.astype(np.int64), run=run_idx.astype(np.int64),
        volume=volume.astype(np.int64), basis=basis, voxel_mean=voxel_mean, mask=group_mask.astype(np.uint8),
        affine=np.asarray(ref.affine), u_kind=u.kind, u_names=list(u.names),
        aux={"spec": u.spec, "factors": u.factors, "combine": aux_combine, "window": window,
             "step": step if step is not None else window, "hrf_delay": hrf_delay,
             "min_event_duration": min_event_duration},
        subjects=labels, runs=run_table, tr=float(metas[0].tr), parameters=parameters,
        versions=package_versions(), scale=scale, singular_values=sing, u_factors=u.factor_codes,
    )
