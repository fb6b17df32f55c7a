"""The model order: how many components the data support (``--n-components auto``).

Two families of estimate, arrays only (no torch):

- **Minka's Laplace approximation** to the Bayesian evidence of probabilistic PCA
  (T. P. Minka, "Automatic choice of dimensionality for PCA", NIPS 13, 2000; MELODIC's
  ``-d 0``, scikit-learn's ``PCA(n_components="mle")``) on the eigenspectrum of the
  group's MIGP matrix, counting every voxel as a sample (:func:`laplace_evidence`);
- **MDL and AIC after i.i.d. subsampling** (Li, Adali & Calhoun, "Estimating the
  number of independent components for fMRI data", Hum Brain Mapp 28:1251, 2007; GIFT's
  estimate): the voxel grid is subsampled until the noise is white, and the information
  criteria are computed on the subsampled voxels (:mod:`trends_ivae.reduction.order_iid`).

:func:`estimate_order` applies one of them to an eigenspectrum and returns an
:class:`OrderEstimate` to print and record; :func:`order_from_parameters` does it from
what the prepare stage recorded (``parameters["spectrum"]``). Spatial ICA, as MELODIC
and GIFT do it: the samples are voxels and the dimensions time points (the rows of the
MIGP matrix), so the eigenvalues are those of the (rows x rows) covariance. Minka's
evidence assumes independent voxels; spatially smooth data (and ``--smoothing-fwhm``)
make neighbours dependent, and it then finds too many components, which is why
:data:`DEFAULT_METHOD` is the subsampled MDL (chosen on simulations: see
``benchmarks/model_order.py`` and ``docs/prepare.md``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import gammaln

__all__ = ["OrderEstimate", "estimate_order", "laplace_evidence", "order_from_parameters", "METHODS",
           "DEFAULT_METHOD", "order_cap", "volumes_per_subject", "check_subject_volumes"]

#: the estimators :func:`estimate_order` knows
METHODS = ("laplace", "mdl", "aic")
#: the estimate ``--n-components auto`` and ``--n-dims auto`` use when the prepared data
#: hold the subsampled spectrum (else ``"laplace"``)
DEFAULT_METHOD = "mdl"


@dataclass
class OrderEstimate:
    """What :func:`estimate_order` chose, and from what.

    Attributes
    ----------
    n_components : int
        The chosen order.
    method : str
        ``"laplace"``: Minka's (2000) Laplace approximation, as MELODIC's ``-d 0``;
        ``"mdl"``, ``"aic"``: the information criterion after i.i.d. subsampling (Li et
        al. 2007, as GIFT).
    n_samples : int
        The samples the estimate counted (voxels; after subsampling for MDL and AIC).
    n_dims : int
        Length of the eigenspectrum used (the dimensions of the data's range).
    max_order : int or None
        The cap that was applied to the choice, if any.
    capped : bool
        True when the evidence peaked above ``max_order`` and the cap was taken.
    n_null : int
        Eigenvalues left out as the data's null space (numerically zero: the
        dimensions that cleaning removed).
    step : int
        Grid step of the i.i.d. subsampling (1: every voxel).
    cap_reason : str
        What sets ``max_order`` (e.g. "50 volumes in the smallest subject").
    estimated : int or None
        The order the criterion chose before the cap.
    """

    n_components: int
    method: str
    n_samples: int
    n_dims: int
    max_order: int | None = None
    capped: bool = False
    n_null: int = 0
    step: int = 1
    cap_reason: str = ""
    estimated: int | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "reference": REFERENCES[self.method]}

    @classmethod
    def from_dict(cls, d: dict) -> "OrderEstimate":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        """One line for the terminal."""
        of = f"{self.n_samples} voxels" if self.step == 1 else \
            f"{self.n_samples} voxels (one in {self.step} along each axis)"
        text = f"{self.n_components} component(s) by {NAMES[self.method]} on the {self.n_dims}-value eigenspectrum of {of}"
        if self.capped:
            text += f"; the estimate was {self.estimated}, capped at {self.max_order}"
        elif self.max_order is not None:
            text += f"; cap {self.max_order}"
        if self.max_order is not None and self.cap_reason:
            text += f" ({self.cap_reason})"
        return text


_LI = "Li, Y.-O., Adali, T., Calhoun, V. D. (2007). Estimating the number of independent components for fMRI data. Hum Brain Mapp 28:1251-66."
NAMES = {"laplace": "Minka's Laplace approximation (as MELODIC -d 0)",
         "mdl": "MDL after i.i.d. subsampling (Li et al. 2007, as GIFT)",
         "aic": "AIC after i.i.d. subsampling (Li et al. 2007, as GIFT)"}
REFERENCES = {"laplace": "Minka, T. P. (2000). Automatic choice of dimensionality for PCA. NIPS 13.",
              "mdl": _LI, "aic": _LI}


def laplace_evidence(eigenvalues: np.ndarray, n_samples: int) -> np.ndarray:
    """Log evidence of probabilistic PCA of order ``k`` for ``k = 1 ... D-1`` (Minka 2000).

    Parameters
    ----------
    eigenvalues : ndarray, shape (D,)
        Eigenvalues of the sample covariance, in any order (sorted here).
    n_samples : int
        Number of samples N behind the covariance.

    Returns
    -------
    ndarray, shape (D - 1,)
        Entry ``k - 1`` is the log evidence of order ``k``; ``-inf`` where the
        eigenvalue ``k`` vanishes (the data have lower rank).
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    d = lam.size
    if d < 2:
        raise ValueError(f"the eigenspectrum needs at least 2 values, got {d}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("the eigenspectrum has non-finite values")
    n = float(n_samples)
    if n < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    eps = 1e-15
    lam = np.clip(lam, 0.0, None)
    out = np.full(d - 1, -np.inf)
    i = np.arange(1, d + 1, dtype=np.float64)
    # log of the uniform prior on the Stiefel manifold, cumulated over the first k directions
    pu_terms = gammaln((d - i + 1) / 2.0) - np.log(np.pi) * (d - i + 1) / 2.0
    pu_cum = np.cumsum(pu_terms)
    log_lam = np.log(np.maximum(lam, eps))
    tail_sum = np.cumsum(lam[::-1])[::-1]            # tail_sum[k] = sum(lam[k:])
    for k in range(1, d):
        if lam[k - 1] < eps:
            break
        pu = -k * np.log(2.0) + pu_cum[k - 1]
        pl = -n / 2.0 * log_lam[:k].sum()
        v = max(eps, tail_sum[k] / (d - k))
        pv = -np.log(v) * n * (d - k) / 2.0
        m = d * k - k * (k + 1) / 2.0
        pp = np.log(2.0 * np.pi) * (m + k) / 2.0
        hat = np.concatenate([lam[:k], np.full(d - k, v)])
        pa = 0.0
        for a in range(k):
            j = np.arange(a + 1, d)
            diff = (lam[a] - lam[j]) * (1.0 / hat[j] - 1.0 / hat[a])
            pa += np.sum(np.log(np.maximum(diff, eps))) + j.size * np.log(n)
        out[k - 1] = pu + pl + pv + pp - pa / 2.0 - k * np.log(n) / 2.0
    return out


def estimate_order(eigenvalues: np.ndarray, n_samples: int, *, method: str = "laplace",
                   max_order: int | None = None, n_dims: int | None = None, step: int = 1,
                   cap_reason: str = "") -> OrderEstimate:
    """The number of components the eigenspectrum supports.

    Parameters
    ----------
    eigenvalues : ndarray, shape (D,)
        Eigenvalues of the sample covariance (see the module docstring for which);
        numerically zero ones (below ``NULL_FRACTION`` of the median) are left out.
    n_samples : int
        Samples behind it (voxels; for ``"mdl"`` and ``"aic"`` those of the
        subsampled grid).
    method : {"laplace", "mdl", "aic"}
        Minka's Laplace approximation (maximum of the evidence), or the first local
        minimum of MDL or AIC (Li et al. 2007).
    max_order : int, optional
        Never choose more than this (what the data support; see ``cap_reason``).
    n_dims : int, optional
        For ``"mdl"`` and ``"aic"``: the dimensions of the data that ``eigenvalues`` are
        the top of (default: as many as there are non-null eigenvalues).
    step : int, default=1
        Recorded: the grid step of the subsampling behind ``n_samples``.
    cap_reason : str, optional
        Recorded and printed: what sets ``max_order``.

    Returns
    -------
    OrderEstimate
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; use one of {', '.join(METHODS)}")
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    if lam.size < 2 or not lam[0] > 0:
        raise ValueError("the eigenspectrum is zero or too short: no component can be estimated")
    lam, n_null = _drop_null(lam)
    if lam.size < 2:
        k = 1
    elif method == "laplace":
        k = int(np.argmax(laplace_evidence(lam, n_samples))) + 1
    else:
        from .order_iid import first_minimum, information_criteria

        mdl, aic = information_criteria(lam, n_samples, n_dims=lam.size if n_null else n_dims)
        k = first_minimum(mdl if method == "mdl" else aic)
    estimated = k
    capped = max_order is not None and k > max_order
    if capped:
        k = max(1, int(max_order))
    return OrderEstimate(n_components=k, method=method, n_samples=int(n_samples), n_dims=int(lam.size),
                         max_order=None if max_order is None else int(max_order), capped=bool(capped),
                         n_null=n_null, step=int(step), cap_reason=cap_reason if max_order is not None else "",
                         estimated=int(estimated))


#: eigenvalues below this fraction of the median (non-zero) eigenvalue are the data's null space
NULL_FRACTION = 1e-3


def _drop_null(lam: np.ndarray) -> tuple[np.ndarray, int]:
    """The eigenvalues of the data's range, and how many were dropped as (numerically) zero.

    Cleaning removes dimensions (each run's mean, its linear trend, confounds), so the
    spectrum of exact data ends in zeros (up to float32 rounding); counted as noise they
    would pull the noise level down and the estimate up to nearly every dimension.
    Genuine noise eigenvalues stay far above ``NULL_FRACTION`` of the median unless there
    are nearly as many dimensions as samples.
    """
    positive = lam[lam > lam[0] * 1e-12]
    keep = lam > NULL_FRACTION * float(np.median(positive))
    return lam[keep], int(lam.size - keep.sum())


def order_from_parameters(parameters: dict, max_order: int | None = None, *, method: str | None = None,
                          cap_reason: str = "") -> OrderEstimate:
    """The estimate from a prepared file's ``parameters["spectrum"]`` (see ``prepare``).

    Parameters
    ----------
    parameters : dict
        ``PreparedData.parameters``.
    max_order : int, optional
        The cap (see :func:`estimate_order`).
    method : {"laplace", "mdl", "aic"}, optional
        Default :data:`DEFAULT_METHOD`, or ``"laplace"`` when the file holds no
        subsampled spectrum (prepared by an older trends-ivae).
    cap_reason : str, optional
        What sets ``max_order``.

    Raises
    ------
    ValueError
        When the parameters hold no spectrum (a file prepared before it was recorded), or
        no subsampled spectrum for ``method="mdl"`` or ``"aic"``.
    """
    record = parameters.get("spectrum") if parameters else None
    if not record or not record.get("singular_values"):
        raise ValueError("the prepared data hold no eigenspectrum (prepared by an older trends-ivae), so "
                         "the number of components cannot be estimated: give a number, or prepare again")
    iid = record.get("iid")
    if method is None:
        method = DEFAULT_METHOD if iid else "laplace"
    if method != "laplace":
        if not iid:
            raise ValueError(f"the prepared data hold no subsampled eigenspectrum, so {method!r} cannot be "
                             "used: prepare again with this version, or use 'laplace'")
        return estimate_order(np.asarray(iid["eigenvalues"]), int(iid["n_samples"]), method=method,
                              max_order=max_order, n_dims=record.get("n_volumes"), step=int(iid["step"]),
                              cap_reason=cap_reason)
    s = np.asarray(record["singular_values"], dtype=np.float64)
    n_voxels = int(record["n_voxels"])
    return estimate_order(s ** 2 / n_voxels, n_voxels, max_order=max_order, cap_reason=cap_reason)


def order_cap(parameters: dict, subject_volumes: dict[str, int], n_dims: int) -> tuple[int, str]:
    """The most components the data support, and why: the reduced dimension, the volumes
    of the smallest subject (its time courses span no more) and the data's rank (the
    non-null values of the recorded spectrum, when it holds all of them).

    Parameters
    ----------
    parameters : dict
        ``PreparedData.parameters`` (``spectrum`` is read when present).
    subject_volumes : dict
        Volumes per subject label.
    n_dims : int
        The reduced dimension.

    Returns
    -------
    cap : int
    reason : str
        E.g. ``"50 volumes in sub-01, the smallest subject"``.
    """
    limits = [(int(n_dims), f"the reduced dimension is {int(n_dims)}")]
    if subject_volumes:
        label, n = min(subject_volumes.items(), key=lambda kv: kv[1])
        limits.append((int(n), f"{int(n)} volumes in sub-{label}, the smallest subject"))
    record = (parameters or {}).get("spectrum") or {}
    if record.get("singular_values"):
        lam = np.sort(np.asarray(record["singular_values"], np.float64) ** 2)[::-1]
        if lam[0] > 0:
            kept, n_null = _drop_null(lam)
            if n_null:
                limits.append((int(kept.size), f"the cleaned data have rank {int(kept.size)}"))
    cap, reason = min(limits, key=lambda lr: lr[0])
    return max(1, cap), reason


def volumes_per_subject(runs) -> dict[str, int]:
    """Volumes per subject label, from ``(subject label, number of volumes)`` per run."""
    volumes: dict[str, int] = {}
    for subject, n in runs:
        volumes[str(subject)] = volumes.get(str(subject), 0) + int(n)
    return volumes


def check_subject_volumes(n_components: int, runs: Sequence[tuple[str, int]]) -> None:
    """Refuse more components than the smallest subject's volumes (before any work).

    A subject's time courses span at most as many dimensions as it has volumes, so its
    maps (regressed on them) would not be identified.

    Parameters
    ----------
    n_components : int
    runs : sequence of (subject label, number of volumes)

    Raises
    ------
    ValueError
        Naming ``n_components`` (``--n-components``), the subject and its volumes.
    """
    volumes = volumes_per_subject(runs)
    if volumes and int(n_components) > min(volumes.values()):
        label = min(volumes, key=volumes.get)
        raise ValueError(f"n_components ({n_components}) is more than the {volumes[label]} volumes of subject "
                         f"{label!r}, the smallest: its time courses cannot span more, so its maps would not "
                         f"be identified; lower n_components (--n-components) to at most {volumes[label]}")
