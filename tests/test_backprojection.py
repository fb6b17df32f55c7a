"""Back-projection: regression maps recover known maps; sign, order, z-score invariants."""
from __future__ import annotations

import numpy as np
import pytest

from trends_ivae.group.backprojection import (back_project, effect_maps, explained_variance, peak_signs,
                                        regression_coefficients, zscore_maps)


def _orthonormal(n, d, rng):
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    return q


@pytest.fixture(scope="module")
def problem():
    """Voxel data Y_s = Z_s A M + noise, kept in a known basis V (span of the maps)."""
    rng = np.random.default_rng(0)
    n_vox, k, d, n_sub, T = 400, 4, 8, 3, 200
    V = _orthonormal(n_vox, d, rng)
    # maps live in the span of V; component scales differ so the order is known
    M = rng.standard_normal((k, d)) @ V.T
    M /= np.linalg.norm(M, axis=1, keepdims=True) / np.sqrt(n_vox)  # equal norms
    scale = np.array([0.5, 2.0, 1.0, 3.0])
    xs, zs, ys = [], [], []
    for _ in range(n_sub):
        Z = rng.standard_normal((T, k)) + 5.0  # a non-zero mean, removed by centring
        Y = (Z * scale) @ M + 0.05 * rng.standard_normal((T, n_vox))
        ys.append(Y)
        xs.append(Y @ V)
        zs.append(Z)
    return dict(V=V, M=M, scale=scale, xs=xs, zs=zs, ys=ys, k=k)


def _corr_rows(a, b):
    a = zscore_maps(a)
    b = zscore_maps(b)
    return (a * b).mean(1)


def test_recovers_maps_order_and_signs(problem):
    p = problem
    bp = back_project(p["xs"], p["zs"], p["V"])
    # the largest-scale component first
    np.testing.assert_array_equal(bp.order, np.argsort(-p["scale"]))
    truth = p["M"][bp.order] * bp.signs[:, None]
    assert np.all(_corr_rows(bp.maps, truth) > 0.99)
    # raw maps are the scaled maps (units of data per unit time course)
    np.testing.assert_allclose(bp.raw_maps, (p["M"] * p["scale"][:, None])[bp.order] * bp.signs[:, None],
                               atol=0.02)
    # time courses reordered and signed the same way
    for t, z in zip(bp.timecourses, p["zs"]):
        np.testing.assert_allclose(t, z[:, bp.order] * bp.signs)
    # explained variance sorted and positive, summing to about the R^2 (~1 here; not
    # exactly, since sample time courses and maps are not exactly uncorrelated)
    ev = bp.explained_variance
    assert np.all(np.diff(ev) <= 0) and np.all(ev > 0)
    assert 0.9 < ev.sum() < 1.1
    assert bp.subject_explained_variance.shape == (3, p["k"])


def test_sign_flip_of_input_is_undone(problem):
    p = problem
    bp = back_project(p["xs"], p["zs"], p["V"])
    flipped = [z * np.array([-1, 1, -1, 1]) for z in p["zs"]]
    bp2 = back_project(p["xs"], flipped, p["V"])
    np.testing.assert_allclose(bp2.maps, bp.maps, atol=1e-10)
    for a, b in zip(bp.timecourses, bp2.timecourses):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # the strongest peak of every map is positive
    idx = np.argmax(np.abs(bp.maps), axis=1)
    assert np.all(bp.maps[np.arange(p["k"]), idx] > 0)


def test_permutation_invariance(problem):
    p = problem
    perm = np.array([2, 0, 3, 1])
    bp = back_project(p["xs"], p["zs"], p["V"])
    bp2 = back_project(p["xs"], [z[:, perm] for z in p["zs"]], p["V"])
    np.testing.assert_allclose(bp2.maps, bp.maps, atol=1e-10)
    np.testing.assert_allclose(bp2.explained_variance, bp.explained_variance)


