"""From time courses back to the brain: regression maps, effect maps, sign and order.

Arrays only (numpy). The inputs are what the prepare stage and the iVAE give:

- ``x_s`` (n_volumes_s, d): subject ``s``'s reduced data, ``x = (Y - voxel_mean) V``;
- ``V`` (n_voxels, d): the shared spatial basis, orthonormal columns;
- ``z_s`` (n_volumes_s, k): subject ``s``'s time courses (posterior means);
- optionally ``Y_s`` (n_volumes_s, n_voxels): the cleaned voxel data itself.

Regression maps (GIFT's back-reconstruction for temporal sources): for each subject the
least-squares coefficients of the (centred) data on the (centred) time courses,
``beta_s = pinv(Z_s) X_s`` (k, d), taken to voxels as ``beta_s V^T`` (k, n_voxels), or
``pinv(Z_s) Y_s`` directly when voxel data are given. The group map is the mean over
subjects; every map is z-scored across voxels. Since ``V`` has orthonormal columns, the
maps from reduced data are the voxel-data maps projected onto the span of ``V``.

Decoder-effect maps: the mean decoder Jacobian ``J`` (k, d) of the iVAE, ``E[d f / d z]``,
taken to voxels as ``J V^T`` -- how the (noise-free) reconstruction of each voxel moves
per unit change of each component, averaged over the data. See ``docs/maps.md``.

Sign and order, as users expect from ICA: each component is flipped so that its group
z-map's strongest peak is positive (the time courses, subject maps and effect maps get
the same sign), and components are sorted by decreasing explained variance.

Explained variance (:func:`explained_variance`): each component's share of the cleaned
data's variance, a fraction in [0, 1]; the shares add up to the regression's R^2 (the
variance all components explain together, MELODIC's "% of total variance" summed), so
never to more than 1, also when the time courses are correlated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..docstrings import EXPLAINED_VARIANCE_DEFINITION

__all__ = [
    "BackProjection",
    "SubjectMaps",
    "back_project",
    "regression_coefficients",
    "zscore_maps",
    "peak_signs",
    "explained_variance",
    "EXPLAINED_VARIANCE_DEFINITION",
    "effect_maps",
    "split_by_subject",
]


def _centre(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=0, keepdims=True)


def _regression_pair(data: np.ndarray, z: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (n_volumes, n_features) and ``z`` (n_volumes, k) as float64, checked to share
    their volumes, each centred in time when ``center``."""
    data = np.asarray(data, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    if data.ndim != 2 or z.ndim != 2 or data.shape[0] != z.shape[0]:
        raise ValueError(f"data (n_volumes, n_features) and z (n_volumes, k) must share "
                         f"n_volumes; got data {data.shape} and z {z.shape}")
    if center:
        data, z = _centre(data), _centre(z)
    return data, z


def regression_coefficients(data: np.ndarray, z: np.ndarray, *, center: bool = True,
                            rcond: float = 1e-10) -> np.ndarray:
    """Least-squares coefficients of ``data`` on the time courses ``z``.

    Parameters
    ----------
    data : ndarray (n_volumes, n_features)
        Reduced data ``x`` (features = basis columns) or voxel data.
    z : ndarray (n_volumes, k)
        Time courses.
    center : bool
        Remove the temporal mean of both first (an intercept).
    rcond : float
        Cut-off of :func:`numpy.linalg.pinv`.

    Returns
    -------
    ndarray (k, n_features)
        ``pinv(z) data``.
    """
    data, z = _regression_pair(data, z, center)
    return np.linalg.pinv(z, rcond=rcond) @ data


def zscore_maps(maps: np.ndarray) -> np.ndarray:
    """Z-score each map (row) across voxels; a constant map becomes zeros.

    Parameters
    ----------
    maps : ndarray (..., n_voxels)

    Returns
    -------
    ndarray, same shape, float64, each row with mean 0 and standard deviation 1.
    """
    maps = np.asarray(maps, dtype=np.float64)
    mean = maps.mean(axis=-1, keepdims=True)
    std = maps.std(axis=-1, keepdims=True)
    return np.where(std > 0, (maps - mean) / np.where(std > 0, std, 1.0), 0.0)


def peak_signs(maps: np.ndarray) -> np.ndarray:
    """+1 or -1 per map (row) so that ``signs[:, None] * maps`` has a positive strongest
    peak (the largest absolute value; zero maps get +1).

    Parameters
    ----------
    maps : ndarray (k, n_voxels)

    Returns
    -------
    ndarray (k,) of float, entries +1 or -1.
    """
    maps = np.asarray(maps)
    peak = maps[np.arange(maps.shape[0]), np.argmax(np.abs(maps), axis=1)]
    return np.where(peak < 0, -1.0, 1.0)



def _variance_parts(data: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, float]:
    """Sums of squares of (centred) ``data`` credited to each (centred) time course, and the
    regression's fitted sum of squares; the parts add up to it (see :func:`explained_variance`)."""
    k = z.shape[1]
    norms = np.sqrt((z ** 2).sum(0))
    top = float(norms.max()) if norms.size else 0.0
    ok = norms > max(top * 1e-12, np.finfo(float).tiny)
    if not ok.any():
        return np.zeros(k), 0.0
    zn = np.zeros_like(z)
    zn[:, ok] = z[:, ok] / norms[ok]                      # unit-norm columns (a constant one stays 0)
    p, d, qt = np.linalg.svd(zn, full_matrices=False)     # zn = P diag(d) Q^T
    keep = d > d.max() * max(zn.shape) * np.finfo(float).eps
    p, d, q = p[:, keep], d[keep], qt[keep].T
    proj = p.T @ data                                     # data on an orthonormal basis of span(z)
    fitted = float((proj ** 2).sum())
    star = ((q @ proj) ** 2).sum(1)                       # ||z*_k^T data||^2 for z* = P Q^T (Loewdin)
    lam = (q * d) @ q.T                                   # zn = z* Lambda, Lambda symmetric
    parts = (lam ** 2) @ star                             # columns of Lambda**2 sum to 1: parts add to fitted
    return np.clip(parts, 0.0, None), fitted


def explained_variance(data: np.ndarray, z: np.ndarray, coefs: np.ndarray | None = None, *,
                       center: bool = True, total: float | None = None,
                       return_total: bool = False) -> np.ndarray | tuple[np.ndarray, float]:
    """Each component's share of the data's variance: a fraction in [0, 1], adding up to R^2.

    The shares are Johnson's relative weights (Johnson 2000) of the least-squares regression
    of ``data`` on all time courses ``z``, summed over the data's columns:

    1. scale each time course to unit norm, ``z_n = P D Q^T`` (SVD);
    2. ``z* = P Q^T`` is the orthonormal set closest to ``z_n`` (symmetric orthogonalisation)
       and ``z_n = z* L`` with ``L = Q D Q^T``;
    3. orthogonal ``z*_k`` explains ``||z*_k^T data||^2`` (these add up to the regression's
       fitted sum of squares); component ``j`` is credited ``sum_k L_jk^2 ||z*_k^T data||^2``
       (``L_jk^2`` is the part of ``z*_k`` in ``z_j``; each column of ``L**2`` sums to 1).

    Why this definition: each share is >= 0 and the shares add up to exactly the variance
    all components explain together (R^2 <= 1), whatever the correlation of the time
    courses, and independently of their order. The per-component ``||z_j beta_j||^2`` used
    before is the same for uncorrelated time courses but with correlated (collinear) ones
    adds up to more than the data's variance. A sequential (type I) partition depends on an
    arbitrary order; the unique contributions (drop of R^2 without component ``j``) leave
    the shared variance to nobody, and add up to more than R^2 when one time course
    suppresses another (``y = z_1 - z_2`` with correlated ``z``). The relative weights are a
    close, cheap approximation of the Shapley (LMG / dominance-analysis) decomposition,
    which needs 2^k regressions.

    Parameters
    ----------
    data : ndarray (n_volumes, n_features)
    z : ndarray (n_volumes, k)
    coefs : ndarray (k, n_features), optional
        Ignored (kept for compatibility: the shares need no coefficients).
    center : bool
        Remove the temporal mean of both first.
    total : float, optional
        The denominator: the data's total sum of squares (e.g. of the cleaned voxel data when
        ``data`` are reduced; default ``||data||^2``). Must be at least ``||data||^2``.
    return_total : bool
        Also return the total share (R^2 of the regression on all components).

    Returns
    -------
    ndarray (k,), or (ndarray (k,), float) with ``return_total``
    """
    data, z = _regression_pair(data, z, center)
    parts, fitted = _variance_parts(data, z)
    denom = float(np.sum(data ** 2)) if total is None else float(total)
    shares = parts / denom if denom > 0 else np.zeros(z.shape[1])
    r2 = fitted / denom if denom > 0 else 0.0
    return (shares, r2) if return_total else shares


def effect_maps(jacobian: np.ndarray, basis: np.ndarray, *, order: Sequence[int] | None = None,
                signs: Sequence[float] | None = None, zscore: bool = True) -> np.ndarray:
    """Voxel effect maps from a mean decoder Jacobian.

    Parameters
    ----------
    jacobian : ndarray (k, d)
        Mean over samples of ``d f / d z`` in the reduced space
        (``IVAE.decoder_jacobian``).
    basis : ndarray (n_voxels, d)
        The shared basis ``V``.
    order, signs : sequences of length k, optional
        Apply a :class:`BackProjection`'s ``order`` and ``signs`` (leave them out when the
        model was already reordered with ``IVAE.reorder``).
    zscore : bool
        Z-score each map across voxels.

    Returns
    -------
    ndarray (k, n_voxels)
        ``J V^T`` (reordered, signed, z-scored as asked).
    """
    jacobian = np.asarray(jacobian, dtype=np.float64)
    basis = np.asarray(basis)
    if jacobian.ndim != 2 or basis.ndim != 2 or jacobian.shape[1] != basis.shape[1]:
        raise ValueError(f"jacobian (k, d) and basis (n_voxels, d) must share d; got "
                         f"jacobian {jacobian.shape} and basis {basis.shape}")
    maps = jacobian @ basis.T
    if order is not None:
        maps = maps[np.asarray(order)]
    if signs is not None:
        maps = maps * np.asarray(signs, dtype=np.float64)[:, None]
    return zscore_maps(maps) if zscore else maps


def split_by_subject(a: np.ndarray, subject: np.ndarray) -> list[np.ndarray]:
    """Rows of ``a`` grouped by the labels in ``subject`` (sorted unique order)."""
    subject = np.asarray(subject)
    if len(subject) != len(a):
        raise ValueError(f"subject labels ({len(subject)}) and rows ({len(a)}) differ in length")
    return [a[subject == s] for s in np.unique(subject)]


@dataclass
class BackProjection:
    """Maps and time courses, in the final order and sign.

    Component ``i`` of every output is ``signs[i]`` times the input component
    ``order[i]``.

    Attributes
    ----------
    maps : ndarray (k, n_voxels)
        Group z-maps (mean regression map over subjects, z-scored across voxels).
    raw_maps : ndarray (k, n_voxels)
        Group regression maps before z-scoring (data units per unit time course).
    subject_coefs : ndarray (n_subjects, k, n_features)
        Subject regression coefficients, in the reduced space (``n_features = d``) or in
        voxels when voxel data were given; use :meth:`subject_maps` for voxel maps.
    timecourses : list of ndarray (n_volumes_s, k)
        Reordered and signed time courses per subject.
    order : ndarray (k,) int
    signs : ndarray (k,) float (+1 / -1)
    explained_variance : ndarray (k,)
        Pooled over subjects: each component's share of the data's variance (fractions in
        [0, 1], :func:`explained_variance`: the subjects' credited sums of squares over the
        sum of their total sums of squares), sorted decreasingly; they add up to
        ``total_explained_variance``.
    subject_explained_variance : ndarray (n_subjects, k)
        The same per subject.
    total_explained_variance : float
        Pooled R^2 of the regressions on all components (fraction of the data's variance).
    subject_total_explained_variance : ndarray (n_subjects,)
    basis : ndarray (n_voxels, d) or None
        The basis the coefficients live in (None when they are voxel maps already).
    """

    maps: np.ndarray
    raw_maps: np.ndarray
    subject_coefs: np.ndarray
    timecourses: list[np.ndarray]
    order: np.ndarray
    signs: np.ndarray
    explained_variance: np.ndarray
    subject_explained_variance: np.ndarray
    basis: np.ndarray | None = None
    total_explained_variance: float = float("nan")
    subject_total_explained_variance: np.ndarray | None = None

    @property
    def n_components(self) -> int:
        return int(self.maps.shape[0])

    def subject_maps(self, index: int | None = None, *, zscore: bool = True) -> np.ndarray:
        """Voxel maps of one subject (k, n_voxels) or all (n_subjects, k, n_voxels).

        Computed on demand (``coefs V^T``) so that many subjects' voxel maps never have to
        be held at once; z-scored per map unless ``zscore=False``.
        """
        coefs = self.subject_coefs if index is None else self.subject_coefs[index]
        maps = coefs if self.basis is None else coefs @ self.basis.T
        return zscore_maps(maps) if zscore else np.asarray(maps, dtype=np.float64)

    def effect_maps(self, jacobian: np.ndarray, *, zscore: bool = True,
                    already_ordered: bool = False) -> np.ndarray:
        """:func:`effect_maps` with this back-projection's basis, order and signs
        (``already_ordered=True`` when the Jacobian comes from a model reordered with
        ``order`` and ``signs``)."""
        if self.basis is None:
            raise ValueError("effect maps need the basis; this back-projection was built "
                             "from voxel data without one")
        if already_ordered:
            return effect_maps(jacobian, self.basis, zscore=zscore)
        return effect_maps(jacobian, self.basis, order=self.order, signs=self.signs, zscore=zscore)


class SubjectMaps(Sequence):
    """The subjects' z-maps, each computed when indexed (``coefs V^T``, float32 (k, n_voxels)).

    A list would hold every subject's voxel maps at once (20 components x 50k voxels x
    1000 subjects is 4 GB); this holds the small reduced-space coefficients and makes
    one subject's maps on demand, so writing them one after the other keeps the group
    stage's memory flat in the number of subjects. ``list(maps)`` materialises them.
    """

    def __init__(self, backprojection: BackProjection, n_subjects: int) -> None:
        self._bp = backprojection
        self._n = int(n_subjects)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        i = int(index)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"subject index {index} out of range ({self._n} subjects)")
        return self._bp.subject_maps(i).astype(np.float32)


