"""The steps that the one-process prepare and the participant/group path share.

:func:`~trends_ivae.reduction.prepare.prepare` runs every step in one process;
:func:`~trends_ivae.reduction.participant.write_participant_share` runs the per-run ones for
one subject and :func:`~trends_ivae.reduction.participant.gather_shares` the group ones.
Both paths read the headers, censor volumes, check confounds, build the mask, finish
the MIGP basis and assemble :class:`~trends_ivae.data.store.PreparedData` with the
functions here, so that the two give the same mask, run table and record:

- :func:`read_headers`: every run a readable 4D image, on one grid, with its TR, one TR
  for all (:func:`check_one_tr`);
- :func:`denoise_keeps`, :func:`censor`: the volumes each run keeps (``drop_initial``,
  fMRIPrep's non-steady-state volumes, a denoising strategy's censoring), and u
  restricted to them;
- :func:`confound_lists`: the confound columns each run regresses (checked early);
- :func:`given_mask`, :func:`run_stats`, :func:`intersect_masks`: the mask, i.e. the
  given one (or the EPI masks' intersection) minus voxels that are not finite or
  constant in some run;
- :func:`finish_basis`: the dimension (given or estimated), the basis, mean and scale;
- :func:`assemble`: the row indices, the run table, the parameters record and the
  ``PreparedData``.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from ..aux_variable import AuxVariable
from ..data.auxiliary import RunMeta
from ..data.bids import RunSpec, runs_from_files
from ..data.cleaning import confound_columns, epi_mask, kept_volumes, run_statistics
from ..data.errors import PrepareError
from ..data.images import check_same_grid, header_info, load_4d, load_mask, resolve_tr
from .migp import MIGP
from ..data.settings import AUTO, CleanSettings, PrepareSettings, is_auto
from ..data.store import PreparedData, package_versions

__all__ = ["Grid", "as_runs", "as_settings", "run_labels", "read_headers", "check_one_tr", "denoise_keeps", "censor", "confound_lists",
           "given_mask", "run_stats", "intersect_masks", "resolve_n_dims", "migp_dims", "choose_n_dims",
           "spectrum_record", "Basis", "finish_basis", "assemble"]


@dataclass
class Grid:
    """Shape and affine of the target grid, for grid comparisons and resampling."""

    shape: tuple
    affine: np.ndarray


def as_runs(runs: Any) -> list[RunSpec]:
    """``runs`` as RunSpec objects (bare paths or images are wrapped by ``runs_from_files``)."""
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


def as_settings(settings: PrepareSettings | None) -> PrepareSettings:
    """``settings``, or every default for None.

    Raises
    ------
    TypeError
        Anything else: options by their names become settings through
        :meth:`PrepareSettings.from_options`.
    """
    if settings is None:
        return PrepareSettings()
    if not isinstance(settings, PrepareSettings):
        raise TypeError(f"settings must be a PrepareSettings, got {type(settings).__name__}; build one from "
                        "options by their names with PrepareSettings.from_options(aux=..., n_dims=...)")
    return settings


def run_labels(specs: Sequence[RunSpec]) -> list[str]:
    """Each run's ``run`` entity, or its 1-based position among its subject's runs."""
    seen: dict[str, int] = {}
    labels = []
    for r in specs:
        seen[r.subject] = seen.get(r.subject, 0) + 1
        labels.append(str(r.entities.get("run", seen[r.subject])))
    return labels


def read_headers(specs: Sequence[RunSpec], tr: float | None, *, same_grid: bool = True
                 ) -> tuple[list[dict], list[float], Grid]:
    """Each run's header (:func:`~trends_ivae.data.images.header_info`) and TR, and the first run's grid.

    ``tr`` overrides the sidecars and headers. With ``same_grid`` every run must be on
    the first run's grid (else a ``PrepareError`` naming the run).
    """
    names = [r.name for r in specs]
    infos = [header_info(load_4d(r.img)) for r in specs]
    if same_grid:
        check_same_grid(infos, names)
    trs = [resolve_tr(n, override=tr, sidecar=r.tr, header=i["header_tr"]) for r, n, i in zip(specs, names, infos)]
    check_one_tr(names, trs)
    return infos, trs, Grid(infos[0]["shape"], infos[0]["affine"])


def check_one_tr(names: Sequence[str], trs: Sequence[float]) -> None:
    """Refuse runs of different TRs: the model's time axis, u's windows and the filters
    assume one sampling rate (and the MELODIC layout writes one TR).

    Raises
    ------
    PrepareError
        Naming each TR and (up to three of) its runs.
    """
    by_tr: dict[float, list[str]] = {}
    for n, t in zip(names, trs):
        by_tr.setdefault(round(float(t), 6), []).append(str(n))
    if len(by_tr) > 1:
        said = "; ".join(f"TR {t:g} s: {', '.join(repr(n) for n in ns[:3])}{' ...' if len(ns) > 3 else ''}"
                         f" ({len(ns)} run(s))" for t, ns in sorted(by_tr.items()))
        raise PrepareError(f"the runs have different TRs ({said}); one fit needs one TR: fit the runs of each "
                           "TR separately (or resample them in time first), or, if a sidecar or header is wrong, "
                           "pass tr=... (--tr SECONDS)")


def denoise_keeps(specs: Sequence[RunSpec], n_volumes: Sequence[int],
                  clean: CleanSettings | str | None) -> list[np.ndarray]:
    """The volumes each run keeps (:func:`~trends_ivae.data.cleaning.kept_volumes`).

    Left out: the first ``clean.drop_initial`` volumes, those flagged by a run's
    ``non_steady_state_outlier*`` confound columns, and with ``clean.denoise`` those its
    strategy censors (``clean`` a strategy name: that strategy alone). The
    non-steady-state volumes are announced once, in one warning naming the runs.
    """
    if not isinstance(clean, CleanSettings):
        clean = CleanSettings(denoise=clean)
    keeps = [kept_volumes(r, clean, n) for r, n in zip(specs, n_volumes)]
    if not clean.denoise:
        flagged = [f"{r.name!r} (volume(s) {', '.join(map(str, np.flatnonzero(~k).tolist()))})"
                   for r, k in zip(specs, keeps) if not k[clean.drop_initial:].all()]
        if flagged:
            besides = f" (with the first {clean.drop_initial} of every run, drop_initial)" if clean.drop_initial else ""
            warnings.warn("volumes flagged by the non_steady_state_outlier columns of the confounds are dropped"
                          f"{besides}: " + "; ".join(flagged[:10])
                          + (f"; and {len(flagged) - 10} more run(s)" if len(flagged) > 10 else ""),
                          UserWarning, stacklevel=3)
    return keeps


def censor(u: AuxVariable, metas: list[RunMeta], keeps: Sequence[np.ndarray]
           ) -> tuple[AuxVariable, list[RunMeta]]:
    """u and the runs' metadata for the kept volumes only (unchanged when every volume is kept)."""
    if all(k.all() for k in keeps):
        return u, metas
    return (u.take(np.concatenate(keeps)),
            [dataclasses.replace(m, n_volumes=int(k.sum())) for m, k in zip(metas, keeps)])


