"""The model order: how many components the data support (``--n-components auto``).

MELODIC (``melodic -d 0``) estimates the number of components from the PCA
eigenspectrum with Minka's Laplace approximation to the Bayesian evidence of
probabilistic PCA (T. P. Minka, "Automatic choice of dimensionality for PCA", NIPS 13,
2000; the estimator scikit-learn's ``PCA(n_components="mle")`` implements). This
module implements that estimate on an eigenspectrum (arrays only, no torch):

- :func:`laplace_evidence` -- the log evidence of every order ``k = 1 ... D-1``;
- :func:`estimate_order` -- its maximiser, as an :class:`OrderEstimate` to print and
  record.

Spatial ICA, as MELODIC does it: the samples are voxels and the dimensions time
points (here the rows of the group's MIGP matrix, :meth:`MIGP.spectrum
<trends_ivae.reduction.migp.MIGP.spectrum>`), so the eigenvalues are those of the
(rows x rows) covariance and ``n_samples`` is the number of voxels. The evidence
assumes independent samples: spatial smoothing (``--smoothing-fwhm``) makes
neighbouring voxels dependent, and the estimate then tends to be too high (GIFT's
MDL with i.i.d. subsampling, Li, Adali & Calhoun 2007, addresses this; it is not
implemented here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import gammaln

__all__ = ["OrderEstimate", "estimate_order", "laplace_evidence", "order_from_parameters"]

#: the estimators :func:`estimate_order` knows
METHODS = ("laplace",)


@dataclass
class OrderEstimate:
    """What :func:`estimate_order` chose, and from what.

    Attributes
    ----------
    n_components : int
        The chosen order.
    method : str
        ``"laplace"``: Minka's (2000) Laplace approximation, as MELODIC's ``-d 0``.
    n_samples : int
        The samples the evidence counted (voxels).
    n_dims : int
        Length of the eigenspectrum used (the dimensions of the data's range).
    max_order : int or None
        The cap that was applied to the choice, if any.
    capped : bool
        True when the evidence peaked above ``max_order`` and the cap was taken.
    n_null : int
        Eigenvalues left out as the data's null space (numerically zero: the
        dimensions that cleaning removed).
    """

    n_components: int
    method: str
    n_samples: int
    n_dims: int
    max_order: int | None = None
    capped: bool = False
    n_null: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "reference": REFERENCES[self.method]}

    @classmethod
    def from_dict(cls, d: dict) -> "OrderEstimate":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        """One line for the terminal."""
        text = (f"{self.n_components} component(s) by {NAMES[self.method]} on the {self.n_dims}-value "
                f"eigenspectrum of {self.n_samples} voxels")
        if self.capped:
            text += f" (the evidence peaked higher; capped at {self.max_order})"
        return text


NAMES = {"laplace": "Minka's Laplace approximation (as MELODIC -d 0)"}
REFERENCES = {"laplace": "Minka, T. P. (2000). Automatic choice of dimensionality for PCA. NIPS 13."}


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
                   max_order: int | None = None) -> OrderEstimate:
    """The number of components the eigenspectrum supports.

    Parameters
    ----------
    eigenvalues : ndarray, shape (D,)
        Eigenvalues of the sample covariance (see the module docstring for which);
        numerically zero ones (below ``NULL_FRACTION`` of the median) are left out.
    n_samples : int
        Samples behind it (voxels, for spatial ICA).
    method : {"laplace"}
        Minka's Laplace approximation (MELODIC's default estimate).
    max_order : int, optional
        Never choose more than this (e.g. the reduced dimension).

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
    evidence = laplace_evidence(lam, n_samples) if lam.size >= 2 else np.array([0.0])
    k = int(np.argmax(evidence)) + 1
    capped = max_order is not None and k > max_order
    if capped:
        k = max(1, int(max_order))
    return OrderEstimate(n_components=k, method=method, n_samples=int(n_samples), n_dims=int(lam.size),
                         max_order=None if max_order is None else int(max_order), capped=bool(capped),
                         n_null=n_null)


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


def order_from_parameters(parameters: dict, max_order: int | None = None) -> OrderEstimate:
    """The estimate from a prepared file's ``parameters["spectrum"]`` (see ``prepare``).

    Raises
    ------
    ValueError
        When the parameters hold no spectrum (a file prepared before it was recorded).
    """
    record = parameters.get("spectrum") if parameters else None
    if not record or not record.get("singular_values"):
        raise ValueError("the prepared data hold no eigenspectrum (prepared by an older trends-ivae), so "
                         "the number of components cannot be estimated: give a number, or prepare again")
    s = np.asarray(record["singular_values"], dtype=np.float64)
    n_voxels = int(record["n_voxels"])
    return estimate_order(s ** 2 / n_voxels, n_voxels, max_order=max_order)
