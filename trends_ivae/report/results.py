"""Read a ``trends-ivae fit`` output folder into one object for the report.

A folder written with ``--layout melodic`` is read from its own files instead of
``group/`` and the TSVs: ``melodic_IC.nii.gz`` (maps), ``mask.nii.gz``, ``melodic_ICstats``
(explained variance) and ``melodic_mix`` (time courses, split into runs by the prepared
run table), with ``model/`` and ``prepared.h5`` as in the BIDS layout.

Everything the report shows comes from files in ``OUT`` (see ``docs/cli.md``):
``model/config.json``, ``model/elbo.tsv``, ``group/desc-ivae_*``, the per-run
``*_desc-ivae_timeseries.tsv`` (+ ``.json``), ``prepared.h5`` (optional: u, its factors
and the run table) and ``model/prior.npz`` (optional: the learned prior p(z|u); fits written
before it: the model file, ``model/ivae.pt``, which needs torch). A missing
optional file removes the sections that need it; it never stops the report.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["RunSeries", "Prior", "FitResults", "load_results", "is_melodic_folder"]

log = logging.getLogger("trends_ivae.report")


@dataclass
class RunSeries:
    """One run's component time courses.

    Attributes
    ----------
    subject : str
        Subject label (without ``sub-``).
    name : str
        File stem of the run's time-series TSV (``sub-01_task-x_run-1_desc-ivae``).
    tr : float or None
        Repetition time in seconds.
    data : ndarray (n_volumes, n_components)
        Posterior-mean time courses, in component order.
    index : int or None
        Index of the run in the prepared run table (None when there is no prepared.h5).
    """

    subject: str
    name: str
    tr: float | None
    data: np.ndarray
    index: int | None = None


@dataclass
class Prior:
    """The learned conditional prior p(z|u), summarised for the report.

    Attributes
    ----------
    by_factor : list of dict
        For each discrete factor of u that is not a time window (task, subject, a
        participants column, ...): ``{"name", "levels", "mean" (L, k), "var" (L, k),
        "count" (L,)}``, volume-weighted averages over the combined levels of u that
        share the factor's level.
    over_time : dict or None
        ``{"name", "mean" (T, k), "var" (T, k), "t" (T,) seconds or volumes}`` for the
        chosen run: the prior at each volume, shown when u has time windows or is
        continuous.
    """

    by_factor: list = field(default_factory=list)
    over_time: dict | None = None


@dataclass
class FitResults:
    """Everything the report needs from an output folder (see :func:`load_results`)."""

    out_dir: Path
    config: dict
    elbo: pd.DataFrame | None
    names: list
    labels: pd.DataFrame
    components: nib.Nifti1Image
    effects: nib.Nifti1Image | None
    mask: nib.Nifti1Image
    runs: list
    subject_run: int
    prepared: Any = None
    prior: Prior | None = None
    description: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def n_components(self) -> int:
        return len(self.names)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_results(out_dir: str | Path, *, subject: str | None = None,
                 load_prior: bool = True) -> FitResults:
    """Read a fit's output folder.

    Parameters
    ----------
    out_dir : path
        The ``--out`` folder of ``trends-ivae fit``.
    subject : str, optional
        Subject label (with or without ``sub-``) whose first run is shown per component;
        default the first subject.
    load_prior : bool
        Summarise the learned prior, from ``model/prior.npz`` (numpy only), or for fits
        written without it from ``model/estimator.pt`` (``model/ivae.pt`` in older
        folders; needs torch).

    Returns
    -------
    FitResults

    Raises
    ------
    FileNotFoundError
        ``out_dir`` lacks the group component maps or the mask.
    ValueError
        ``subject`` is not one of the subjects in the folder.
    """
    out = Path(out_dir)
    group = out / "group"
    melodic = is_melodic_folder(out)
    comp_path = out / "melodic_IC.nii.gz" if melodic else group / "desc-ivae_components.nii.gz"
    mask_path = out / "mask.nii.gz" if melodic else group / "desc-ivae_mask.nii.gz"
    for p in (comp_path, mask_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: is {out} an output folder of 'trends-ivae fit' "
                                    "(--layout bids or melodic)?")
    notes: list[str] = []
    config = _read_json(out / "model" / "config.json")
    if not config:
        notes.append("model/config.json is missing or unreadable: the summary is incomplete.")
    components = nib.load(str(comp_path))
    if components.ndim == 3:
        components = nib.Nifti1Image(np.asarray(components.dataobj)[..., None], components.affine,
                                     components.header)
    effects_path = group / "desc-ivae_effects.nii.gz"
    effects = nib.load(str(effects_path)) if effects_path.is_file() else None
    if effects is not None and effects.ndim == 3:
        effects = nib.Nifti1Image(np.asarray(effects.dataobj)[..., None], effects.affine, effects.header)
    mask = nib.load(str(mask_path))
    k = components.shape[3]

    labels_path = group / "desc-ivae_labels.tsv"
    if melodic:
        names, labels = _melodic_labels(out, k)
    elif labels_path.is_file():
        labels = pd.read_csv(labels_path, sep="\t")
        names = [str(n) for n in labels["name"]]
    else:
        from ..export.derivatives import component_names

        names = component_names(k)
        labels = pd.DataFrame({"index": np.arange(1, k + 1), "name": names})
    if len(names) != k:
        notes.append(f"the labels TSV names {len(names)} components, the maps hold {k}; using ic01...")
        from ..export.derivatives import component_names

        names = component_names(k)
        labels = pd.DataFrame({"index": np.arange(1, k + 1), "name": names})

    elbo = None
    elbo_path = out / "model" / "elbo.tsv"
    if elbo_path.is_file():
        try:
            elbo = pd.read_csv(elbo_path, sep="\t")
        except (OSError, ValueError) as exc:
            notes.append(f"model/elbo.tsv unreadable: {exc}")

    prepared = None
    prep_path = out / "prepared.h5"
    if prep_path.is_file():
        try:
            from ..data.store import read_prepared

            prepared = read_prepared(prep_path)
        except Exception as exc:  # noqa: BLE001 - a damaged optional file only drops sections
            notes.append(f"prepared.h5 unreadable ({exc}): no u levels or prior.")
    else:
        notes.append("no prepared.h5 in the folder (fit --no-keep-prepared): u levels and the "
                     "prior by condition are not shown.")

    runs = _melodic_runs(out, names, prepared, components) if melodic else _read_runs(out, names, prepared)
    if not runs:
        notes.append("no time-series TSVs found: no time courses or spectra.")
    subject_run = 0
    if subject is not None:
        label = subject[4:] if subject.startswith("sub-") else subject
        hits = [i for i, r in enumerate(runs) if r.subject == label]
        if not hits:
            raise ValueError(f"subject {subject!r} is not in {out} (subjects: "
                             f"{sorted({r.subject for r in runs})})")
        subject_run = hits[0]

    res = FitResults(out_dir=out, config=config, elbo=elbo, names=names, labels=labels,
                     components=components, effects=effects, mask=mask, runs=runs,
                     subject_run=subject_run, prepared=prepared,
                     description=_read_json(out / "dataset_description.json"), notes=notes)
    if load_prior:
        res.prior = _load_prior(res)
    return res


def is_melodic_folder(out_dir: str | Path) -> bool:
    """True for a fit written with ``--layout melodic`` (``melodic_IC.nii.gz``, no ``group/``)."""
    out = Path(out_dir)
    return (out / "melodic_IC.nii.gz").is_file() and not (out / "group" / "desc-ivae_components.nii.gz").is_file()


def _melodic_labels(out: Path, k: int) -> tuple[list, pd.DataFrame]:
    """ic01 ... and, from ``melodic_ICstats``'s second column (percent of the total
    variance), each component's explained variance as a fraction."""
    from ..export.derivatives import component_names

    names = component_names(k)
    labels = pd.DataFrame({"index": np.arange(1, k + 1), "name": names})
    stats_path = out / "melodic_ICstats"
    if stats_path.is_file():
        try:
            stats = np.atleast_2d(np.loadtxt(stats_path))
            if stats.shape == (k, 2):
                labels["explained_variance"] = stats[:, 1] / 100.0
        except ValueError:
            pass
    return names, labels


