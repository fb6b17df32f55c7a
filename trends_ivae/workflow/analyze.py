"""Analysis after the fit, the workflow's doors: a fit folder, a fitted model in memory.

- :func:`analyze_folder` (``trends-ivae analyze FIT_DIR``): a fit folder (BIDS or
  MELODIC layout) read back (:func:`timecourses_from_folder`), the files written into
  ``FIT_DIR/analysis/`` (or ``out``) whole or not at all, with a manifest so ``force``
  replaces only the tool's own files;
- :func:`analyze_model`: a fitted :class:`~trends_ivae.GroupIVAE` in memory (its
  ``timecourses_``, ``runs_``, ``components_`` and prepared data); nothing is written.

The computation is :mod:`trends_ivae.analysis.run` (also called at the end of ``fit``:
:func:`~trends_ivae.analysis.run.analyze_into_stage`); the files are described in
``docs/analysis.md``. A problem the user can fix raises :class:`WorkflowError` naming
the file. torch is never imported here.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.dynamic import DFNCSettings
from ..analysis.files import AnalysisResult
from ..analysis.postprocess import PostprocessSettings
from ..analysis.spectra import SpectraSettings
from ..analysis.run import (ANALYSIS_DIR, AnalyzeSettings, GroupTimecourses, analysis_summary, analyze_timecourses,
                            run_path, spatial_regression_timecourses, timecourses_from_model)
from .fit import WorkflowError

__all__ = ["AnalyzeSettings", "PostprocessSettings", "SpectraSettings", "DFNCSettings", "GroupTimecourses", "WorkflowError",
           "AnalysisResult", "timecourses_from_folder", "analyze_model",
           "analyze_folder", "ANALYSIS_DIR"]


def _check_layout(fit_dir: Path) -> None:
    """WorkflowError unless ``fit_dir`` is a fit folder in a layout the analysis reads."""
    from .report import fit_folder_problem

    problem = fit_folder_problem(fit_dir)
    if problem:
        raise WorkflowError(problem + "; the analysis reads the BIDS (default) and MELODIC layouts "
                                      "(a GIFT-layout folder is not supported)")


def _read_fit_folder(fit_dir: Path):
    from ..report.results import load_results

    _check_layout(fit_dir)
    try:
        return load_results(fit_dir, load_prior=False)
    except (OSError, ValueError, KeyError) as exc:
        raise WorkflowError(f"cannot read the fit folder {str(fit_dir)!r}: {exc} (written by an older version? "
                            "refit, or rewrite it with this version)") from exc


def _run_file(fit_dir: Path, run) -> str:
    """How messages name a run's time courses: its TSV, or the MELODIC layout's ``melodic_mix``."""
    from ..report.results import is_melodic_folder

    if is_melodic_folder(fit_dir):
        return f"{fit_dir / 'melodic_mix'} (run {run.name})"
    folder = f"sub-{run.subject}/" + (f"ses-{run.name.split('_ses-')[1].split('_')[0]}/" if "_ses-" in run.name else "")
    return str(fit_dir / folder / "func" / f"{run.name}_timeseries.tsv")


def timecourses_from_folder(fit_dir: str | Path) -> GroupTimecourses:
    """The :class:`GroupTimecourses` of a fit folder (BIDS or MELODIC layout).

    The model's time courses from ``*_desc-ivae_timeseries.tsv`` (``melodic_mix``); with
    ``prepared.h5``, the dual-regression ones from ``group/desc-ivae_components.nii.gz``
    (``melodic_IC``) and the prior from ``model/prior.npz``.

    Raises
    ------
    WorkflowError
        Not a fit folder of a supported layout, unreadable, or without time courses.
    """
    fit_dir = Path(fit_dir)
    res = _read_fit_folder(fit_dir)
    runs = [r for r in res.runs if r.subject != "all"]
    if not runs:
        raise WorkflowError(f"{str(fit_dir)!r} holds no per-run time courses (sub-*/func/*_desc-ivae_timeseries.tsv, "
                            "or melodic_mix with prepared.h5 to split it into runs)")
    prep = res.prepared
    table = prep.runs if prep is not None else None
    paths = [run_path(table[r.index]) if table is not None and r.index is not None
             else f"sub-{r.subject}/func/{r.name.rsplit('_desc-', 1)[0]}" for r in runs]
    out = GroupTimecourses(names=list(res.names), subjects=[r.subject for r in runs], trs=[r.tr for r in runs],
                           run_names=[_run_file(fit_dir, r) for r in runs], run_paths=paths,
                           timecourses={"model": [np.asarray(r.data, np.float64) for r in runs]},
                           u_spec=(res.config.get("aux") or {}).get("spec"))
    if prep is None or any(r.index is None for r in runs):
        out.notes.append("no prepared.h5 matching the time courses: no dual-regression FNC, no prior dynamics")
        return out
    mask = np.asarray(prep.mask) > 0
    maps = np.asarray(res.components.dataobj, np.float64)[mask].T
    if maps.shape != (len(res.names), prep.basis.shape[0]):
        out.notes.append(f"the group maps ({maps.shape}) do not fit prepared.h5's mask and basis: no dual regression")
    else:
        per_run = spatial_regression_timecourses(maps, prep.basis, prep.x * prep.scale, prep.run, len(prep.runs))
        out.timecourses["dualreg"] = [per_run[r.index] for r in runs]
    prior_file = fit_dir / "model" / "prior.npz"
    if (res.config.get("mode") or {}).get("ica") == "spatial":
        out.notes.append("spatial mode: the prior is over space (voxel segments), not over time: no prior dynamics")
    elif prior_file.is_file():
        run_pos = {r.index: i for i, r in enumerate(runs)}   # prepared run -> position among the runs read
        with np.load(prior_file) as t:
            out.prior = (t["codes"], t["mean"], t["var"],
                         np.array([run_pos.get(int(i), -1) for i in np.asarray(prep.run)]))
    else:
        out.notes.append("no model/prior.npz: no prior dynamics")
    return out


def analyze_model(model: Any, settings: AnalyzeSettings | None = None) -> AnalysisResult:
    """:func:`analyze_timecourses` of a fitted :class:`~trends_ivae.GroupIVAE` (nothing written).

    Examples
    --------
    >>> res = analyze_model(model)                        # doctest: +SKIP
    >>> res.fnc["dualreg"].mean                           # group FNC, Fisher z (k, k)
    """
    s = settings or AnalyzeSettings()
    try:
        return analyze_timecourses(timecourses_from_model(model, prior=s.prior), s)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from exc


def analyze_folder(fit_dir: str | Path, *, out: str | Path | None = None, settings: AnalyzeSettings | None = None,
                   force: bool = False) -> AnalysisResult:
    """Analyse a fit folder and write ``FIT_DIR/analysis/`` (or ``out``), whole or not at all.

    Parameters
    ----------
    fit_dir : path
        A ``trends-ivae fit`` output folder (BIDS or MELODIC layout).
    out : path, optional
        Where to write (default ``fit_dir/analysis``).
    settings : AnalyzeSettings, optional
    force : bool, default=False
        Replace an existing analysis folder of the tool's own files (never other files).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    WorkflowError
        Unreadable or unsupported folder, bad time courses (NaN, no TR, too short), or an
        output folder that holds files the tool did not write (or exists, without ``force``).
    """
    from ..analysis.files import write_analysis_files
    from ..export.outputs import MANIFEST_NAME, atomic_output_dir, read_manifest, record_outputs, refuse_existing_dir

    fit_dir = Path(fit_dir)
    s = settings or AnalyzeSettings()
    target = Path(out) if out is not None else fit_dir / ANALYSIS_DIR
    _check_layout(fit_dir)
    try:
        refuse_existing_dir(target, force)   # before any work
    except FileExistsError as exc:
        raise WorkflowError(str(exc)) from exc
    t0 = time.perf_counter()
    tcs = timecourses_from_folder(fit_dir)
    try:
        result = analyze_timecourses(tcs, s)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from exc
    try:
        with atomic_output_dir(target, force=force) as stage:
            written = write_analysis_files(stage, result, summary=analysis_summary(tcs, s, str(fit_dir)))
    except (OSError, ValueError) as exc:
        raise WorkflowError(f"could not write {str(target)!r}: {exc}") from exc
    result.out_dir = target
    result.files = [target / p.relative_to(stage) for p in written]
    if target.parent.resolve() == fit_dir.resolve() and read_manifest(fit_dir) is not None:
        record_outputs(fit_dir, [Path(target.name) / f.relative_to(target)   # a refit with --force replaces them
                                 for f in [*result.files, target / MANIFEST_NAME]])
    result.seconds = time.perf_counter() - t0
    return result