def confound_lists(specs: Sequence[RunSpec], n_volumes: Sequence[int], clean: CleanSettings) -> list[list[str]]:
    """The confound columns each run regresses (checked now, before the heavy passes;
    ``[]`` per run with ``denoise``, whose strategy chooses its own)."""
    return [[] if clean.denoise else confound_columns(r.confounds, clean.confounds, n, r.name)
            for r, n in zip(specs, n_volumes)]


def given_mask(mask: Any, target: Grid, first_run: str, resample: bool) -> nib.Nifti1Image | None:
    """The given mask on the target grid (resampled, nearest, when ``resample``), or None."""
    if mask is None:
        return None
    img = load_mask(mask)
    if img.shape == target.shape and np.allclose(img.affine, target.affine, atol=1e-3):
        return img
    if not resample:
        raise PrepareError(
            f"mask {mask if isinstance(mask, (str, Path)) else '<image>'!s} (shape "
            f"{img.shape}) is not on the grid of {first_run!r} (shape {target.shape}); "
            "pass resample_to_first=True (--resample-to-first) to resample it"
        )
    from nilearn.image import resample_img

    return resample_img(img, target_affine=target.affine, target_shape=target.shape,
                        interpolation="nearest", force_resample=True, copy_header=True)


def run_stats(run: RunSpec, target: Grid | None = None, resample: bool = False, *, epi: bool = True,
              mean: bool = False) -> dict:
    """One read of a run: which voxels are finite and vary, its EPI mask (``epi``), its mean (``mean``)."""
    stats = run_statistics(run.img, target=target, resample=resample)
    if epi:
        stats["epi"] = epi_mask(stats["mean"], stats["affine"])
    if not mean:
        del stats["mean"]
    return stats


