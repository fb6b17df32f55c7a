"""The analysis files: static FNC, spectra, dFNC and the prior's dynamics as TSV + JSON.

Written by :func:`write_analysis_files` into a folder (``FIT_DIR/analysis/`` by
default, staged by the caller so it appears whole); the conventions are in
``docs/analysis.md``. Matrices follow the BIDS connectivity proposal (BEP017):
``*_relmat.dense.tsv``, a k × k matrix without header or index, ``n/a`` on the
undefined diagonal, its rows and columns named in the sidecar (``NodeNames``), the
measure in the ``meas-`` entity and ``RelationshipMeasure``. ``desc-model`` and
``desc-dualreg`` say which time courses (:data:`~.connectivity.KIND_DESCRIPTIONS`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .connectivity import KIND_DESCRIPTIONS, StaticFNC
from .dynamic import DynamicFNC
from .prior_dynamics import PriorDynamics
from .spectra import Spectra

__all__ = ["AnalysisResult", "write_analysis_files", "SUMMARY_FILE", "RELMAT_MEASURE"]

#: the folder's description of what ran
SUMMARY_FILE = "analysis.json"
#: what the matrices hold
RELMAT_MEASURE = "Fisher z (arctanh) of the Pearson correlation"


@dataclass
class AnalysisResult:
    """Everything the analysis computed, by kind of time course.

    Attributes
    ----------
    fnc, spectra, dfnc : dict of str to result
        :class:`StaticFNC`, :class:`Spectra`, :class:`DynamicFNC` by kind (``"model"``,
        ``"dualreg"``); ``dfnc`` empty unless requested.
    prior : PriorDynamics or None
        The prior's mean and variance per volume (None without the fitted prior).
    notes : list of str
        What was left out and why.
    out_dir : Path or None
        Where the files went, when written.
    files : list of Path
        The files written.
    seconds : float
        Wall time of the computation and the writing.
    """

    fnc: dict = field(default_factory=dict)
    spectra: dict = field(default_factory=dict)
    dfnc: dict = field(default_factory=dict)
    prior: PriorDynamics | None = None
    notes: list = field(default_factory=list)
    out_dir: Path | None = None
    files: list = field(default_factory=list)
    seconds: float = 0.0


def _json(path: Path, obj: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False, default=float) + "\n")
    return path


def _relmat(path: Path, matrix: np.ndarray, side: Mapping[str, Any]) -> list[Path]:
    """A dense relmat TSV (no header, n/a for NaN) and its sidecar."""
    pd.DataFrame(matrix).to_csv(path, sep="\t", header=False, index=False, float_format="%.8g", na_rep="n/a")
    return [path, _json(path.with_name(path.name.replace(".tsv", ".json")), side)]


def _subject_dir(root: Path, subject: str) -> Path:
    d = root / f"sub-{subject}" / "func"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _relmat_side(names: Sequence[str], kind: str, extra: Mapping[str, Any]) -> dict:
    return {"RelationshipMeasure": RELMAT_MEASURE, "Weighted": True, "Directed": False,
            "ValidDiagonal": False, "StorageFormat": "Full", "NonNegative": False,
            "NodeNames": list(names), "TimeCourses": kind, "TimeCoursesDescription": KIND_DESCRIPTIONS[kind],
            **extra}


def _write_fnc(root: Path, group: Path, fnc: StaticFNC) -> list[Path]:
    kind, out = fnc.kind, []
    pp = fnc.settings.to_dict()
    for i, s in enumerate(fnc.subjects):
        out += _relmat(_subject_dir(root, s) / f"sub-{s}_desc-{kind}_meas-fisherz_relmat.dense.tsv", fnc.z[i],
                       _relmat_side(fnc.names, kind, {"Runs": fnc.n_runs[i], "Postprocess": pp,
                                                      "Description": "static FNC; runs of the subject averaged in z"}))
    for stat, mat, what in (("mean", fnc.mean, "mean over subjects"), ("sd", fnc.sd, "standard deviation over "
                                                                                   "subjects (ddof 1)")):
        out += _relmat(group / f"desc-{kind}_meas-fisherz_stat-{stat}_relmat.dense.tsv", mat,
                       _relmat_side(fnc.names, kind, {"Statistic": what, "Subjects": fnc.subjects,
                                                      "Postprocess": pp}))
    return out


def _write_spectra(root: Path, group: Path, sp: Spectra) -> list[Path]:
    kind, out = sp.kind, []
    side = {"Columns": ["frequency", *sp.names], "frequency": {"Units": "Hz"},
            "Units": "time-course units squared per Hz (power spectral density)",
            "Description": "multitaper power spectrum per component on the common frequency grid; runs of the "
                           "subject averaged", "Spectra": sp.settings.to_dict(), "Postprocess": sp.postprocess.to_dict(),
            "TimeCourses": kind}
    for i, s in enumerate(sp.subjects):
        path = _subject_dir(root, s) / f"sub-{s}_desc-{kind}_spectra.tsv"
        pd.DataFrame(np.column_stack([sp.frequencies, sp.power[i]]), columns=["frequency", *sp.names]).to_csv(
            path, sep="\t", index=False, float_format="%.8g")
        out += [path, _json(path.with_suffix(".json"), side)]
    path = group / f"desc-{kind}_stat-mean_spectra.tsv"
    pd.DataFrame(np.column_stack([sp.frequencies, sp.power.mean(0)]), columns=["frequency", *sp.names]).to_csv(
        path, sep="\t", index=False, float_format="%.8g")
    out += [path, _json(path.with_suffix(".json"), {**side, "Description": "mean over subjects of the spectra"})]
    rows = [{"subject": s, "component": n, "dynamic_range": sp.dynamic_range[i, j], "falff": sp.falff[i, j]}
            for i, s in enumerate(sp.subjects) for j, n in enumerate(sp.names)]
    summary_side = {
        "subject": {"Description": "subject label"}, "component": {"Description": "component name"},
        "dynamic_range": {"Description": "peak power minus the minimum power at frequencies at or above the "
                                         "peak, of the spectrum normalised to unit sum over the grid (GIFT)",
                          "Units": "fraction of the total power per frequency bin"},
        "falff": {"Description": f"power below {sp.settings.low_band} Hz over the power in "
                                 f"{sp.settings.high_band[0]}-{sp.settings.high_band[1]} Hz (trapezoid integrals)",
                  "Units": "ratio"},
        "TimeCourses": kind, "Spectra": sp.settings.to_dict()}
    path = group / f"desc-{kind}_spectralsummary.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, float_format="%.8g", na_rep="n/a")
    out += [path, _json(path.with_suffix(".json"), summary_side)]
    path = group / f"desc-{kind}_stat-mean_spectralsummary.tsv"
    pd.DataFrame({"component": sp.names, "dynamic_range": np.nanmean(sp.dynamic_range, 0),
                  "falff": np.nanmean(sp.falff, 0)}).to_csv(path, sep="\t", index=False, float_format="%.8g",
                                                             na_rep="n/a")
    out += [path, _json(path.with_suffix(".json"), {**summary_side, "Description": "mean over subjects"})]
    return out


def _write_dfnc(root: Path, group: Path, d: DynamicFNC) -> list[Path]:
    kind, out = d.kind, []
    settings = {"DFNC": d.settings.to_dict(), "Postprocess": d.postprocess.to_dict()}
    for j, c in enumerate(d.centroids):
        out += _relmat(group / f"desc-{kind}_state-{j + 1}_meas-fisherz_relmat.dense.tsv", c,
                       _relmat_side(d.names, kind, {"Description": f"dFNC state {j + 1}: the k-means centroid of "
                                                                   "the windows' FNC", **settings}))
    for i, s in enumerate(d.subjects):
        path = _subject_dir(root, s) / f"sub-{s}_desc-{kind}_dfnc.tsv"
        pd.DataFrame({"run": d.window_run[i] + 1, "window_start": d.window_start[i] + 1,
                      "state": d.states[i] + 1}).to_csv(path, sep="\t", index=False)
        out += [path, _json(path.with_suffix(".json"), {
            "run": {"Description": "the subject's run (from 1, in the order of the fit's run table)"},
            "window_start": {"Description": "first volume of the window (from 1)",
                             "Units": "volumes"},
            "state": {"Description": "dFNC state of the window (from 1)"}, "TimeCourses": kind, **settings})]
    cols = {"subject": d.subjects}
    for j in range(d.n_states):
        cols[f"fraction_state{j + 1}"] = d.fraction[:, j]
    for j in range(d.n_states):
        cols[f"dwell_state{j + 1}"] = d.dwell[:, j]
    cols["n_transitions"] = d.transitions
    cols["alpha"] = d.alpha
    path = group / f"desc-{kind}_dfncsummary.tsv"
    pd.DataFrame(cols).to_csv(path, sep="\t", index=False, float_format="%.6g", na_rep="n/a")
    side = {"fraction_stateN": {"Description": "fraction of the subject's windows in state N"},
            "dwell_stateN": {"Description": "mean number of consecutive windows in state N (windows move by one "
                                            "volume); n/a when never visited", "Units": "volumes"},
            "n_transitions": {"Description": "state changes between consecutive windows of a run"},
            "alpha": {"Description": "the graphical lasso penalty used for the subject"},
            "WithinClusterDistance": {str(k): v for k, v in d.within_distance.items()},
            "TimeCourses": kind, **settings}
    return out + [path, _json(path.with_suffix(".json"), side)]


def write_analysis_files(root: str | Path, result: AnalysisResult, *, summary: Mapping[str, Any]) -> list[Path]:
    """Write ``result`` into the folder ``root`` (being staged); returns the files written.

    ``summary`` goes into ``root/analysis.json`` (what ran), with the list of notes.
    """
    root = Path(root)
    group = root / "group"
    group.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for fnc in result.fnc.values():
        files += _write_fnc(root, group, fnc)
    for sp in result.spectra.values():
        files += _write_spectra(root, group, sp)
    for d in result.dfnc.values():
        files += _write_dfnc(root, group, d)
    if result.prior is not None:
        files += result.prior.write(root)
    files.append(_json(root / SUMMARY_FILE, {**summary, "Notes": list(result.notes)}))
    return files
