"""Dynamic FNC (dFNC): tapered sliding windows, sparse covariances, k-means states.

As GIFT's dFNC toolbox (Allen et al. 2014, *Cerebral Cortex* 24:663):

1. each run's post-processed time courses are cut into windows of ``window`` volumes
   (GIFT: 22 TRs) sliding by one volume, each weighted by a taper: a rectangle of
   ``window`` volumes convolved with a Gaussian of ``sigma`` volumes (GIFT: 3), so it
   falls to about one half at the window's edges; windows must fit inside a run;
2. in each window, the z-scored weighted time courses give a sparse covariance by
   scikit-learn's ``GraphicalLasso``; the penalty is chosen once per subject by
   ``GraphicalLassoCV`` on the subject's whole z-scored time courses (or given); the
   covariance becomes a correlation and then Fisher z. Subjects are handled one at a
   time: only the (windows × pairs) features are kept;
3. the windows' upper triangles are clustered: first the *exemplar* windows (those at
   a local maximum of the variance across pairs, per subject), then all windows from
   the exemplars' centroids. ``metric="cityblock"`` (GIFT's, the L1 distance, centroids
   are medians) or ``"euclidean"`` (scikit-learn's ``KMeans``). The number of states is
   given or chosen by the elbow of the within-cluster distance over 2..``max_states``
   (the k farthest from the chord joining the curve's ends);
4. per subject: the state of every window, the fraction of windows in each state, the
   mean dwell time (consecutive windows in one state, in volumes, since windows move
   by one volume) and the number of transitions (within runs).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .connectivity import as_trs, subject_order
from .postprocess import PostprocessSettings, postprocess

__all__ = ["DFNCSettings", "DynamicFNC", "window_taper", "window_fnc", "cluster_states", "dynamic_fnc",
           "upper_to_matrix"]


@dataclass(frozen=True)
class DFNCSettings:
    """dFNC options (GIFT's defaults).

    Attributes
    ----------
    window : int, default=22
        Window length in volumes (TRs).
    sigma : float, default=3.0
        The Gaussian taper's standard deviation in volumes.
    n_states : int or None, default=None
        Number of k-means states; None: the elbow over 2..``max_states``.
    max_states : int, default=8
        The largest number of states the elbow considers.
    metric : {"cityblock", "euclidean"}, default="cityblock"
        The k-means distance (GIFT: city-block).
    alpha : float or None, default=None
        The graphical lasso's penalty; None: cross-validated per subject.
    n_init : int, default=10
        k-means restarts (the best kept).
    random_state : int, default=0
    """

    window: int = 22
    sigma: float = 3.0
    n_states: int | None = None
    max_states: int = 8
    metric: str = "cityblock"
    alpha: float | None = None
    n_init: int = 10
    random_state: int = 0

    def __post_init__(self) -> None:
        if int(self.window) < 3:
            raise ValueError(f"window must be >= 3 volumes, got {self.window}")
        if self.metric not in ("cityblock", "euclidean"):
            raise ValueError(f"metric must be 'cityblock' or 'euclidean', got {self.metric!r}")
        if self.n_states is not None and int(self.n_states) < 1:
            raise ValueError(f"n_states must be >= 1, got {self.n_states}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DynamicFNC:
    """dFNC of a group.

    Attributes
    ----------
    kind : str
        Which time courses (``"model"`` or ``"dualreg"``).
    names, subjects : list of str
    centroids : ndarray of shape (n_states, k, k)
        The states' FNC (Fisher z), NaN on the diagonal; states numbered from 1 in files.
    states : list of ndarray of int
        Per subject, the state (0-based) of each window, runs in order.
    window_run, window_start : list of ndarray of int
        Per subject, each window's run (index among the subject's runs) and first volume.
    fraction : ndarray of shape (n_subjects, n_states)
        Fraction of the subject's windows in each state.
    dwell : ndarray of shape (n_subjects, n_states)
        Mean dwell time in volumes (NaN for a state never visited).
    transitions : ndarray of shape (n_subjects,)
        State changes between consecutive windows of a run.
    alpha : ndarray of shape (n_subjects,)
        The graphical lasso penalty used per subject.
    within_distance : dict of int to float
        The exemplars' total within-cluster distance per number of states tried.
    settings, postprocess : the options used.
    """

    kind: str
    names: list
    subjects: list
    centroids: np.ndarray
    states: list
    window_run: list
    window_start: list
    fraction: np.ndarray
    dwell: np.ndarray
    transitions: np.ndarray
    alpha: np.ndarray
    within_distance: dict = field(default_factory=dict)
    settings: DFNCSettings = field(default_factory=DFNCSettings)
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)

    @property
    def n_states(self) -> int:
        return len(self.centroids)


def window_taper(window: int, sigma: float) -> np.ndarray:
    """(window,) weights: a rectangle of ``window`` ones convolved with a Gaussian of
    ``sigma`` volumes, the central ``window`` values, peak 1."""
    from scipy.ndimage import gaussian_filter1d

    pad = int(np.ceil(4 * sigma)) if sigma > 0 else 0
    rect = np.r_[np.zeros(pad), np.ones(window), np.zeros(pad)]
    w = gaussian_filter1d(rect, sigma, mode="constant") if sigma > 0 else rect
    w = w[pad:pad + window]
    return w / w.max()


def upper_to_matrix(vec: np.ndarray, k: int) -> np.ndarray:
    """(..., k, k) symmetric matrices from upper triangles (..., k (k - 1) / 2), NaN diagonal."""
    vec = np.asarray(vec, float)
    iu = np.triu_indices(k, 1)
    out = np.full(vec.shape[:-1] + (k, k), np.nan)
    out[..., iu[0], iu[1]] = vec
    out[..., iu[1], iu[0]] = vec
    return out


def _glasso_z(data: np.ndarray, alpha: float) -> np.ndarray:
    """Fisher z of the graphical-lasso correlation of z-scored ``data`` (upper triangle)."""
    import warnings

    from sklearn.covariance import graphical_lasso
    from sklearn.exceptions import ConvergenceWarning

    k = data.shape[1]
    x = (data - data.mean(0)) / np.where(data.std(0) > 0, data.std(0), 1.0)
    emp = x.T @ x / len(x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cov = graphical_lasso(emp, alpha, max_iter=100, tol=1e-3)[0]
    except (FloatingPointError, ValueError):   # ill-conditioned window: the empirical correlation
        cov = emp
    d = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    r = cov / np.outer(d, d)
    return np.arctanh(np.clip(r[np.triu_indices(k, 1)], -1 + 1e-7, 1 - 1e-7))


def _cv_alpha(data: np.ndarray) -> float:
    """The graphical lasso penalty cross-validated on a subject's z-scored time courses."""
    import warnings

    from sklearn.covariance import GraphicalLassoCV
    from sklearn.exceptions import ConvergenceWarning

    x = (data - data.mean(0)) / np.where(data.std(0) > 0, data.std(0), 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return float(GraphicalLassoCV(alphas=6, cv=3, max_iter=100, tol=1e-3, assume_centered=True).fit(x).alpha_)
    except (FloatingPointError, ValueError):
        return 0.01


def window_fnc(runs: Sequence[np.ndarray], settings: DFNCSettings | None = None, *,
               names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One subject's windowed FNC.

    Parameters
    ----------
    runs : sequence of ndarray (n_volumes, k)
        The subject's post-processed runs.
    settings : DFNCSettings, optional
    names : sequence of str, optional
        How error messages name the runs.

    Returns
    -------
    features : ndarray (n_windows, k (k - 1) / 2)
        Fisher z upper triangles.
    run_index, start : ndarray (n_windows,) of int
    alpha : float
        The penalty used.

    Raises
    ------
    ValueError
        A run shorter than the window (the message names it).
    """
    s = settings or DFNCSettings()
    labels = list(names) if names is not None else [f"run {i + 1}" for i in range(len(runs))]
    for r, label in zip(runs, labels):
        if len(r) < s.window:
            raise ValueError(f"{label}: {len(r)} volumes, shorter than the dFNC window ({s.window} volumes); "
                             "give a shorter --window or leave the run out")
    alpha = float(s.alpha) if s.alpha is not None else _cv_alpha(np.concatenate(runs))
    taper = window_taper(int(s.window), float(s.sigma))[:, None]
    feats, run_index, start = [], [], []
    for i, r in enumerate(runs):
        for t in range(len(r) - s.window + 1):
            feats.append(_glasso_z(r[t:t + s.window] * taper, alpha))
            run_index.append(i)
            start.append(t)
    return np.asarray(feats), np.asarray(run_index, int), np.asarray(start, int), alpha


def _exemplars(features: np.ndarray, run_index: np.ndarray) -> np.ndarray:
    """Indices of the windows at a local maximum of the variance across pairs (per run)."""
    from scipy.signal import argrelextrema

    var = features.var(axis=1)
    keep = []
    for r in np.unique(run_index):
        idx = np.flatnonzero(run_index == r)
        peaks = argrelextrema(var[idx], np.greater)[0]
        keep.extend(idx[peaks] if len(peaks) else idx[[int(np.argmax(var[idx]))]])
    return np.asarray(keep, int)


def _cityblock_kmeans(x: np.ndarray, init: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations with L1 distances and median centroids: (centroids, labels, total distance)."""
    from scipy.spatial.distance import cdist

    c = init.copy()
    labels = None
    for _ in range(max_iter):
        new = np.argmin(cdist(x, c, "cityblock"), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            if np.any(labels == j):
                c[j] = np.median(x[labels == j], axis=0)
    d = cdist(x, c, "cityblock")
    return c, labels, float(d[np.arange(len(x)), labels].sum())


def _kmeans(x: np.ndarray, k: int, settings: DFNCSettings, init: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """(centroids, labels, within-cluster distance) by the settings' metric."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    k = min(k, len(x))
    if settings.metric == "euclidean":
        km = KMeans(k, init="k-means++" if init is None else init, n_init=settings.n_init if init is None else 1,
                    random_state=settings.random_state).fit(x)
        return km.cluster_centers_, km.labels_, float(km.inertia_)
    if init is not None:
        return _cityblock_kmeans(x, init)
    rng = np.random.RandomState(settings.random_state)
    best = None
    for _ in range(settings.n_init):
        start, _ = kmeans_plusplus(x, k, random_state=rng)
        found = _cityblock_kmeans(x, start)
        if best is None or found[2] < best[2]:
            best = found
    return best


def _elbow(distances: dict) -> int:
    """The k farthest below the chord joining the first and last points of the curve."""
    ks = np.array(sorted(distances), float)
    d = np.array([distances[int(k)] for k in ks])
    if len(ks) < 3:
        return int(ks[0])
    chord = d[0] + (d[-1] - d[0]) * (ks - ks[0]) / (ks[-1] - ks[0])
    return int(ks[int(np.argmax(chord - d))])


def cluster_states(features: np.ndarray, exemplars: np.ndarray, settings: DFNCSettings | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """k-means states of the windows: (centroids (n_states, n_pairs), labels (n_windows,),
    within-cluster distance per k tried on the exemplars)."""
    s = settings or DFNCSettings()
    ex = features[exemplars]
    tried: dict = {}
    if s.n_states is None:
        for k in range(2, min(s.max_states, len(ex)) + 1):
            tried[k] = _kmeans(ex, k, s)[2]
        n_states = _elbow(tried) if tried else 1
    else:
        n_states = int(s.n_states)
    start = _kmeans(ex, n_states, s)[0]
    centroids, labels, _ = _kmeans(features, len(start), s, init=start)
    return centroids, labels, tried


def _dwell_and_transitions(states: np.ndarray, run_index: np.ndarray, n_states: int) -> tuple[np.ndarray, int]:
    """(mean dwell time per state in windows, NaN when never visited; transitions within runs)."""
    spells: list[list[int]] = [[] for _ in range(n_states)]
    transitions = 0
    for r in np.unique(run_index):
        seq = states[run_index == r]
        change = np.flatnonzero(np.diff(seq)) + 1
        transitions += len(change)
        for part in np.split(seq, change):
            spells[int(part[0])].append(len(part))
    return np.array([np.mean(x) if x else np.nan for x in spells]), transitions


def dynamic_fnc(timecourses: Sequence[Any], subjects: Sequence[Any], tr: float | Sequence[float], *,
                settings: DFNCSettings | None = None, postprocess_settings: PostprocessSettings | None = None,
                names: Sequence[str] | None = None, kind: str = "model",
                run_names: Sequence[str] | None = None) -> DynamicFNC:
    """dFNC of a group of runs (module docstring), subjects one at a time.

    Parameters
    ----------
    timecourses : sequence of array-like (n_volumes, k)
    subjects : sequence of str
        The subject of each run.
    tr : float or sequence of float
        One TR or one per run (seconds), for the post-processing's filter.
    settings : DFNCSettings, optional
    postprocess_settings : PostprocessSettings, optional
    names : sequence of str, optional
        Component names.
    kind : str, default="model"
    run_names : sequence of str, optional
        How error messages name the runs.

    Returns
    -------
    DynamicFNC

    Raises
    ------
    ValueError
        A run shorter than the window, NaN, a missing TR (the message names the run).
    """
    s = settings or DFNCSettings()
    pp = postprocess_settings or PostprocessSettings()
    n = len(timecourses)
    trs = as_trs(tr, n)
    labels = list(run_names) if run_names is not None else [f"run {i + 1}" for i in range(n)]
    for t, label in zip(timecourses, labels):   # every run checked before any work
        if len(t) < s.window:
            raise ValueError(f"{label}: {len(t)} volumes, shorter than the dFNC window ({s.window} volumes); "
                             "give a shorter --window or leave the run out")
    distinct, groups = subject_order(subjects)
    feats, runs_of, starts, alphas, exemplars, offset = [], [], [], [], [], 0
    for idx in groups:
        clean = [postprocess(timecourses[i], trs[i], pp, name=labels[i]) for i in idx]
        f, r, st, a = window_fnc(clean, s, names=[labels[i] for i in idx])
        feats.append(f)
        runs_of.append(r)
        starts.append(st)
        alphas.append(a)
        exemplars.append(_exemplars(f, r) + offset)
        offset += len(f)
    features = np.concatenate(feats)
    centroids, labels_all, tried = cluster_states(features, np.concatenate(exemplars), s)
    n_states = len(centroids)
    k = int(round((1 + np.sqrt(1 + 8 * features.shape[1])) / 2))
    states, fraction, dwell, transitions, start = [], [], [], [], 0
    for f, r in zip(feats, runs_of):
        st = labels_all[start:start + len(f)]
        start += len(f)
        states.append(st)
        fraction.append(np.bincount(st, minlength=n_states) / len(st))
        d, tr_count = _dwell_and_transitions(st, r, n_states)
        dwell.append(d)
        transitions.append(tr_count)
    return DynamicFNC(kind=kind, names=list(names) if names is not None else [f"ic{i + 1:02d}" for i in range(k)],
                      subjects=distinct, centroids=upper_to_matrix(centroids, k), states=states, window_run=runs_of,
                      window_start=starts, fraction=np.asarray(fraction), dwell=np.asarray(dwell),
                      transitions=np.asarray(transitions), alpha=np.asarray(alphas), within_distance=tried,
                      settings=s, postprocess=pp)
