"""One spatial basis shared by all subjects, computed subject by subject (MIGP).

The samples of a temporal iVAE are volumes, so every subject's volumes must be
expressed in the same coordinates: ``x_s = (Y_s - mean) V`` with ``V`` (voxels x d)
common to everyone. ``V`` is the top-``d`` principal subspace of the group's
(temporally centred) data, i.e. the top right singular vectors of the matrix that
stacks every subject's ``Y_s`` -- a matrix too large to hold for a cohort.

MIGP (MELODIC's Incremental Group-PCA; Smith et al., NeuroImage 101, 2014) keeps a
running matrix ``W`` of ``n_keep`` rows. For each subject, ``[W; Y_s]`` is formed and
replaced by its top ``n_keep`` rows ``S_k U_k^T``-weighted right singular vectors
(``U_k^T [W; Y_s]``), computed from the small ``(rows x rows)`` Gram matrix. At the
end, ``V`` is the top ``d`` right singular vectors of ``W``. Memory is
``(n_keep + n_volumes_of_one_subject) x n_voxels``, whatever the number of subjects;
when ``n_keep`` is at least the total number of volumes the result is exact, and the
default ``n_keep = max(4 d, 100)`` matches the in-memory PCA's subspace closely on
fMRI-like data (see ``tests/test_reduction_migp.py``). A subject's data may first be
compressed to its own top ``subject_dims`` temporal components (subject-level PCA
inside the stream, as MIGP allows).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from ..data.store import reconstruct   # the inverse of project, kept with the store it reads

__all__ = ["MIGP", "pca_basis", "project", "reconstruct", "subspace_distance"]


def _top_rows(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows ``U_k^T A`` (= ``S_k V_k^T``) of ``A`` via its Gram matrix.

    Returns the rows (k, n_features) in ``A``'s dtype and the singular values (k,).
    """
    gram = (A @ A.T).astype(np.float64)
    evals, evecs = linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:k]
    evals = np.clip(evals[order], 0.0, None)
    rows = (evecs[:, order].T.astype(A.dtype)) @ A
    return rows, np.sqrt(evals)


def _sign_flip(V: np.ndarray) -> np.ndarray:
    """Make each column's largest-magnitude entry positive (a deterministic sign)."""
    idx = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[idx, np.arange(V.shape[1])])
    signs[signs == 0] = 1
    return V * signs


