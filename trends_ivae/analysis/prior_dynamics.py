"""The model's own dynamics: the conditional prior p(z|u) over time, per run.

What no group-ICA tool has: the fitted iVAE's prior gives, for every level of u (a
window, a task block, a subject), each source's mean and variance. Aligned to the
volumes (each volume's u), they are a model-based dynamic amplitude per component that
needs no window choice. The numbers come from ``model/prior.npz`` (written by
``trends-ivae fit``: ``codes`` per volume, ``mean`` and ``var`` per distinct u, in the
components' order and signs) or, for a fitted model in memory, from its estimator's
``prior_params`` (called by the workflow; this module needs no torch).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["PriorDynamics", "PRIOR_DEFINITION", "prior_dynamics"]

#: what the files hold (their sidecar's Description)
PRIOR_DEFINITION = ("the fitted model's conditional prior p(z|u) at each volume: for every component the mean "
                    "(<name>_mean) and the variance (<name>_var) of its prior given the volume's auxiliary "
                    "variable u (its window, task block, subject...), in the units and signs of the component's "
                    "time course; a model-based dynamic amplitude that needs no window choice")


@dataclass
class PriorDynamics:
    """p(z|u)'s mean and variance per volume, per run.

    Attributes
    ----------
    names : list of str
        Component names.
    runs : list of str
        Each run's path stem relative to the analysis folder (``sub-01/func/sub-01_task-x``).
    mean, var : list of ndarray (n_volumes, k)
        Per run.
    trs : list of float or None
        Per run.
    u_spec : str or None
        The fit's u (``model/config.json``), for the sidecar.
    """

    names: list
    runs: list
    mean: list
    var: list
    trs: list
    u_spec: str | None = None

    def write(self, root: str | Path) -> list[Path]:
        """``<run>_desc-prior_timeseries.tsv`` (+ ``.json``) under ``root``; the files written."""
        out = []
        cols = [f"{n}_{w}" for n in self.names for w in ("mean", "var")]
        for run, m, v, tr in zip(self.runs, self.mean, self.var, self.trs):
            path = Path(root) / f"{run}_desc-prior_timeseries.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = np.stack([m, v], axis=2).reshape(len(m), -1)
            pd.DataFrame(data, columns=cols).to_csv(path, sep="\t", index=False, float_format="%.6g")
            side = {"Columns": cols, "Description": PRIOR_DEFINITION, "AuxiliaryVariable": self.u_spec}
            if tr:
                side.update(RepetitionTime=float(tr), SamplingFrequency=1.0 / float(tr))
            path.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
            out += [path, path.with_suffix(".json")]
        return out


def prior_dynamics(codes: np.ndarray, mean: np.ndarray, var: np.ndarray, run_of_volume: np.ndarray, *,
                   runs: Sequence[str], names: Sequence[str], trs: Sequence[float | None],
                   u_spec: str | None = None) -> PriorDynamics:
    """The prior per volume, split into runs.

    Parameters
    ----------
    codes : ndarray (n_volumes_total,) of int
        The distinct u of every volume (rows of ``mean`` and ``var``).
    mean, var : ndarray (n_distinct, k)
        p(z|u)'s mean and variance per distinct u.
    run_of_volume : ndarray (n_volumes_total,) of int
        The run of each volume (index into ``runs``).
    runs : sequence of str
        Each run's path stem (see :class:`PriorDynamics`).
    names : sequence of str
        Component names (``k`` of them).
    trs : sequence of float or None
        Per run.
    u_spec : str, optional

    Returns
    -------
    PriorDynamics

    Raises
    ------
    ValueError
        Lengths that do not agree (the message says which).
    """
    codes = np.asarray(codes).reshape(-1)
    run_of_volume = np.asarray(run_of_volume).reshape(-1)
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    if len(codes) != len(run_of_volume):
        raise ValueError(f"model/prior.npz has {len(codes)} volumes, the run table {len(run_of_volume)}")
    if mean.shape != var.shape or mean.shape[1] < len(names) or (len(codes) and codes.max() >= len(mean)):
        raise ValueError(f"prior mean {mean.shape} and variance {var.shape} do not fit {len(names)} components "
                         f"and codes up to {codes.max() if len(codes) else 0}")
    k = len(names)
    per_mean = [mean[codes[run_of_volume == i], :k] for i in range(len(runs))]
    per_var = [var[codes[run_of_volume == i], :k] for i in range(len(runs))]
    return PriorDynamics(names=list(names), runs=list(runs), mean=per_mean, var=per_var, trs=list(trs),
                         u_spec=u_spec)