def _melodic_runs(out: Path, names: list, prepared: Any, components: Any) -> list[RunSeries]:
    """The runs' time courses from ``melodic_mix``: split by the prepared run table (runs in
    its order), or one series of all volumes without ``prepared.h5``."""
    try:
        mix = np.atleast_2d(np.loadtxt(out / "melodic_mix"))
    except (OSError, ValueError):
        return []
    if mix.shape[1] != len(names):
        return []
    if prepared is not None:
        from ..export.derivatives import derivative_stem

        lengths = [int(r.get("n_volumes", -1)) for r in prepared.runs]
        if sum(lengths) == mix.shape[0]:
            runs, start = [], 0
            for i, (r, n) in enumerate(zip(prepared.runs, lengths)):
                ents = {**r.get("entities", {}), "sub": r["subject"], "path": r.get("file")}
                if not ents["path"] or str(ents["path"]).startswith("<"):
                    ents.pop("path")
                try:
                    name = derivative_stem(ents)[1]
                except (KeyError, ValueError):
                    name = f"run-{i + 1}"
                runs.append(RunSeries(subject=str(r["subject"]), name=name, tr=float(r["tr"]) if r.get("tr") else None,
                                      data=mix[start:start + n], index=i))
                start += n
            return runs
    zooms = components.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    return [RunSeries(subject="all", name="melodic_mix", tr=tr, data=mix)]