def _as_list(a, subject, name: str) -> list[np.ndarray] | None:
    if a is None:
        return None
    if isinstance(a, np.ndarray) and a.ndim == 2:
        return [a] if subject is None else split_by_subject(a, subject)
    out = [np.asarray(x) for x in a]
    if any(x.ndim != 2 for x in out):
        raise ValueError(f"{name} must be a 2-D array or a sequence of 2-D arrays (one per subject)")
    return out


def back_project(x: np.ndarray | Sequence[np.ndarray] | None, z: np.ndarray | Sequence[np.ndarray],
                 basis: np.ndarray | None = None, *, subject: np.ndarray | None = None,
                 voxel_data: np.ndarray | Sequence[np.ndarray] | None = None,
                 sort: bool = True, fix_signs: bool = True,
                 total_sum_of_squares: float | Sequence[float] | None = None) -> BackProjection:
    """Regression maps, explained variance, sign and order from time courses.

    Parameters
    ----------
    x : ndarray (n_volumes_total, d) or sequence of (n_volumes_s, d), or None
        Reduced data, stacked (then give ``subject``) or one array per subject. May be
        None when ``voxel_data`` is given.
    z : ndarray (n_volumes_total, k) or sequence of (n_volumes_s, k)
        Time courses, laid out like ``x``.
    basis : ndarray (n_voxels, d), optional
        Shared basis ``V`` (needed with ``x``, to give voxel maps).
    subject : ndarray (n_volumes_total,), optional
        Subject label of each row when ``x`` and ``z`` are stacked. Subjects are taken in
        sorted label order.
    voxel_data : ndarray or sequence, optional
        Cleaned voxel data (n_volumes, n_voxels), laid out like ``z``; when given, maps are
        regressed from it instead of ``x`` (exact, not projected onto the basis).
    sort : bool
        Order components by decreasing explained variance.
    fix_signs : bool
        Flip components so that each group z-map's strongest peak is positive.
    total_sum_of_squares : float or sequence of float, optional
        The denominators of the explained variance: the cleaned data's total sum of squares,
        one per subject (or one for the group: then only the pooled shares use it). Reduced
        data ``x`` hold only the variance kept by the reduction; with these the shares are
        fractions of the cleaned data's variance. Default: the sums of squares of the data
        given.

    Returns
    -------
    BackProjection
    """
    zs = _as_list(z, subject, "z")
    vs = _as_list(voxel_data, subject, "voxel_data")
    xs = _as_list(x, subject, "x")
    data = vs if vs is not None else xs
    if data is None:
        raise ValueError("give the reduced data x (with basis) or voxel_data")
    if vs is None and basis is None:
        raise ValueError("reduced data x need the basis (n_voxels, d) to give voxel maps")
    if len(data) != len(zs):
        raise ValueError(f"{len(data)} subjects of data but {len(zs)} of time courses")
    k = zs[0].shape[1]
    totals = _subject_totals(total_sum_of_squares, len(data))
    coefs, sub_ev, sub_r2, norms = [], [], [], []
    for i, (d, t) in enumerate(zip(data, zs)):
        if t.shape[1] != k or d.shape[0] != t.shape[0]:
            raise ValueError(f"subject {i}: data {d.shape} and time courses {t.shape} do not "
                             f"match (same n_volumes, k={k})")
        dc, tc = _centre(np.asarray(d, np.float64)), _centre(np.asarray(t, np.float64))
        b = regression_coefficients(dc, tc, center=False)
        coefs.append(b)
        part, fitted = _variance_parts(dc, tc)
        own = float(np.sum(dc ** 2))
        total = own if totals is None else max(float(totals[i]), own)
        norms.append((part, fitted, total))
        sub_ev.append(part / total if total > 0 else np.zeros(k))
        sub_r2.append(fitted / total if total > 0 else 0.0)
    coefs = np.stack(coefs)  # (S, k, F)
    grand = sum(t for _, _, t in norms)
    if isinstance(total_sum_of_squares, (int, float, np.floating)):
        grand = max(float(total_sum_of_squares), grand)
    grand = max(grand, np.finfo(float).tiny)
    pooled = sum(p for p, _, _ in norms) / grand
    pooled_r2 = float(sum(f for _, f, _ in norms) / grand)
    use_basis = None if vs is not None else np.asarray(basis)
    if use_basis is not None and use_basis.shape[1] != coefs.shape[2]:
        raise ValueError(f"basis {use_basis.shape} does not match the reduced data's d={coefs.shape[2]}")
    mean_coef = coefs.mean(0)
    raw = mean_coef if use_basis is None else mean_coef @ use_basis.T
    order = np.argsort(-pooled, kind="stable") if sort else np.arange(k)
    raw = raw[order]
    zmaps = zscore_maps(raw)
    signs = peak_signs(zmaps) if fix_signs else np.ones(k)
    return BackProjection(
        maps=zmaps * signs[:, None],
        raw_maps=raw * signs[:, None],
        subject_coefs=coefs[:, order] * signs[None, :, None],
        timecourses=[np.asarray(t)[:, order] * signs for t in zs],
        order=order,
        signs=signs,
        explained_variance=pooled[order],
        subject_explained_variance=np.stack(sub_ev)[:, order],
        basis=use_basis,
        total_explained_variance=pooled_r2,
        subject_total_explained_variance=np.asarray(sub_r2),
    )


def _subject_totals(total, n_subjects: int) -> np.ndarray | None:
    """Per-subject denominators from ``total_sum_of_squares`` (None: a single group total or none)."""
    if total is None or isinstance(total, (int, float, np.floating)):
        return None
    arr = np.asarray(total, dtype=np.float64).ravel()
    if arr.size != n_subjects:
        raise ValueError(f"total_sum_of_squares has {arr.size} values for {n_subjects} subjects")
    return arr
