"""Does this data set need nonlinear ICA? A held-out test against the linear counterpart.

The nonlinear model (the iVAE, or the flow) and its *linear counterpart* -- the same
estimator with an affine decoder (:class:`~trends_ivae.estimators.ivae.IVAE`
``linear_decoder=True``) or a flow without spline transforms
(:class:`~trends_ivae.estimators.flow.IFlow` ``transforms=0``), i.e. linear ICA with the
same conditional prior p(z|u), the same reduction and the same u -- are fitted on some
subjects and scored on the others (cross-fitting over ``n_folds`` folds of subjects, so
that every subject is held out once). For each held-out subject the score is the mean
log-likelihood per volume (:meth:`SourceEstimator.score_samples`: exact for the flow, the
importance-weighted evidence bound for the VAE); the test statistic is the mean over
subjects of the nonlinear minus the linear score, with a Student-t interval across
subjects. The same two thresholds decide both ways: the interval must exclude zero
(the difference is real at the ``confidence`` level), and the mean difference must exceed
a margin of negligible differences (``negligible`` nats per volume and reduced dimension,
default 0.01: a likelihood ratio of about 1 % per dimension and volume; an evidence bound
gains that much from a flexible decoder absorbing the posterior approximation's gap even
on linear data):

- ``"helps"``: the interval lies above zero and the mean above the margin: the
  nonlinear model explains held-out subjects better;
- ``"linear better"``: the interval lies below zero and the mean below minus the
  margin: the linear counterpart explains held-out subjects better;
- ``"no evidence"``: otherwise (an interval across zero, or a real but negligible
  difference): the linear components are as good;
- ``"untestable"``: fewer than two subjects (or runs), or an encoder that needs u for
  held-out subjects whose u levels are new.

Levels of u that only held-out subjects have (their own sliding windows, their subject
label) have no fitted prior. Each model then scores those rows under the prior fitted to
them by moments ("fold-in"): for every new level, the mean and variance of the encoded
sources of its rows (posterior means plus posterior variance for the VAE; the sources
themselves for the flow: their maximum-likelihood Gaussian). Both models get the same
treatment, a handful of numbers per level, the decoder and encoder untouched.

This module works on arrays (the model layer's side of the data path); the image-level
entry point is :meth:`trends_ivae.GroupIVAE.test_nonlinearity`.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.utils import check_random_state

from ..estimators.aux_codes import IdentifiabilityWarning
from ..estimators.ivae import IVAE
from ..estimators.base import SourceEstimator
from ..estimators.flow import IFlow
from ..estimators.nn.priors import LookupPrior

logger = logging.getLogger(__name__)

__all__ = ["NonlinearityTest", "linear_counterpart", "held_out_test", "group_test", "verdict_of", "VERDICTS"]

#: the test's possible answers
VERDICTS = ("helps", "no evidence", "linear better", "untestable")


@dataclass
class NonlinearityTest:
    """The outcome of :func:`held_out_test`.

    Attributes
    ----------
    verdict : {"helps", "no evidence", "linear better", "untestable"}
    difference : float
        Mean over held-out groups of (nonlinear - linear) held-out log-likelihood per
        volume, in nats (NaN when untestable).
    ci_low, ci_high : float
        Its ``confidence`` Student-t interval across groups.
    confidence : float
    margin : float
        Differences within +-margin nats per volume count as negligible.
    nonlinear_score, linear_score : float
        Mean held-out log-likelihood per volume of each model (the units of the
        reduced data).
    group_differences : list of float
        The per-group differences (nats per volume), in the order of ``groups``.
    groups : list of str
        The held-out groups' labels.
    grouping : str
        What a group is ("subject" or "run").
    n_folds : int
    likelihood : str
        "exact" (flow) or "evidence bound, K draws" (VAE).
    estimator : str
        The nonlinear estimator's class name.
    reason : str
        Why the test could not be run (``verdict == "untestable"``), else "".
    """

    verdict: str
    difference: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    confidence: float = 0.95
    margin: float = 0.0
    nonlinear_score: float = float("nan")
    linear_score: float = float("nan")
    group_differences: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    grouping: str = "subject"
    n_folds: int = 0
    likelihood: str = ""
    estimator: str = ""
    reason: str = ""

    @property
    def helps(self) -> bool:
        """True when the nonlinear model explains held-out data better."""
        return self.verdict == "helps"

    def summary(self) -> str:
        """The result in plain words (one sentence)."""
        if self.verdict == "untestable":
            return f"the nonlinearity test could not be run: {self.reason}"
        n = len(self.group_differences)
        ci = (f"{100 * self.confidence:.0f}% CI {self.ci_low:+.3g} to {self.ci_high:+.3g}, "
              f"{n} held-out {self.grouping}s; differences within +-{self.margin:.2g} count as none")
        if self.verdict == "helps":
            return (f"the nonlinear model explains held-out {self.grouping}s better by "
                    f"{self.difference:.3g} nats per volume ({ci}) than linear ICA with the same prior")
        if self.verdict == "linear better":
            return (f"linear ICA with the same prior explains held-out {self.grouping}s better than the "
                    f"nonlinear model, by {-self.difference:.3g} nats per volume ({ci}); prefer the linear "
                    "counterpart's components")
        if self.ci_low > 0:
            return (f"no evidence that the nonlinear model helps here: it explains held-out "
                    f"{self.grouping}s better by only {self.difference:.3g} nats per volume ({ci}), a "
                    "negligible gain; the linear components are as good")
        if self.ci_high < 0:
            return (f"no evidence that the nonlinear model helps here: linear ICA with the same prior "
                    f"explains held-out {self.grouping}s better by only {-self.difference:.3g} nats per "
                    f"volume ({ci}), a negligible difference; the linear components are as good")
        return (f"no evidence that the nonlinear model helps here ({self.difference:+.3g} nats per "
                f"volume, {ci}); the linear components are as good")

    def to_dict(self) -> dict:
        """JSON-ready: every field, NaN as None, and the summary sentence."""
        out = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}
        out["group_differences"] = [float(v) for v in self.group_differences]
        out["summary"] = self.summary()
        return out


def verdict_of(difference: float, ci_low: float, ci_high: float, margin: float) -> str:
    """The test's answer from the mean difference (nonlinear - linear), its interval and the margin.

    The same two thresholds both ways: the interval must exclude zero, and the mean must
    lie beyond the margin of negligible differences on the same side.

    Parameters
    ----------
    difference : float
        Mean over held-out groups of (nonlinear - linear), nats per volume.
    ci_low, ci_high : float
        Its interval across groups.
    margin : float
        Differences within +-margin nats per volume are negligible (>= 0).

    Returns
    -------
    {"helps", "linear better", "no evidence"}
    """
    if ci_low > 0 and difference > margin:
        return "helps"
    if ci_high < 0 and difference < -margin:
        return "linear better"
    return "no evidence"


def linear_counterpart(estimator: SourceEstimator) -> SourceEstimator:
    """An unfitted copy of ``estimator`` with an affine decoder (VAE) or no splines (flow).

    Parameters
    ----------
    estimator : IVAE or IFlow

    Returns
    -------
    SourceEstimator
        Same parameters otherwise (prior, u coding, training schedule, seed).
    """
    est = clone(estimator)
    if isinstance(est, IFlow):
        return est.set_params(transforms=0)
    if isinstance(est, IVAE):
        if est.prior == "normal":
            raise ValueError("the vanilla VAE (prior='normal') has no identifiable linear counterpart to test")
        return est.set_params(linear_decoder=True)
    raise TypeError(f"no linear counterpart for {type(estimator).__name__}")


def _take(u: Any, idx: np.ndarray) -> Any:
    if hasattr(u, "iloc"):
        return u.iloc[idx]
    if hasattr(u, "take") and not isinstance(u, np.ndarray):
        return u.take(idx)
    return np.asarray(u)[idx]


def _new_level_keys(u_train: Any, u_test: Any) -> np.ndarray | None:
    """One key per held-out row from the u values the training rows lack; None when
    every held-out level was seen (or u is continuous)."""
    if getattr(u_train, "on_demand", False):   # an AuxVariable of factors: their labels
        u_train, u_test = u_train.frame(), u_test.frame()
    if hasattr(u_train, "columns"):
        cols = [c for c in u_train.columns if set(map(str, u_test[c])) - set(map(str, u_train[c]))]
        if not cols:
            return None
        return u_test[cols].astype(str).agg("|".join, axis=1).to_numpy()
    a, b = np.asarray(u_train), np.asarray(u_test)
    if a.ndim == 2 and (a.shape[1] > 1 or np.issubdtype(a.dtype, np.floating)):
        return None                      # continuous u: no levels
    b = b.ravel().astype(str)
    return b if set(b) - set(a.ravel().astype(str)) else None


@torch.no_grad()
def _fold_in_scores(est: SourceEstimator, X: np.ndarray, keys: np.ndarray, n_importance: int) -> np.ndarray:
    """Held-out log-likelihood per row with a prior fitted by moments to each key's rows."""
    Xt = est._to_device(est._check_X(X))
    model = est.model_
    model.eval()
    zeros = torch.zeros((Xt.shape[0], est._u_width()), device=Xt.device)
    mu, logvar = model.encode(Xt, zeros)
    post_var = torch.zeros_like(mu) if logvar is None else torch.exp(logvar)
    _, inv = np.unique(keys, return_inverse=True)
    idx = torch.as_tensor(inv, device=Xt.device)
    n_levels = int(inv.max()) + 1
    old = model.prior
    prior = LookupPrior(mu.shape[1], n_levels, old.family, learn_mean=True).to(Xt.device)
    count = torch.zeros(n_levels, device=Xt.device).index_add_(0, idx, torch.ones_like(mu[:, 0]))[:, None]
    mean = torch.zeros(n_levels, mu.shape[1], device=Xt.device).index_add_(0, idx, mu) / count
    if getattr(old, "learn_mean", True) is False:
        mean = torch.zeros_like(mean)
    sq = torch.zeros_like(mean).index_add_(0, idx, (mu - mean[idx]) ** 2 + post_var) / count
    var = sq.clamp_min(1e-6)
    prior.loc_table.copy_(mean)
    prior.log_scale_table.copy_(0.5 * torch.log(var / 2 if old.family == "laplace" else var))
    model.prior = prior
    try:
        return est._score_rows(Xt, idx[:, None].float(), n_importance)
    finally:
        model.prior = old