def _read_runs(out: Path, names: list, prepared: Any) -> list[RunSeries]:
    """The per-run time courses, in the order of the prepared run table when there is one."""
    files = sorted(out.glob("sub-*/func/*_desc-ivae_timeseries.tsv")) + \
        sorted(out.glob("sub-*/ses-*/func/*_desc-ivae_timeseries.tsv"))
    runs: list[RunSeries] = []
    for f in files:
        try:
            df = pd.read_csv(f, sep="\t")
        except (OSError, ValueError):
            continue
        cols = [c for c in names if c in df.columns]
        if len(cols) != len(names):
            continue
        side = _read_json(f.with_suffix(".json"))
        tr = side.get("RepetitionTime")
        stem = f.name[: -len("_timeseries.tsv")]
        subject = stem.split("_")[0][4:]
        runs.append(RunSeries(subject=subject, name=stem, tr=float(tr) if tr else None,
                              data=df[cols].to_numpy(dtype=float)))
    if prepared is not None and runs:
        _match_prepared_runs(runs, prepared)
        runs.sort(key=lambda r: (r.index is None, r.index if r.index is not None else 0, r.name))
    return runs


def _match_prepared_runs(runs: list[RunSeries], prepared: Any) -> None:
    """Set ``RunSeries.index`` (prepared run table) by entities, else by subject and length."""
    from ..export.derivatives import derivative_stem

    by_stem = {}
    for i, r in enumerate(prepared.runs):
        try:
            ents = {**r.get("entities", {}), "sub": r["subject"], "path": r.get("file")}
            if not ents["path"] or str(ents["path"]).startswith("<"):
                ents.pop("path")
            by_stem[derivative_stem(ents)[1]] = i
        except (KeyError, ValueError):
            continue
    used: set[int] = set()
    for rs in runs:
        i = by_stem.get(rs.name)
        if i is None:
            cands = [j for j, r in enumerate(prepared.runs) if str(r.get("subject")) == rs.subject
                     and int(r.get("n_volumes", -1)) == rs.data.shape[0] and j not in used]
            i = cands[0] if cands else None
        if i is not None:
            rs.index = i
            used.add(i)
            if rs.tr is None and prepared.runs[i].get("tr"):
                rs.tr = float(prepared.runs[i]["tr"])


