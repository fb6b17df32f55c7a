"""Static functional network connectivity (FNC) between components.

Per run, the Pearson correlation of the post-processed time courses
(:func:`~trends_ivae.analysis.postprocess.postprocess`), computed by nilearn's
``ConnectivityMeasure(kind="correlation")`` with the plain empirical covariance (not
its default Ledoit-Wolf shrinkage, so the values are Pearson's r), then Fisher's z
(``arctanh``). The runs of one subject are averaged in z; the group mean and standard
deviation are taken over subjects. The diagonal is undefined (r = 1) and held as NaN.

Which time courses? The iVAE is a *temporal* ICA: its time courses are made
(conditionally on u) independent, so their group-level correlation is near zero by
construction, and their FNC is meaningful per subject, per condition and over time
(what dFNC looks at). GIFT's and MELODIC's FNC comes from *spatial* ICA, whose time
courses are free to correlate; its counterpart here is the FNC of time courses obtained
by spatial regression of the group maps onto each run (dual regression stage 1). The
caller says which in ``kind`` (``"model"`` or ``"dualreg"``), and the files say it too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .postprocess import PostprocessSettings, postprocess

__all__ = ["StaticFNC", "KIND_DESCRIPTIONS", "correlation_z", "static_fnc", "subject_order", "as_trs"]

#: what each kind of time course is (written in the sidecars)
KIND_DESCRIPTIONS = {
    "model": "the model's own time courses (iVAE posterior means, a temporal ICA: near-independent "
             "at the group level by construction; meaningful per subject, condition and over time)",
    "dualreg": "time courses from spatial regression of the group maps onto each run (dual regression "
               "stage 1), the FNC that GIFT and MELODIC users compare with",
}


@dataclass
class StaticFNC:
    """Static FNC of a group: Fisher z per subject, group mean and SD.

    Attributes
    ----------
    kind : str
        ``"model"`` or ``"dualreg"`` (:data:`KIND_DESCRIPTIONS`).
    names : list of str
        Component names, in the order of the matrices' rows.
    subjects : list of str
        Subject labels, in the order of ``z``.
    z : ndarray of shape (n_subjects, k, k)
        Fisher z of the correlation, runs of a subject averaged; NaN on the diagonal.
    n_runs : list of int
        Runs averaged per subject.
    settings : PostprocessSettings
        The post-processing applied first.
    """

    kind: str
    names: list
    subjects: list
    z: np.ndarray
    n_runs: list
    settings: PostprocessSettings = field(default_factory=PostprocessSettings)

    @property
    def mean(self) -> np.ndarray:
        """(k, k) group mean of the subjects' z."""
        return np.mean(self.z, axis=0)

    @property
    def sd(self) -> np.ndarray:
        """(k, k) standard deviation over subjects (ddof 1; NaN with one subject)."""
        if len(self.z) < 2:
            return np.full(self.z.shape[1:], np.nan)
        return np.std(self.z, axis=0, ddof=1)

    def reordered(self, order: Sequence[int]) -> "StaticFNC":
        """The same FNC with components in ``order`` (indices into ``names``)."""
        idx = np.asarray(order, int)
        return StaticFNC(self.kind, [self.names[i] for i in idx], self.subjects, self.z[:, idx][:, :, idx],
                         self.n_runs, self.settings)


def correlation_z(runs: Sequence[np.ndarray]) -> np.ndarray:
    """Fisher z of each run's Pearson correlation, by nilearn's ``ConnectivityMeasure``.

    Parameters
    ----------
    runs : sequence of ndarray (n_volumes, k)
        Time courses (already post-processed).

    Returns
    -------
    ndarray of shape (n_runs, k, k)
        ``arctanh(r)``, NaN on the diagonal.
    """
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    measure = ConnectivityMeasure(cov_estimator=EmpiricalCovariance(), kind="correlation")
    r = np.asarray(measure.fit_transform([np.asarray(t, np.float64) for t in runs]))
    k = r.shape[-1]
    off = ~np.eye(k, dtype=bool)
    z = np.full_like(r, np.nan)
    z[:, off] = np.arctanh(np.clip(r[:, off], -1 + 1e-15, 1 - 1e-15))
    return z


def as_trs(tr: float | Sequence[float] | None, n_runs: int) -> list:
    """One TR per run from a single TR or a list of them (None stays None)."""
    if tr is None or np.ndim(tr) == 0:
        return [tr] * n_runs
    trs = list(tr)
    if len(trs) != n_runs:
        raise ValueError(f"{len(trs)} TRs for {n_runs} runs")
    return trs


def subject_order(subjects: Sequence[Any]) -> tuple[list, list]:
    """(the distinct subjects in first-seen order, the runs of each as index lists)."""
    labels = [str(s) for s in subjects]
    distinct = list(dict.fromkeys(labels))
    return distinct, [[i for i, s in enumerate(labels) if s == d] for d in distinct]


def static_fnc(timecourses: Sequence[Any], subjects: Sequence[Any], tr: float | Sequence[float], *,
               settings: PostprocessSettings | None = None, names: Sequence[str] | None = None,
               kind: str = "model", confounds: Sequence[Any] | None = None,
               run_names: Sequence[str] | None = None) -> StaticFNC:
    """Static FNC of a group of runs.

    Parameters
    ----------
    timecourses : sequence of array-like (n_volumes, k)
        Each run's component time courses (runs may differ in length).
    subjects : sequence of str
        The subject of each run.
    tr : float or sequence of float
        Repetition time in seconds, one for all runs or one per run.
    settings : PostprocessSettings, optional
        Post-processing before the correlation (default GIFT's).
    names : sequence of str, optional
        Component names (default ``ic01, ic02, ...``).
    kind : {"model", "dualreg"}, default="model"
        Which time courses these are (:data:`KIND_DESCRIPTIONS`).
    confounds : sequence of array-like, optional
        Per-run confounds (``settings.regress_confounds``).
    run_names : sequence of str, optional
        How error messages name the runs (file names).

    Returns
    -------
    StaticFNC

    Raises
    ------
    ValueError
        Runs with different numbers of components, NaN in a run, a missing TR, or as
        many TRs or subjects as runs not given; the message names the run.
    """
    if kind not in KIND_DESCRIPTIONS:
        raise ValueError(f"kind must be one of {sorted(KIND_DESCRIPTIONS)}, got {kind!r}")
    s = settings or PostprocessSettings()
    n = len(timecourses)
    if n == 0 or len(subjects) != n:
        raise ValueError(f"need one subject per run and at least one run; got {n} runs, {len(subjects)} subjects")
    trs = as_trs(tr, n)
    labels = list(run_names) if run_names is not None else [f"run {i + 1}" for i in range(n)]
    conf = list(confounds) if confounds is not None else [None] * n
    clean = [postprocess(t, trs[i], s, confounds=conf[i], name=labels[i]) for i, t in enumerate(timecourses)]
    widths = {c.shape[1] for c in clean}
    if len(widths) != 1:
        raise ValueError(f"runs have different numbers of components: {sorted(widths)}")
    k = widths.pop()
    names = list(names) if names is not None else [f"ic{i + 1:02d}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} components")
    z_runs = correlation_z(clean)
    distinct, groups = subject_order(subjects)
    z = np.stack([z_runs[idx].mean(axis=0) for idx in groups])
    return StaticFNC(kind=kind, names=names, subjects=distinct, z=z, n_runs=[len(g) for g in groups], settings=s)