def _pass_on(caught: list, said: dict) -> None:
    """Re-issue the warnings one of the test's fits gave; an IdentifiabilityWarning only
    once per test (``said["identifiability"]``: given already, or not wanted)."""
    for w in caught:
        if issubclass(w.category, IdentifiabilityWarning):
            if said["identifiability"]:
                continue
            said["identifiability"] = True
            warnings.warn(f"in the nonlinearity test's fits: {w.message}", IdentifiabilityWarning, stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def held_out_test(estimator: SourceEstimator, X: Any, u: Any, groups: Any, *, n_folds: int = 2,
                  confidence: float = 0.95, n_importance: int = 8, negligible: float = 0.01,
                  grouping: str = "subject", random_state: Any = None,
                  warn_identifiability: bool = True) -> NonlinearityTest:
    """Cross-fitted held-out comparison of ``estimator`` with its linear counterpart.

    Parameters
    ----------
    estimator : IVAE or IFlow
        Unfitted, configured as wanted (it is cloned; one restart is usual: both models
        start at the same linear ICA solution of the training rows).
    X : array-like of shape (n_samples, n_features)
    u : array-like or DataFrame
        As for ``estimator.fit``.
    groups : array-like of shape (n_samples,)
        Subject (or run) of each row; whole groups are held out.
    n_folds : int, default=2
        Folds of groups; every group is held out once. At most the number of groups.
    confidence : float, default=0.95
        Level of the interval across held-out groups.
    n_importance : int, default=8
        Draws of the VAE's importance-weighted bound (ignored by the flow).
    negligible : float, default=0.01
        Differences within ``negligible * n_features`` nats per volume are negligible:
        "helps" needs the interval above zero and the mean above that margin, "linear
        better" the interval below zero and the mean below minus the margin
        (:func:`verdict_of`).
    grouping : str, default="subject"
        What a group is, for the summary.
    random_state : int, RandomState or None
        Assigns groups to folds.
    warn_identifiability : bool, default=True
        Pass on the :class:`~trends_ivae.estimators.aux_codes.IdentifiabilityWarning`
        of the test's fits, once (the first; the ``2 n_folds`` fits on subsets of the
        same u would each give it); False: keep them quiet (the caller's own fit on all
        rows has said it already).

    Notes
    -----
    u levels that only held-out rows have get a prior fitted to those rows by moments
    (see the module docstring); with an encoder that takes u they cannot be scored.

    Returns
    -------
    NonlinearityTest
    """
    X = np.asarray(X)
    groups = np.asarray(groups)
    if groups.shape[0] != X.shape[0]:
        raise ValueError(f"groups has {groups.shape[0]} rows, X has {X.shape[0]}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    labels = np.unique(groups)
    name = type(estimator).__name__
    likelihood = "exact" if isinstance(estimator, IFlow) else f"evidence bound, {int(n_importance)} draws"
    if negligible < 0:
        raise ValueError(f"negligible must be >= 0, got {negligible}")
    margin = float(negligible) * (X.shape[1] if X.ndim == 2 else 1)
    base = dict(confidence=confidence, margin=margin, grouping=grouping, likelihood=likelihood, estimator=name)
    if labels.size < 2:
        return NonlinearityTest("untestable", reason=f"needs at least two {grouping}s, got {labels.size}", **base)
    k = int(min(max(2, n_folds), labels.size))
    rng = check_random_state(random_state)
    folds = np.array_split(rng.permutation(labels), k)
    said = {"identifiability": not warn_identifiability}
    diffs: dict[Any, float] = {}
    nl_scores: dict[Any, float] = {}
    lin_scores: dict[Any, float] = {}
    for i, held in enumerate(folds):
        test = np.isin(groups, held)
        tr, te = np.flatnonzero(~test), np.flatnonzero(test)
        u_tr, u_te = _take(u, tr), _take(u, te)
        keys = _new_level_keys(u_tr, u_te)
        if keys is not None and getattr(estimator, "encoder_uses_aux", False) and estimator.prior != "normal":
            return NonlinearityTest("untestable", n_folds=k, reason=f"held-out {grouping}s have u levels "
                                    f"the training {grouping}s lack, and the encoder q(z|x,u) needs them "
                                    "(fit with encoder_uses_aux=False)", **base)
        logger.info("nonlinearity test, fold %d/%d: fitting the nonlinear model and its linear "
                    "counterpart on %d rows, scoring %d held-out rows", i + 1, k, tr.size, te.size)
        scores = []
        for model in (clone(estimator), linear_counterpart(estimator)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", IdentifiabilityWarning)
                model.fit(X[tr], u_tr)
            _pass_on(caught, said)
            scores.append(model.score_samples(X[te], u_te, n_importance=n_importance) if keys is None
                          else _fold_in_scores(model, X[te], keys, n_importance))
        for g in held:
            rows = groups[te] == g
            nl_scores[g] = float(scores[0][rows].mean())
            lin_scores[g] = float(scores[1][rows].mean())
            diffs[g] = nl_scores[g] - lin_scores[g]
    order = [g for g in labels if g in diffs]
    d = np.array([diffs[g] for g in order])
    mean = float(d.mean())
    half = (float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
            if d.size > 1 else float("inf"))
    lo, hi = mean - half, mean + half
    verdict = verdict_of(mean, lo, hi, margin)
    return NonlinearityTest(verdict, difference=mean, ci_low=lo, ci_high=hi,
                            nonlinear_score=float(np.mean([nl_scores[g] for g in order])),
                            linear_score=float(np.mean([lin_scores[g] for g in order])),
                            group_differences=[float(v) for v in d], groups=[str(g) for g in order],
                            n_folds=k, **base)


def group_test(group: Any, prepared: Any, *, n_folds: int = 2, confidence: float = 0.95,
               n_importance: int = 8, negligible: float = 0.01) -> NonlinearityTest:
    """:func:`held_out_test` of a :class:`~trends_ivae.GroupIVAE`'s estimator on prepared data.

    The estimator is the one ``group`` fits (:meth:`~trends_ivae.GroupIVAE.build_estimator`), with one restart
    trained to the end; the groups are the subjects, or the runs when there is one
    subject. The vanilla VAE (``prior="normal"``) is untestable. When ``group`` is
    fitted, its fit has given any :class:`IdentifiabilityWarning` already: the test's
    fits keep it quiet.
    """
    by_subject = prepared.n_subjects >= 2
    grouping = "subject" if by_subject else "run"
    groups = (np.asarray(prepared.subjects, dtype=object)[prepared.subject] if by_subject
              else np.asarray(prepared.run).astype(str))
    n_groups = len(np.unique(groups))
    n_train = int(round(prepared.n_samples * (1 - 1 / max(2, min(n_folds, max(n_groups, 2))))))
    est = group.build_estimator(max(n_train, 2), n_features=prepared.n_dims).set_params(n_init=1)
    if "init_epochs" in est.get_params():
        est.set_params(init_epochs=None)
    if group.prior == "normal":
        result = NonlinearityTest("untestable", grouping=grouping, estimator=type(est).__name__,
                                  reason="the vanilla VAE (prior='normal') has no identifiable linear counterpart")
    else:
        result = held_out_test(est, prepared.x, group.model_u(prepared), groups, n_folds=n_folds,
                               confidence=confidence, n_importance=n_importance, negligible=negligible,
                               grouping=grouping, random_state=group.random_state,
                               warn_identifiability=not hasattr(group, "estimator_"))
    logger.info("nonlinearity test: %s", result.summary())
    return result
