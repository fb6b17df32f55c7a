"""fMRI generated from a fitted model: ``z ~ p(z|u)``, decoded, mapped back to voxels.

The iVAE learns the forward model as well as the sources, so a fitted
:class:`~trends_ivae.GroupIVAE` can synthesise runs: for each volume's u (a task
condition, a window, a subject), draw the sources from the conditional prior, decode
them to the reduced space (with the model's observation noise), map them through the
group basis to voxels, and add the residual noise of the voxels outside the basis (white,
orthogonal to the basis, at the variance the basis leaves unexplained in the cleaned
data). The result is on the scale of the *cleaned* data the model was fitted to.

u of a synthetic run is built from a fitted run (``like_run``): its u row by row, then
with the task factor replaced by an events file's labels (or one ``condition`` for every
volume) and the subject factor by ``subject``. Window levels exist only for fitted runs'
windows, so a synthetic run reuses the reference run's windows in order (cycled when it
is longer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .spatial import check_mode
from ..data.auxiliary import read_events, task_labels
from ..export.derivatives import unmask
from ..export.space import with_input_space

logger = logging.getLogger(__name__)

__all__ = ["SampledRun", "sample_run", "run_u", "run_seed"]

#: factor names whose level may be set by sample_run's arguments
TASK, SUBJECT, WINDOW = "task", "subject", "window"


@dataclass
class SampledRun:
    """A synthetic run.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        4D, (x, y, z, n_volumes), float32, on the mask's grid; voxels outside the mask 0.
    u : pandas.DataFrame
        The u of every volume, one column per factor (labels).
    sources : ndarray of shape (n_volumes, n_components)
        The drawn sources, in the fitted model's component order and signs.
    events : pandas.DataFrame or None
        BIDS events of the run (onset, duration, trial_type), when u has a task factor.
    tr : float
    sidecar : dict
        BIDS-style JSON sidecar marking the run as synthetic and naming the model.
    """

    img: nib.Nifti1Image
    u: pd.DataFrame
    sources: np.ndarray
    events: pd.DataFrame | None
    tr: float
    sidecar: dict


def _reference_u(model, like_run: int) -> pd.DataFrame:
    """The u (labels, one column per factor) of fitted run ``like_run``."""
    p = model.prepared_
    if not 0 <= like_run < len(p.runs):
        raise ValueError(f"like_run must be in 0..{len(p.runs) - 1}, got {like_run}")
    u = model.model_u(p)
    rows = np.flatnonzero(np.asarray(p.run) == like_run)
    if u.on_demand:   # factors: their labels, one column each
        return u.take(rows).frame()
    if p.u_kind != "discrete":
        raise ValueError("sampling needs a discrete u (task, window, subject or run factors); this model "
                         "was fitted with a continuous u")
    names = np.asarray(p.u_names, dtype=object)
    factors = (p.aux or {}).get("factors") or [{"name": (p.aux or {}).get("spec", "u")}]
    if len(factors) != 1:
        raise ValueError("sampling needs u from factors combined by 'concat' (one label per factor); this "
                         "model's u is their product")
    return pd.DataFrame({str(factors[0]["name"]): names[np.asarray(u)[rows]]})


def _events_frame(labels: np.ndarray, tr: float) -> pd.DataFrame:
    """BIDS events (one per block of equal non-rest labels) from per-volume labels."""
    rows, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            if labels[start] != "rest":
                rows.append({"onset": start * tr, "duration": (t - start) * tr, "trial_type": labels[start]})
            start = t
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def run_u(model, *, events: Any = None, n_volumes: int | None = None, condition: str | None = None,
          subject: str | None = None, like_run: int = 0) -> tuple[pd.DataFrame, pd.DataFrame | None, float]:
    """u of a synthetic run, built from fitted run ``like_run``.

    Parameters
    ----------
    model : GroupIVAE
        Fitted (or loaded with :meth:`GroupIVAE.load`).
    events : path or DataFrame, optional
        BIDS events: the task factor's label of each volume (as during fit: the same
        HRF delay and minimum event duration).
    n_volumes : int, optional
        Length of the run; default the reference run's.
    condition : str, optional
        One task label for every volume (instead of ``events``).
    subject : str, optional
        Subject label for the subject factor (with or without ``sub-``).
    like_run : int, default=0
        The fitted run whose u (windows, subject, task) is the starting point.

    Returns
    -------
    u : DataFrame
        Labels, one column per factor.
    events : DataFrame or None
        The run's events (given, or made from ``condition``) when u has a task factor.
    tr : float
    """
    p = model.prepared_
    ref = _reference_u(model, like_run)
    tr = float(p.runs[like_run].get("tr") or p.tr)
    n = len(ref) if n_volumes is None else int(n_volumes)
    if n < 1:
        raise ValueError(f"n_volumes must be >= 1, got {n_volumes}")
    u = ref.iloc[np.arange(n) % len(ref)].reset_index(drop=True)
    if events is not None and condition is not None:
        raise ValueError("give events or condition, not both")
    out_events = None
    if events is not None or condition is not None:
        if TASK not in u.columns:
            raise ValueError(f"this model's u ({'+'.join(u.columns)}) has no task factor: events and "
                             "condition cannot be used")
        known = [str(v) for v in (u[TASK].cat.categories if hasattr(u[TASK], "cat") else u[TASK].unique())]
        if condition is not None:
            labels = np.full(n, str(condition), dtype=object)
        else:
            name = str(events) if not isinstance(events, pd.DataFrame) else "<events>"
            out_events = read_events(events, name=name)
            labels = task_labels(out_events, n, tr, hrf_delay=float((p.aux or {}).get("hrf_delay") or 0.0),
                                 min_duration=(p.aux or {}).get("min_event_duration"), name=name)
        unknown = sorted(set(map(str, labels)) - set(known))
        if unknown:
            raise ValueError(f"task labels {unknown[:5]} were not seen during fit (known: {known})")
        u[TASK] = pd.Categorical(labels, categories=u[TASK].cat.categories) if hasattr(u[TASK], "cat") else labels
        if events is None:
            out_events = _events_frame(np.asarray(labels, dtype=object), tr)
    elif TASK in u.columns:
        out_events = _events_frame(np.asarray(u[TASK].astype(str), dtype=object), tr)
    if subject is not None:
        if SUBJECT not in u.columns:
            raise ValueError(f"this model's u ({'+'.join(u.columns)}) has no subject factor")
        label = str(subject).removeprefix("sub-")
        cats = list(map(str, u[SUBJECT].cat.categories)) if hasattr(u[SUBJECT], "cat") else list(map(str, p.subjects))
        if label not in cats:
            raise ValueError(f"subject {label!r} was not in the fit (known: {cats[:10]})")
        u[SUBJECT] = pd.Categorical([label] * n, categories=u[SUBJECT].cat.categories) \
            if hasattr(u[SUBJECT], "cat") else label
    return u, out_events, tr


def _model_u(model, u: pd.DataFrame) -> Any:
    """``u`` in the form the fitted estimator takes."""
    p = model.prepared_
    if model.model_u(p).on_demand:   # a model of the factors takes their labels
        return u
    lookup = {str(name): k for k, name in enumerate(p.u_names)}
    return np.array([lookup[str(v)] for v in u.iloc[:, 0]], dtype=np.int64)


def _residual_variance(prepared) -> float:
    """Per voxel and volume variance of the cleaned data outside the basis (0 if unknown)."""
    total = (prepared.parameters or {}).get("total_sum_of_squares")
    if not total:
        return 0.0
    x_units = np.asarray(prepared.x, dtype=np.float64) * np.asarray(prepared.scale, dtype=np.float64)
    captured = float(np.sum(x_units ** 2))
    n_cells = prepared.n_samples * prepared.basis.shape[0]
    return max(0.0, (float(total) - captured) / n_cells)


def run_seed(random_state: Any) -> int:
    """The seed a synthetic run is drawn with: an int as given (0 to 2**32 - 1), else one
    drawn from ``random_state`` (a RandomState, or None for a fresh one)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if not 0 <= int(random_state) < 2**32:
            raise ValueError(f"random_state must be in 0..{2**32 - 1}, got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def sample_run(model, *, events: Any = None, n_volumes: int | None = None, condition: str | None = None,
               subject: str | None = None, like_run: int = 0, noise: bool = True,
               random_state: Any = None, space_img: Any = None) -> SampledRun:
    """Generate one synthetic run from a fitted :class:`~trends_ivae.GroupIVAE`.

    Parameters
    ----------
    model : GroupIVAE
    events, n_volumes, condition, subject, like_run
        The run's u (see :func:`run_u`).
    noise : bool, default=True
        Add the model's observation noise and the residual noise outside the basis;
        False gives the decoded means ``f(z)`` (z still drawn from the prior).
    random_state : int, RandomState or None
        An int (0 to 2**32 - 1) is the seed itself: it is recorded as the sidecar's
        ``RandomSeed``, and the same int gives the same run. A RandomState or None draws a
        seed, which is recorded and reproduces the run when given back as an int.
    space_img : image or path, optional
        An image on the mask's grid whose qform/sform codes the run keeps (the fit's maps);
        default the first input run, when readable
        (:func:`~trends_ivae.export.space.with_input_space`).

    Returns
    -------
    SampledRun
    """
    from .._version import __version__

    check_is_fitted(model, "estimator_", msg="This %(name)s is not fitted: fit it or GroupIVAE.load a fit "
                                             "output first.")
    check_mode(model, "sampling a run")
    p = model.prepared_
    u, events_out, tr = run_u(model, events=events, n_volumes=n_volumes, condition=condition,
                              subject=subject, like_run=like_run)
    seed = run_seed(random_state)
    X, Z = model.estimator_.sample(_model_u(model, u), random_state=seed)
    if not noise:
        X = model.estimator_.inverse_transform(Z)
    data = p.reconstruct(X)                                             # (n_volumes, n_voxels)
    resid_var = _residual_variance(p)
    if noise and resid_var > 0:
        basis = np.asarray(p.basis, dtype=np.float64)
        e = np.random.default_rng(seed).normal(scale=np.sqrt(resid_var), size=data.shape)
        data = data + (e - (e @ basis) @ basis.T).astype(np.float32)    # orthogonal to the basis
    mask = with_input_space(p.mask_img(), space_img, [{"path": r.get("file")} for r in p.runs])
    img = unmask(data, mask, descrip="trends_ivae synthetic run")
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr
    sidecar = {"Synthetic": True, "RepetitionTime": tr, "TaskName": "synthetic",
               "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__,
                                "Description": "sampled from a fitted model: z ~ p(z|u), x = f(z) + noise, "
                                               "mapped through the group basis"}],
               "Model": {"Estimator": type(model.estimator_).__name__, "NComponents": int(model.estimator_.n_components),
                         "Aux": (p.aux or {}).get("spec"), "ReferenceRun": p.runs[like_run].get("file")},
               "Noise": bool(noise), "ResidualVoxelVariance": resid_var, "RandomSeed": seed,
               "Units": "cleaned data (the scale the model was fitted on)"}
    logger.info("sampled %d volumes from %s", len(u), type(model.estimator_).__name__)
    return SampledRun(img=img, u=u, sources=np.asarray(Z, np.float32), events=events_out, tr=tr, sidecar=sidecar)
