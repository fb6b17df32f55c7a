"""Runs given to a :class:`~trends_ivae.GroupIVAE`: inputs to run specs, new runs reduced as in the fit.

:func:`run_specs` turns what ``GroupIVAE.fit``, ``transform`` and ``score`` accept (images
or paths, with events and confounds, or run specs) into
:class:`~trends_ivae.data.bids.RunSpec` objects. :func:`reduce_new_runs` cleans new runs
and projects them on the fitted basis as the fit's record says they were
(:func:`~trends_ivae.reduction.prepare.reduce_runs`: the fit's TR, cleaning, confound
columns and left-out volumes), with their u in the layout of the fit's u (:func:`~trends_ivae.data.auxiliary.aux_for_runs`; its levels must have been
seen in the fit).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..aux_variable import AuxVariable
from ..data.auxiliary import aux_for_runs
from ..data.bids import RunSpec, runs_from_files
from ..reduction.prepare import reduce_runs

__all__ = ["run_specs", "reduce_new_runs"]


def _listify(value: Any) -> list | None:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run_specs(imgs: Any, events: Any = None, confounds: Any = None,
              subjects: Sequence[str] | None = None) -> list[RunSpec]:
    """Run specs of ``imgs`` (returned as they are when they are run specs already).

    Parameters
    ----------
    imgs : path, image, or list of them; or a list of RunSpec
    events, confounds : path, DataFrame or list of them, optional
        One per run.
    subjects : list of str, optional
        Subject label of each run (default: from ``sub-`` in the file names).

    Returns
    -------
    list of RunSpec
    """
    if isinstance(imgs, (list, tuple)) and imgs and all(isinstance(r, RunSpec) for r in imgs):
        return list(imgs)
    if not isinstance(imgs, (list, tuple)):
        imgs = [imgs]
    return runs_from_files(list(imgs), events=_listify(events), confounds=_listify(confounds),
                           subjects=_listify(subjects))


def reduce_new_runs(model: Any, imgs: Any, events: Any = None, confounds: Any = None, *,
                    with_u: bool = True, tr: float | None = None
                    ) -> tuple[list[np.ndarray], list[AuxVariable | None]]:
    """New runs cleaned and reduced as in ``model``'s fit, and their u.

    Parameters
    ----------
    model : GroupIVAE
        Fitted (its ``prepared_`` record and u options are used).
    imgs, events, confounds
        As for :func:`run_specs`.
    with_u : bool, default=True
        Build u (needs each run's events when u has a task factor); False: None per run.
    tr : float, optional
        The runs' TR, when a file lacks one or its own is wrong (default: the fit's TR
        override, else each run's sidecar or header); a TR other than the fit's is
        refused (:func:`~trends_ivae.reduction.prepare.new_run_trs`).

    Returns
    -------
    xs : list of ndarray (n_kept, n_dims)
        The kept volumes of each run (those the fit would keep: ``drop_initial``,
        non-steady-state volumes, a denoising strategy's censoring).
    us : list of AuxVariable or None
        u of the same volumes.
    """
    runs = run_specs(imgs, events, confounds)
    new = reduce_runs(runs, model.prepared_, tr=tr)
    if not with_u:
        return new.xs, [None] * len(new.xs)
    us = aux_for_runs(model.prepared_, runs, [k.size for k in new.keeps], tr=new.trs[0] if new.trs else None,
                      hrf_delay=model.hrf_delay, min_event_duration=model.min_event_duration,
                      combine=model.aux_combine)
    return new.xs, [u if k.all() else u.take(k) for u, k in zip(us, new.keeps)]