def intersect_masks(stats: Sequence[dict], names: Sequence[str], region: np.ndarray | None) -> np.ndarray:
    """The mask: ``region`` (else the intersection of the runs' ``epi``) minus the voxels
    that are not finite or constant in some run, with a warning naming those runs.

    Raises
    ------
    PrepareError
        The mask is empty.
    """
    epi = None
    valid = None
    bad_finite, bad_const = [], []
    for name, st in zip(names, stats):
        inside = region if region is not None else st["epi"]
        n_nan = int((inside & ~st["finite"]).sum())
        n_const = int((inside & st["finite"] & ~st["varying"]).sum())
        if n_nan:
            bad_finite.append(f"{name!r} ({n_nan})")
        if n_const:
            bad_const.append(f"{name!r} ({n_const})")
        if region is None:
            epi = st["epi"] if epi is None else (epi & st["epi"])
        ok = st["finite"] & st["varying"]
        valid = ok if valid is None else valid & ok
    mask = (epi if region is None else region) & valid
    if bad_finite:
        warnings.warn("voxels with NaN/inf values dropped from the mask: " + ", ".join(bad_finite),
                      UserWarning, stacklevel=3)
    if bad_const:
        warnings.warn("voxels constant in time dropped from the mask: " + ", ".join(bad_const),
                      UserWarning, stacklevel=3)
    if not mask.any():
        raise PrepareError(f"the mask is empty after removing NaN/constant voxels (first run {names[0]!r})")
    return mask


# -- the reduced dimension and the basis --------------------------------------------------------
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


def migp_dims(n_dims: int | str, n_voxels: int, n_total: int) -> int | None:
    """The reduced dimension known before the data are seen (None for ``"auto"``)."""
    return None if is_auto(n_dims) else resolve_n_dims(n_dims, n_voxels, n_total)


def choose_n_dims(migp: MIGP, d: int | None, n_voxels: int, n_total: int, mask: np.ndarray | None = None):
    """``(d, order)``: ``d`` as given, or the estimated model order once MIGP has seen the data.

    With ``d`` None the order is estimated (:mod:`trends_ivae.reduction.order`), capped by
    what the data allow, and ``migp.n_dims`` is set to it: with ``mask`` (the voxels of
    MIGP's columns), :data:`~trends_ivae.reduction.order.DEFAULT_METHOD` after i.i.d.
    subsampling of the voxel grid; without, Minka's Laplace estimate on the MIGP spectrum.
    ``order`` is the :class:`~trends_ivae.reduction.order.OrderEstimate` (None when ``d`` was given).
    """
    if d is not None:
        return d, None
    from .order import DEFAULT_METHOD, estimate_order

    s = migp.spectrum()
    cap = max(1, min(n_voxels, n_total - 1, s.size - 1))
    reason = f"{n_total} volumes, {n_voxels} voxels, {s.size} MIGP rows"
    try:
        iid = _iid_record(migp, mask)
        if iid is not None:
            order = estimate_order(np.asarray(iid["eigenvalues"]), iid["n_samples"], method=DEFAULT_METHOD,
                                   max_order=cap, n_dims=n_total, step=iid["step"], cap_reason=reason)
        else:
            order = estimate_order(s ** 2 / n_voxels, n_voxels, max_order=cap, cap_reason=reason)
    except ValueError as exc:
        raise PrepareError(f"the model order cannot be estimated: {exc}; give n_dims") from exc
    migp.n_dims = order.n_components
    return order.n_components, order


def _iid_record(migp: MIGP, mask: np.ndarray | None) -> dict | None:
    """The i.i.d.-subsampled spectrum of MIGP's matrix (computed once per matrix), or None
    without a mask."""
    if mask is None or migp.W_ is None or migp.W_.shape[0] < 2:
        return None
    from .order_iid import iid_spectrum

    cached = getattr(migp, "iid_spectrum_", None)
    if cached is None or cached[0] is not migp.W_:
        cached = (migp.W_, iid_spectrum(migp.W_, np.asarray(mask, bool)))
        migp.iid_spectrum_ = cached
    return cached[1]


def spectrum_record(migp: MIGP, n_voxels: int, mask: np.ndarray | None = None) -> dict:
    """The MIGP spectrum as stored in ``parameters["spectrum"]`` (for a later ``auto`` order).

    With ``mask`` (the voxels of MIGP's columns) it also holds ``iid``: the spectrum of
    the data on a grid subsampled until the noise is white, for MDL and AIC
    (:func:`trends_ivae.reduction.order_iid.iid_spectrum`); ``n_volumes`` is the number
    of volumes MIGP saw.
    """
    record = {"singular_values": [float(v) for v in migp.spectrum()], "n_voxels": int(n_voxels),
              "of": "the MIGP running matrix (rows x voxels)", "n_volumes": int(migp.n_samples_seen_)}
    iid = _iid_record(migp, mask)
    if iid is not None:
        record["iid"] = iid
    return record


@dataclass
class Basis:
    """The finished group reduction: ``x = (Y - voxel_mean) @ basis / scale``."""

    d: int
    order: Any
    basis: np.ndarray
    singular_values: np.ndarray
    voxel_mean: np.ndarray
    scale: np.ndarray
    migp: MIGP
    n_voxels: int