class MIGP:
    """Streamed group PCA: feed subjects one at a time, get one spatial basis.

    Parameters
    ----------
    n_dims : int
        Dimension ``d`` of the final basis.
    n_keep : int, optional
        Rows of the running matrix (default ``max(4 * n_dims, 100)``).
    subject_dims : int, optional
        Compress each subject to this many temporal components first (None: no).

    Attributes
    ----------
    n_samples_seen_ : int
        Volumes fed so far.
    total_ss_ : float
        Sum of squares of everything fed (for the explained-variance ratio).
    W_ : ndarray, shape (<= n_keep, n_voxels)
        The running matrix.
    """

    def __init__(self, n_dims: int, n_keep: int | None = None, subject_dims: int | None = None):
        if n_dims < 1:
            raise ValueError(f"n_dims must be >= 1, got {n_dims}")
        self.n_dims = int(n_dims)
        self.n_keep = int(n_keep) if n_keep is not None else max(4 * self.n_dims, 100)
        if self.n_keep < self.n_dims:
            raise ValueError(f"n_keep ({self.n_keep}) must be >= n_dims ({self.n_dims})")
        self.subject_dims = subject_dims
        self.W_: np.ndarray | None = None
        self.n_samples_seen_ = 0
        self.total_ss_ = 0.0

    def partial_fit(self, Y: np.ndarray) -> "MIGP":
        """Add one subject's data ``Y`` (n_volumes, n_voxels), already centred in time.

        The Gram matrix of ``[W; Y]`` is assembled from blocks: ``W W^T`` is known
        (diagonal once ``W`` has been reduced), so only ``W Y^T`` and ``Y Y^T`` are
        computed, and the new ``W = U_w^T W + U_y^T Y`` needs no concatenation.
        """
        Y = np.asarray(Y)
        if Y.ndim != 2:
            raise ValueError(f"Y must be 2-D (n_volumes, n_voxels), got shape {Y.shape}")
        if self.W_ is not None and Y.shape[1] != self.W_.shape[1]:
            raise ValueError(f"Y has {Y.shape[1]} voxels, earlier subjects had {self.W_.shape[1]}")
        if Y.dtype != np.float64:
            Y = Y.astype(np.float32, copy=False)
        self.n_samples_seen_ += Y.shape[0]
        self.total_ss_ += float(np.einsum("ij,ij->i", Y, Y).sum(dtype=np.float64))
        if self.subject_dims is not None and Y.shape[0] > self.subject_dims:
            Y, _ = _top_rows(Y, int(self.subject_dims))
        if self.W_ is None:
            W = Y if Y.shape[0] <= self.n_keep else _top_rows(Y, self.n_keep)[0]
            self.W_ = np.ascontiguousarray(W)
            self._ww = (self.W_ @ self.W_.T).astype(np.float64)
            return self
        W = self.W_
        Y = Y.astype(W.dtype, copy=False)
        m, t = W.shape[0], Y.shape[0]
        if m + t <= self.n_keep:
            self.W_ = np.concatenate([W, Y], axis=0)
            self._ww = (self.W_ @ self.W_.T).astype(np.float64)
            return self
        gram = np.empty((m + t, m + t))
        gram[:m, :m] = self._ww
        gram[:m, m:] = W @ Y.T
        gram[m:, :m] = gram[:m, m:].T
        gram[m:, m:] = Y @ Y.T
        evals, evecs = linalg.eigh(gram)
        order = np.argsort(evals)[::-1][: self.n_keep]
        U = evecs[:, order].astype(W.dtype)
        self.W_ = U[:m].T @ W + U[m:].T @ Y
        self._ww = np.diag(np.clip(evals[order], 0.0, None))
        return self

    def spectrum(self) -> np.ndarray:
        """Singular values of the running matrix, all of its rows, decreasing.

        The group data's leading singular values (exact when ``n_keep`` is at least the
        number of volumes fed); what the model order is estimated from
        (:mod:`trends_ivae.reduction.order`), as MELODIC does on its MIGP output.
        """
        if self.W_ is None:
            raise ValueError("MIGP has seen no data")
        evals = np.linalg.eigvalsh(np.asarray(self._ww, dtype=np.float64))
        return np.sqrt(np.clip(evals[::-1], 0.0, None))

    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """The shared basis.

        Returns
        -------
        V : ndarray, shape (n_voxels, d)
            Orthonormal columns, ordered by decreasing singular value, each column's
            largest entry positive.
        singular_values : ndarray, shape (d,)
            Estimates of the top singular values of the stacked group data.
        """
        if self.W_ is None:
            raise ValueError("MIGP has seen no data")
        if self.W_.shape[0] < self.n_dims:   # e.g. subjects' shares of low rank
            raise ValueError(f"the data have rank {self.W_.shape[0]} < n_dims={self.n_dims}")
        d = self.n_dims
        rows, s = _top_rows(self.W_, d)
        keep = s > s[0] * 1e-6 if s.size and s[0] > 0 else np.zeros_like(s, bool)
        if not keep.all():
            raise ValueError(f"the data have rank {int(keep.sum())} < n_dims={d}")
        V = (rows / s[:, None]).T.astype(np.float64)
        V, _ = np.linalg.qr(V)  # re-orthonormalise (float32 rounding), keeps the order
        V = _sign_flip(V)
        return V.astype(np.float32), s


def pca_basis(Y: np.ndarray, n_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """In-memory reference: top ``n_dims`` right singular vectors of ``Y`` (n, voxels)."""
    _, s, vt = linalg.svd(np.asarray(Y, dtype=np.float64), full_matrices=False)
    return _sign_flip(vt[:n_dims].T), s[:n_dims]


def project(Y: np.ndarray, basis: np.ndarray, voxel_mean: np.ndarray | None = None,
            scale: np.ndarray | None = None) -> np.ndarray:
    """Reduced coordinates ``x = (Y - voxel_mean) @ basis / scale``.

    Parameters
    ----------
    Y : ndarray, shape (n_volumes, n_voxels)
        Cleaned data (:func:`trends_ivae.data.cleaning.clean_run`).
    basis : ndarray, shape (n_voxels, d)
    voxel_mean : ndarray, shape (n_voxels,), optional
    scale : ndarray, shape (d,), optional
        Per-component scale (whitening); None or ones for plain PCA scores.

    Returns
    -------
    ndarray, shape (n_volumes, d), float32
    """
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[1] != basis.shape[0]:
        raise ValueError(f"Y has shape {Y.shape}; expected (n_volumes, {basis.shape[0]})")
    if voxel_mean is not None:
        Y = Y - np.asarray(voxel_mean, dtype=np.float32)
    x = Y @ np.asarray(basis, dtype=np.float32)
    if scale is not None:
        x = x / np.asarray(scale, dtype=np.float32)
    return x.astype(np.float32, copy=False)


def subspace_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Largest principal angle (radians) between the column spaces of ``A`` and ``B``."""
    return float(np.max(linalg.subspace_angles(np.asarray(A, float), np.asarray(B, float))))