def test_zscore_properties(problem):
    p = problem
    bp = back_project(p["xs"], p["zs"], p["V"])
    np.testing.assert_allclose(bp.maps.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(bp.maps.std(1), 1, atol=1e-12)
    sm = bp.subject_maps()
    assert sm.shape == (3, p["k"], p["V"].shape[0])
    np.testing.assert_allclose(sm.std(-1), 1, atol=1e-12)
    np.testing.assert_allclose(bp.subject_maps(1), sm[1])
    # zscore of a constant map is zero, not NaN
    z = zscore_maps(np.ones((2, 5)))
    assert np.all(z == 0)


def test_voxel_data_and_reduced_data_agree_in_span(problem):
    """Maps from x = Y V equal the voxel-data maps projected onto span(V)."""
    p = problem
    from_x = back_project(p["xs"], p["zs"], p["V"], sort=False, fix_signs=False)
    from_y = back_project(None, p["zs"], voxel_data=p["ys"], sort=False, fix_signs=False)
    V = p["V"]
    np.testing.assert_allclose(from_x.raw_maps, from_y.raw_maps @ V @ V.T, atol=1e-10)
    assert from_y.basis is None
    np.testing.assert_allclose(from_y.subject_maps(0, zscore=False), from_y.subject_coefs[0])


def test_stacked_input_with_subject_labels(problem):
    p = problem
    X = np.concatenate(p["xs"])
    Z = np.concatenate(p["zs"])
    subject = np.repeat([0, 1, 2], [len(x) for x in p["xs"]])
    a = back_project(X, Z, p["V"], subject=subject)
    b = back_project(p["xs"], p["zs"], p["V"])
    np.testing.assert_allclose(a.maps, b.maps)
    assert len(a.timecourses) == 3


def test_effect_maps(problem):
    p = problem
    rng = np.random.default_rng(1)
    J = rng.standard_normal((p["k"], p["V"].shape[1]))
    raw = effect_maps(J, p["V"], zscore=False)
    np.testing.assert_allclose(raw, J @ p["V"].T)
    bp = back_project(p["xs"], p["zs"], p["V"])
    e = bp.effect_maps(J)
    np.testing.assert_allclose(e, zscore_maps((J @ p["V"].T)[bp.order] * bp.signs[:, None]))
    # a Jacobian already reordered gives the same maps
    J2 = J[bp.order] * bp.signs[:, None]
    np.testing.assert_allclose(bp.effect_maps(J2, already_ordered=True), e)
    with pytest.raises(ValueError, match="share d"):
        effect_maps(J[:, :3], p["V"])


def test_helpers_and_errors():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((50, 2))
    B = np.array([[1.0, 0, 2], [0, -3, 0]])
    X = Z @ B + 10
    np.testing.assert_allclose(regression_coefficients(X, Z), B, atol=1e-10)
    ev = explained_variance(X, Z)
    assert ev.shape == (2,) and abs(ev.sum() - 1) < 0.05
    np.testing.assert_array_equal(peak_signs(np.array([[0.1, -2.0], [3.0, -1.0], [0.0, 0.0]])), [-1, 1, 1])
    with pytest.raises(ValueError, match="n_volumes"):
        regression_coefficients(X[:10], Z)
    with pytest.raises(ValueError, match="basis"):
        back_project([X], [Z])
    with pytest.raises(ValueError, match="subjects"):
        back_project([X, X], [Z], np.eye(3))


def test_true_timecourses_recover_simulated_maps():
    """On the fMRI simulator, regressing on the true sources gives the true maps."""
    from trends_ivae.simulate import simulate_fmri
    sim = simulate_fmri(n_subjects=3, n_volumes=60, n_components=5, n_task=2,
                        shape=(16, 18, 16), nonlinear=False, snr=2.0, drift_amplitude=0.0, seed=1)
    ys = [(d - d.mean(0)) / d.mean(0) * 100 for d in sim.data]
    zs = list(sim.truth.timecourses)
    bp = back_project(None, zs, voxel_data=ys, sort=False)
    r = _corr_rows(bp.maps, sim.truth.maps * bp.signs[:, None])
    assert np.all(r > 0.85), r
    np.testing.assert_array_equal(bp.signs, 1.0)  # truth maps have positive peaks


def test_explained_variance_is_a_bounded_partition_with_collinear_time_courses():
    """Two nearly collinear time courses (one suppressing the other: the data follow their
    difference): ||z_j beta_j||^2 / ||X||^2 adds up to 2.8 times the data's variance; the
    shares are fractions adding up to the regression's R^2."""
    rng = np.random.default_rng(0)
    n = 300
    a = rng.standard_normal(n)
    b = a + 0.3 * rng.standard_normal(n)
    c = rng.standard_normal(n)
    Z = np.stack([a, b, c], axis=1)
    X = (np.outer(a - b, rng.standard_normal(20)) + np.outer(c, rng.standard_normal(20))
         + 0.1 * rng.standard_normal((n, 20)))
    ev, r2 = explained_variance(X, Z, return_total=True)
    Xc, Zc = X - X.mean(0), Z - Z.mean(0)
    fitted = Zc @ np.linalg.lstsq(Zc, Xc, rcond=None)[0]
    assert r2 == pytest.approx(np.sum(fitted ** 2) / np.sum(Xc ** 2), rel=1e-10)
    assert np.all(ev >= 0) and np.all(ev <= 1)
    assert ev.sum() == pytest.approx(r2, rel=1e-10) and r2 <= 1
    # an exact duplicate: both copies get the same share, the total is unchanged
    ev2, r2b = explained_variance(X, np.stack([a, a, c], axis=1), return_total=True)
    assert ev2[0] == pytest.approx(ev2[1]) and ev2.sum() == pytest.approx(r2b)
    # uncorrelated time courses: the shares are ||z_j beta_j||^2 / ||X||^2
    q = np.linalg.qr(_centre_cols(rng.standard_normal((n, 3))))[0]
    Y = q @ rng.standard_normal((3, 20)) + 0.1 * _centre_cols(rng.standard_normal((n, 20)))
    beta = np.linalg.pinv(q) @ Y
    np.testing.assert_allclose(explained_variance(Y, q), (beta ** 2).sum(1) / np.sum(Y ** 2), rtol=1e-8)


def _centre_cols(a):
    return a - a.mean(0)


def test_back_project_shares_are_fractions_of_the_given_totals():
    rng = np.random.default_rng(1)
    zs = [rng.standard_normal((80, 3)) for _ in range(2)]
    zs = [np.column_stack([z[:, 0], z[:, 0] + 0.05 * z[:, 1], z[:, 2]]) for z in zs]   # collinear
    xs = [z @ rng.standard_normal((3, 6)) + 0.2 * rng.standard_normal((80, 6)) for z in zs]
    bp = back_project(xs, zs, np.eye(6))
    assert bp.explained_variance.sum() == pytest.approx(bp.total_explained_variance)
    assert 0.9 < bp.total_explained_variance <= 1
    own = [float(np.sum((x - x.mean(0)) ** 2)) for x in xs]
    bp2 = back_project(xs, zs, np.eye(6), total_sum_of_squares=[2 * t for t in own])   # half the variance kept
    np.testing.assert_allclose(bp2.explained_variance, bp.explained_variance / 2, rtol=1e-10)
    assert bp2.total_explained_variance == pytest.approx(bp.total_explained_variance / 2)
    np.testing.assert_allclose(bp2.subject_total_explained_variance, bp.subject_total_explained_variance / 2)
    with pytest.raises(ValueError, match="3 values for 2 subjects"):
        back_project(xs, zs, np.eye(6), total_sum_of_squares=[1.0, 2.0, 3.0])
