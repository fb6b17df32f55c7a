"""MIGP (streamed) against the in-memory PCA."""
import numpy as np
import pytest

from trends_ivae.reduction.migp import MIGP, pca_basis, project, reconstruct, subspace_distance


def _group(n_subjects=6, n_volumes=60, n_voxels=400, rank=8, seed=0):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(rank, n_voxels))
    weights = np.linspace(4.0, 1.5, rank)
    subjects = []
    for _ in range(n_subjects):
        tc = rng.normal(size=(n_volumes, rank)) * weights
        Y = tc @ maps + 0.5 * rng.normal(size=(n_volumes, n_voxels))
        subjects.append((Y - Y.mean(0)).astype(np.float32))
    return subjects


def test_migp_matches_in_memory_pca_subspace():
    subjects = _group()
    d = 8
    migp = MIGP(d, n_keep=3 * d)  # 24 rows for 360 volumes: genuinely approximate
    for Y in subjects:
        migp.partial_fit(Y)
    V, s = migp.basis()
    V_ref, s_ref = pca_basis(np.concatenate(subjects), d)
    assert V.shape == (400, d)
    np.testing.assert_allclose(V.T @ V, np.eye(d), atol=1e-5)
    assert subspace_distance(V, V_ref) < 0.05
    # projection matrices agree too
    P, P_ref = V @ V.T, V_ref @ V_ref.T
    assert np.linalg.norm(P - P_ref) / np.sqrt(d) < 0.05
    np.testing.assert_allclose(s, s_ref, rtol=0.02)


def test_migp_is_exact_when_it_keeps_everything():
    subjects = _group(n_subjects=3)
    migp = MIGP(5, n_keep=1000)
    for Y in subjects:
        migp.partial_fit(Y)
    V, s = migp.basis()
    V_ref, s_ref = pca_basis(np.concatenate(subjects), 5)
    assert subspace_distance(V, V_ref) < 1e-3
    np.testing.assert_allclose(np.abs(V.T @ V_ref), np.eye(5), atol=1e-3)
    np.testing.assert_allclose(s, s_ref, rtol=1e-4)


def test_migp_with_subject_level_compression():
    subjects = _group()
    migp = MIGP(8, n_keep=40, subject_dims=20)
    for Y in subjects:
        migp.partial_fit(Y)
    V, _ = migp.basis()
    V_ref, _ = pca_basis(np.concatenate(subjects), 8)
    assert subspace_distance(V, V_ref) < 0.1


def test_projection_reconstructs_up_to_discarded_variance():
    subjects = _group(n_subjects=2)
    Y = np.concatenate(subjects)
    V, s = pca_basis(Y, 8)
    mean = Y.mean(0)
    x = project(Y, V, mean)
    Y_hat = reconstruct(x, V, mean)
    residual = np.sum((Y - Y_hat) ** 2)
    total = np.sum((Y - mean) ** 2)
    _, s_all, _ = np.linalg.svd(Y - mean, full_matrices=False)
    np.testing.assert_allclose(residual, np.sum(s_all[8:] ** 2), rtol=1e-3)
    np.testing.assert_allclose(total - residual, np.sum(x.astype(float) ** 2), rtol=1e-3)
    # whitening scale round-trips
    scale = s / np.sqrt(len(Y) - 1)
    xw = project(Y, V, mean, scale)
    np.testing.assert_allclose(xw.std(0, ddof=1), 1.0, rtol=1e-3)
    np.testing.assert_allclose(reconstruct(xw, V, mean, scale), Y_hat, atol=1e-3)


def test_migp_errors():
    with pytest.raises(ValueError, match="n_dims"):
        MIGP(0)
    m = MIGP(2)
    with pytest.raises(ValueError, match="no data"):
        m.basis()
    m.partial_fit(np.ones((5, 10), np.float32) - 1 + np.eye(5, 10, dtype=np.float32))
    with pytest.raises(ValueError, match="voxels"):
        m.partial_fit(np.zeros((5, 11), np.float32))


def test_fewer_rows_than_dimensions_is_an_error_not_a_narrower_basis():
    """Low-rank subject shares (two subjects of rank 1) cannot give a basis of 3 dimensions."""
    rng = np.random.default_rng(0)
    migp = MIGP(3)
    for _ in range(2):
        migp.partial_fit(rng.normal(size=(1, 50)))
    with pytest.raises(ValueError, match="rank 2 < n_dims=3"):
        migp.basis()
