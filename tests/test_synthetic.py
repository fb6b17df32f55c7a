"""The paper's generator: shapes, labels, the condition-number rule, uncentred means."""
import numpy as np
import pytest

from trends_ivae.simulate import make_segment_data, mixing_mlp, well_conditioned_matrix


def test_shapes_and_labels():
    d = make_segment_data(n_sources=3, n_obs=4, n_segments=6, n_per_segment=50, n_layers=2,
                          random_state=0, n_draws_for_threshold=200)
    assert d.X.shape == (300, 4) and d.S.shape == (300, 3) and d.u.shape == (300,)
    assert d.X.dtype == np.float32
    assert np.array_equal(d.u, np.repeat(np.arange(6), 50))
    assert len(d.mixing) == 2 and d.mixing[0].shape == (3, 4) and d.mixing[1].shape == (4, 4)
    assert np.all(np.isfinite(d.X))


def test_mixing_reproduces_X():
    d = make_segment_data(n_sources=3, n_segments=4, n_per_segment=30, n_layers=3, random_state=1,
                          n_draws_for_threshold=100)
    h = d.S.astype(np.float64)
    for i, a in enumerate(d.mixing):
        h = h @ a
        if i < len(d.mixing) - 1:
            h = np.tanh(h) + 0.1 * h
    assert np.allclose(h, d.X, atol=1e-5)


def test_one_layer_is_linear():
    d = make_segment_data(n_sources=2, n_segments=3, n_per_segment=20, n_layers=1, random_state=2,
                          n_draws_for_threshold=50)
    assert np.allclose(d.S @ d.mixing[0], d.X, atol=1e-5)


def test_condition_number_rule():
    rng = np.random.default_rng(3)
    a = well_conditioned_matrix(4, 4, rng, n_draws_for_threshold=400)
    assert np.allclose(np.linalg.norm(a, axis=0), 1.0)
    assert np.all(np.abs(a) <= 1.0)
    ref = np.random.default_rng(4)
    conds = []
    for _ in range(2000):
        b = ref.uniform(-1, 1, (4, 4))
        conds.append(np.linalg.cond(b / np.linalg.norm(b, axis=0)))
    # in the best quarter of random draws (with slack for the threshold's sampling error)
    assert np.linalg.cond(a) <= np.percentile(conds, 30)


def test_segment_statistics_centred_and_uncentred():
    kw = dict(n_sources=2, n_segments=8, n_per_segment=4000, n_layers=1, random_state=5,
              n_draws_for_threshold=50)
    cen = make_segment_data(centered=True, **kw)
    unc = make_segment_data(centered=False, **kw)
    means_c = np.array([cen.S[cen.u == k].mean(0) for k in range(8)])
    means_u = np.array([unc.S[unc.u == k].mean(0) for k in range(8)])
    stds = np.array([cen.S[cen.u == k].std(0) for k in range(8)])
    assert np.abs(means_c).max() < 0.15
    assert np.abs(means_u).max() > 1.0 and np.abs(means_u).max() < 5.2
    assert stds.min() > 0.45 and stds.max() < 3.1


def test_laplace_and_noise():
    d0 = make_segment_data(n_sources=2, n_segments=2, n_per_segment=5000, n_layers=1, prior="laplace",
                           random_state=6, n_draws_for_threshold=50)
    from scipy.stats import kurtosis
    k = kurtosis(d0.S[d0.u == 0], axis=0)
    assert np.all(k > 1.5)                          # Laplace: excess kurtosis 3
    d1 = make_segment_data(n_sources=2, n_segments=2, n_per_segment=5000, n_layers=1, prior="laplace",
                           random_state=6, n_draws_for_threshold=50, noise_std=0.5)
    assert np.std(d1.X - d0.X) == pytest.approx(0.5, rel=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="prior"):
        make_segment_data(prior="cauchy")
    with pytest.raises(ValueError, match="n_obs"):
        make_segment_data(n_sources=3, n_obs=2)


def test_seeded():
    a = make_segment_data(n_sources=2, n_segments=3, n_per_segment=10, random_state=7, n_draws_for_threshold=20)
    b = make_segment_data(n_sources=2, n_segments=3, n_per_segment=10, random_state=7, n_draws_for_threshold=20)
    assert np.array_equal(a.X, b.X)