def _prior_per_volume(res: FitResults) -> tuple[np.ndarray, np.ndarray] | None:
    """p(z|u)'s mean and variance per volume from ``model/prior.npz`` (numpy only), or None."""
    path = res.out_dir / "model" / "prior.npz"
    if not path.is_file():
        return None
    with np.load(path) as table:
        codes, mean, var = table["codes"], table["mean"], table["var"]
    if res.prepared is None or len(codes) != len(res.prepared.u):
        return None
    return mean[codes], var[codes]


def _prior_from_model(res: FitResults, model_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The same from the model file (loads torch): for fits written before ``prior.npz``."""
    try:
        from ..estimators.base import SourceEstimator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ivae = SourceEstimator.load(model_path, device="cpu")
    except Exception as exc:  # noqa: BLE001 - torch missing or an incompatible checkpoint
        res.notes.append(f"{model_path.relative_to(res.out_dir).as_posix()} could not be loaded "
                         f"({type(exc).__name__}: {exc}): "
                         "the learned prior is not shown.")
        return None
    u = res.prepared.u   # an AuxVariable: the estimator takes it as it is, in row blocks (bounded memory)
    block = max(1, 2 ** 22 // max(u.shape[1] if len(u.shape) > 1 else 1, 1))
    parts = [ivae.prior_params(u[a:a + block]) for a in range(0, len(u), block)]
    k = res.n_components
    return (np.concatenate([m for m, _ in parts]) if parts else np.empty((0, k)),
            np.concatenate([v for _, v in parts]) if parts else np.empty((0, k)))


def _load_prior(res: FitResults) -> Prior | None:
    """Summarise p(z|u) per factor level and over time (None when impossible).

    Read from ``model/prior.npz`` (written by fit; no torch), else from the model file
    (``model/estimator.pt``, or ``model/ivae.pt`` in a folder written before it had that name).
    """
    from ..export.naming import model_file

    model_path = model_file(res.out_dir)
    prep = res.prepared
    if prep is None:
        res.notes.append("no prepared.h5: the learned prior is not shown.")
        return None
    if not model_path.is_file() and not (res.out_dir / "model" / "prior.npz").is_file():
        res.notes.append("no model/estimator.pt: the learned prior is not shown.")
        return None
    if ((getattr(res, "config", None) or {}).get("mode") or {}).get("ica") == "spatial":
        res.notes.append("spatial mode: the learned prior is over space (its u levels are voxel segments), "
                         "not over time; it is in model/prior.npz and not drawn here.")
        return None
    k = res.n_components
    prior = Prior()
    try:
        per_volume = _prior_per_volume(res) or _prior_from_model(res, model_path)
        if per_volume is None:
            return None
        vol_mean, vol_var = per_volume[0][:, :k], per_volume[1][:, :k]
        u = prep.u
        groups = u.groupings()
        has_time = not groups or any(g["name"] == "window" for g in groups)
        for g in groups:
            if g["name"] == "window":
                continue
            L = len(g["levels"])
            m = np.full((L, k), np.nan)
            v = np.full((L, k), np.nan)
            cnt = np.zeros(L)
            for lv in range(L):
                sel = g["codes"] == lv
                cnt[lv] = sel.sum()
                if cnt[lv]:
                    m[lv], v[lv] = np.nanmean(vol_mean[sel], 0), np.nanmean(vol_var[sel], 0)
            prior.by_factor.append({"name": g["name"], "levels": g["levels"], "mean": m, "var": v, "count": cnt})
        if has_time and res.runs:
            rs = res.runs[res.subject_run]
            if rs.index is not None:
                rows = np.flatnonzero(np.asarray(prep.run) == rs.index)
                rows = rows[np.argsort(np.asarray(prep.volume)[rows])]
                t = np.arange(len(rows)) * (rs.tr or 1.0)
                prior.over_time = {"name": rs.name, "mean": vol_mean[rows], "var": vol_var[rows],
                                   "t": t, "unit": "s" if rs.tr else "volume"}
    except Exception as exc:  # noqa: BLE001 - the prior is an extra; never fail the report on it
        log.warning("prior summary failed: %s", exc)
        res.notes.append(f"the learned prior could not be summarised ({type(exc).__name__}: {exc}).")
        return None
    return prior