def finish_basis(migp: MIGP, d: int | None, n_voxels: int, n_total: int, voxel_sum: np.ndarray,
                 whiten: bool, mask: np.ndarray | None = None) -> Basis:
    """The dimension (``d``, or estimated when None, from the subsampled grid with ``mask``:
    :func:`choose_n_dims`), MIGP's basis, the group mean and the scale."""
    d, order = choose_n_dims(migp, d, n_voxels, n_total, mask)
    try:
        basis, sing = migp.basis()
    except ValueError as exc:
        raise PrepareError(f"group PCA failed: {exc}: ask for fewer dimensions, with --n-dims (n_dims), or "
                           "with --n-components when --n-dims is not given (it then sets the dimension); "
                           "no more components than the smallest subject's volumes") from exc
    voxel_mean = (voxel_sum / n_total).astype(np.float32)
    scale = (sing / np.sqrt(max(n_total - 1, 1))).astype(np.float32) if whiten else np.ones(d, np.float32)
    return Basis(d, order, basis, sing, voxel_mean, scale, migp, n_voxels)


# -- assembly -----------------------------------------------------------------------------------
def assemble(*, x: np.ndarray, u: AuxVariable, metas: Sequence[RunMeta], keeps: Sequence[np.ndarray],
             subjects: list[str], rows: Sequence[dict], reduced: Basis, mask: np.ndarray, affine: np.ndarray,
             settings: PrepareSettings, record: dict) -> PreparedData:
    """The :class:`PreparedData` of the reduced data ``x`` and u of the runs ``metas``.

    Parameters
    ----------
    x : ndarray (n, d)
        All runs' reduced data, subject by subject.
    u : AuxVariable
        u of the kept volumes.
    metas : list of RunMeta
        The runs, with their kept numbers of volumes.
    keeps : list of bool ndarray
        Each run's kept acquired volumes (the ``volume`` numbers).
    subjects : list of str
        Subject labels in index order.
    rows : list of dict
        Per run, what only its path knows: ``file``, ``entities``, ``events``,
        ``confounds`` and, for censored runs, ``censoring`` (``n_volumes_acquired``,
        ``censored``).
    reduced : Basis
    mask, affine
        The mask (3-D bool) and its affine.
    settings : PrepareSettings
        The settings that ran (u and reduction are recorded from them).
    record : dict
        Entries of ``parameters`` that the path sets (``tr_override``, ``mask``,
        ``mask_source``, ``clean``, ``confounds_regressed``, ...); they replace the
        common ones in place.
    """
    check_one_tr([m.name for m in metas], [m.tr for m in metas])
    index = {s: i for i, s in enumerate(subjects)}
    starts = np.concatenate([[0], np.cumsum([m.n_volumes for m in metas])[:-1]])
    run_table = [{
        "subject": m.subject, "subject_index": index[m.subject], "run": m.run, "file": row["file"],
        "n_volumes": m.n_volumes, "tr": m.tr, "start": int(start), "entities": row["entities"],
        "events": row["events"], "confounds": row["confounds"], **row.get("censoring", {}),
    } for m, row, start in zip(metas, rows, starts)]
    aux, red, migp = settings.aux, settings.reduction, reduced.migp
    parameters = {
        "aux": u.spec, "window": aux.window, "step": aux.step, "hrf_delay": aux.hrf_delay,
        "min_event_duration": aux.min_event_duration, "aux_combine": aux.combine,
        "n_dims": reduced.d, "n_dims_requested": AUTO if is_auto(red.n_dims) else int(red.n_dims),
        "whiten": bool(red.whiten), "order": None if reduced.order is None else reduced.order.to_dict(),
        "spectrum": spectrum_record(migp, reduced.n_voxels, mask), "n_keep": migp.n_keep,
        "subject_dims": red.subject_dims, "tr_override": None, "mask": None, "mask_source": None,
        "resample_to_first": bool(settings.clean.resample), "clean": settings.clean.to_dict(),
        "confounds_regressed": None, "total_sum_of_squares": migp.total_ss_,
        "subject_sums_of_squares": None, "reduction": "MIGP",
    }
    unknown = set(record) - set(parameters) - {"shares"}
    if unknown:
        raise ValueError(f"assemble: unknown parameters {sorted(unknown)}")
    parameters.update(record)
    return PreparedData(
        x=x, u=u,
        subject=np.concatenate([np.full(m.n_volumes, index[m.subject]) for m in metas]).astype(np.int64),
        run=np.concatenate([np.full(m.n_volumes, i) for i, m in enumerate(metas)]).astype(np.int64),
        volume=np.concatenate([np.flatnonzero(k) for k in keeps]).astype(np.int64),   # acquired numbers
        basis=reduced.basis, voxel_mean=reduced.voxel_mean, mask=mask.astype(np.uint8),
        affine=np.asarray(affine), aux=aux.record(u.factors),
        subjects=subjects, runs=run_table, tr=float(metas[0].tr), parameters=parameters,
        versions=package_versions(), scale=reduced.scale, singular_values=reduced.singular_values,
    )
