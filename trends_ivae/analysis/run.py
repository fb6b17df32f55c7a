"""One analysis of a group's time courses: static FNC, spectra, dFNC, the prior's dynamics.

:class:`GroupTimecourses` is what every door hands in (the workflow builds it from a fit
folder, :func:`timecourses_from_model` from a fitted :class:`~trends_ivae.GroupIVAE` in
memory); :class:`AnalyzeSettings` says what to compute; :func:`analyze_timecourses`
computes it (an :class:`~.files.AnalysisResult`); :func:`analyze_into_stage` is the end of
``fit``: the cheap parts written into the folder being staged.

Two kinds of time course are analysed (:data:`.connectivity.KIND_DESCRIPTIONS`):
``model`` (the iVAE's own, a temporal ICA) and ``dualreg`` (spatial regression of the
group maps onto each run's reduced data, dual regression's stage 1,
:func:`trends_ivae.group.backprojection.regression_coefficients`), the one GIFT users
compare with. torch is never imported here: the prior's parameters come from
``model/prior.npz`` or from the fitted estimator's ``prior_params``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .connectivity import KIND_DESCRIPTIONS, static_fnc
from .dynamic import DFNCSettings, dynamic_fnc
from .files import AnalysisResult, write_analysis_files
from .postprocess import PostprocessSettings
from .prior_dynamics import prior_dynamics
from .spectra import SpectraSettings, spectra

__all__ = ["AnalyzeSettings", "GroupTimecourses", "spatial_regression_timecourses", "run_path",
           "timecourses_from_model", "analyze_timecourses", "analysis_summary", "analyze_into_stage",
           "ANALYSIS_DIR"]

#: the analysis folder inside a fit folder
ANALYSIS_DIR = "analysis"


@dataclass(frozen=True)
class AnalyzeSettings:
    """What the analysis computes.

    Attributes
    ----------
    postprocess : PostprocessSettings
        Detrend, despike, low-pass, confounds (GIFT's defaults).
    spectra : SpectraSettings
        Tapers and fALFF bands.
    dfnc : DFNCSettings or None, default=None
        dFNC's options; None: no dFNC (it is opt-in: ``--dfnc``).
    kinds : tuple of str, default=("model", "dualreg")
        The time courses analysed (``dualreg`` needs the reduced data: ``prepared.h5``).
    prior : bool, default=True
        Write the prior's mean and variance per volume (needs ``model/prior.npz``).
    """

    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)
    spectra: SpectraSettings = field(default_factory=SpectraSettings)
    dfnc: DFNCSettings | None = None
    kinds: tuple = ("model", "dualreg")
    prior: bool = True

    def summary(self) -> dict:
        """The settings as ``analysis.json`` records them."""
        return {"Postprocess": self.postprocess.to_dict(), "Spectra": self.spectra.to_dict(),
                "DFNC": None if self.dfnc is None else self.dfnc.to_dict(), "Kinds": list(self.kinds)}


@dataclass
class GroupTimecourses:
    """A group's time courses as the analysis takes them.

    Attributes
    ----------
    names : list of str
        Component names.
    subjects : list of str
        The subject of each run.
    trs : list of float or None
        Each run's TR (seconds).
    run_names : list of str
        How messages name each run (its file).
    run_paths : list of str
        Each run's path stem in an analysis folder (``sub-01/func/sub-01_task-x_run-1``).
    timecourses : dict of str to list of ndarray (n_volumes, k)
        Per kind (``model``, ``dualreg``), per run.
    prior : tuple or None
        ``(codes, mean, var, run_of_volume)`` of ``model/prior.npz`` and the run table.
    u_spec : str or None
        The fit's u, for the records.
    notes : list of str
        What could not be read and why.
    """

    names: list
    subjects: list
    trs: list
    run_names: list
    run_paths: list
    timecourses: dict
    prior: tuple | None = None
    u_spec: str | None = None
    notes: list = field(default_factory=list)


def spatial_regression_timecourses(maps: np.ndarray, basis: np.ndarray, x_units: np.ndarray,
                                   run: np.ndarray, n_runs: int) -> list[np.ndarray]:
    """Dual regression's stage 1 in the reduced space, per run.

    The group maps (k, n_voxels), z-scored across voxels (mean zero, so no intercept),
    are taken into the basis, ``G = maps @ basis`` (k, d); each volume's reduced data
    ``x`` (coordinates in the orthonormal basis) is regressed on them:
    ``z = x pinv(G)`` (:func:`~trends_ivae.group.backprojection.regression_coefficients`).
    """
    from ..group.backprojection import regression_coefficients

    g = np.asarray(maps, np.float64) @ np.asarray(basis, np.float64)           # (k, d)
    z = regression_coefficients(np.asarray(x_units, np.float64).T, g.T, center=False).T   # (n, k)
    run = np.asarray(run)
    return [z[run == i] for i in range(n_runs)]


def run_path(run: dict) -> str:
    """``sub-01/func/sub-01_task-x_run-1``: where a run's analysis files go."""
    from ..export.naming import derivative_stem

    ents = {**run.get("entities", {}), "sub": run["subject"], "path": run.get("file")}
    if not ents["path"] or str(ents["path"]).startswith("<"):
        ents.pop("path")
    folder, stem = derivative_stem(ents, desc="x")
    return f"{folder.as_posix()}/{stem[: -len('_desc-x')]}"


def timecourses_from_model(model: Any, *, prior: bool = True) -> GroupTimecourses:
    """The :class:`GroupTimecourses` of a fitted :class:`~trends_ivae.GroupIVAE` (in memory).

    The model's own time courses (``timecourses_``), and, with its prepared data
    (``prepared_``), the dual-regression ones from ``components_``; with ``prior``, p(z|u)
    per volume from the estimator's ``prior_params`` (distinct u only).
    """
    from ..export.naming import component_names

    if getattr(model, "timecourses_", None) is None or getattr(model, "components_", None) is None:
        raise ValueError("the model holds no time courses or maps (one loaded from a fit folder is not recomputed): "
                         "analyse the folder instead (trends-ivae analyze FIT_DIR, workflow.analyze.analyze_folder)")
    runs = list(model.runs_)
    names = component_names(len(model.components_))
    tcs = {"model": [np.asarray(t, np.float64) for t in model.timecourses_]}
    out = GroupTimecourses(names=names, subjects=[str(r["subject"]) for r in runs],
                           trs=[r.get("tr") for r in runs], run_names=[run_path(r) for r in runs],
                           run_paths=[run_path(r) for r in runs], timecourses=tcs)
    p = getattr(model, "prepared_", None)
    if p is None:
        out.notes.append("no prepared data on the model: no dual-regression time courses, no prior")
        return out
    tcs["dualreg"] = spatial_regression_timecourses(model.components_, p.basis, p.x * p.scale, p.run, len(runs))
    out.u_spec = (p.aux or {}).get("spec")
    if prior and getattr(model, "ica_", "temporal") == "spatial":
        out.notes.append("spatial mode: the prior is over space (voxel segments), not over time: no prior dynamics")
    elif prior:
        flat = np.asarray(p.u.data).reshape(len(p.u.data), -1)
        _, first, codes = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        mean, var = model.estimator_.prior_params(p.u.take(first))
        out.prior = (codes.reshape(-1), mean, var, np.asarray(p.run))
    return out


def analyze_timecourses(tcs: GroupTimecourses, settings: AnalyzeSettings | None = None) -> AnalysisResult:
    """Static FNC, spectra, (dFNC) and the prior's dynamics of ``tcs``.

    Raises
    ------
    ValueError
        A run with NaN, without a TR, shorter than the dFNC window (the message names
        its file).
    """
    s = settings or AnalyzeSettings()
    t0 = time.perf_counter()
    result = AnalysisResult(notes=list(tcs.notes))
    common = {"names": tcs.names, "run_names": tcs.run_names}
    for kind in s.kinds:
        runs = tcs.timecourses.get(kind)
        if runs is None:
            continue
        result.fnc[kind] = static_fnc(runs, tcs.subjects, tcs.trs, settings=s.postprocess, kind=kind, **common)
        result.spectra[kind] = spectra(runs, tcs.subjects, tcs.trs, settings=s.spectra,
                                       postprocess_settings=s.postprocess, kind=kind, **common)
        if s.dfnc is not None:
            result.dfnc[kind] = dynamic_fnc(runs, tcs.subjects, tcs.trs, settings=s.dfnc,
                                            postprocess_settings=s.postprocess, kind=kind, **common)
    if s.prior and tcs.prior is not None:
        codes, mean, var, run_of = tcs.prior
        result.prior = prior_dynamics(codes, mean, var, run_of, runs=tcs.run_paths, names=tcs.names,
                                      trs=tcs.trs, u_spec=tcs.u_spec)
    result.seconds = time.perf_counter() - t0
    return result


def analysis_summary(tcs: GroupTimecourses, settings: AnalyzeSettings, source: str) -> dict:
    from .._version import __version__

    return {"GeneratedBy": {"Name": "trends_ivae", "Version": __version__}, "FitFolder": source,
            "Components": tcs.names, "ComponentOrder": "the fit's order", "Subjects": list(dict.fromkeys(tcs.subjects)),
            "TimeCourses": {k: KIND_DESCRIPTIONS[k] for k in tcs.timecourses if k in settings.kinds},
            **settings.summary()}


def analyze_into_stage(stage: str | Path, model: Any, settings: AnalyzeSettings | None = None) -> AnalysisResult:
    """The end of ``fit``: analyse the fitted model and write ``stage/analysis/`` with its
    own manifest (so ``trends-ivae analyze --force`` may replace it later).

    The prior comes from ``stage/model/prior.npz`` when the model folder is written
    first. A failure of the computation (a run with NaN...) raises ValueError; the
    caller decides whether the fit's outputs go on without it.
    """
    from ..export.outputs import record_outputs

    s = settings or AnalyzeSettings()
    stage = Path(stage)
    tcs = timecourses_from_model(model, prior=False)
    table = stage / "model" / "prior.npz"
    if getattr(model, "ica_", "temporal") == "spatial":   # its prior is over space (voxels), not time
        tcs.notes.append("spatial mode: the prior is over space (voxel segments), not over time: no prior dynamics")
    elif s.prior and table.is_file() and getattr(model, "prepared_", None) is not None:
        with np.load(table) as t:
            tcs.prior = (t["codes"], t["mean"], t["var"], np.asarray(model.prepared_.run))
    result = analyze_timecourses(tcs, s)
    root = stage / ANALYSIS_DIR
    root.mkdir(parents=True, exist_ok=True)
    result.files = write_analysis_files(root, result, summary=analysis_summary(tcs, s, "."))
    record_outputs(root, [f.relative_to(root) for f in result.files], replace=True)
    result.out_dir = root
    return result
