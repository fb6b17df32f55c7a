"""ICASSO-style consensus of restarts: the stability index and the central restart."""
import warnings

import numpy as np
import pytest

from trends_ivae.estimators.consensus import CollinearityWarning, consensus, warn_collinear


def _sources(seed, n=2000, k=4):
    return np.random.default_rng(seed).standard_normal((n, k))


def test_identical_restarts_have_stability_one_whatever_order_and_sign():
    s = _sources(0)
    restarts = [s, -s[:, [2, 0, 3, 1]], s * 3.0]
    cons = consensus(restarts)
    np.testing.assert_allclose(cons.stability, 1.0, atol=1e-12)
    assert cons.agreement == pytest.approx(1.0)


def test_unrelated_restarts_have_low_stability():
    restarts = [_sources(i) for i in range(4)]   # independent draws: nothing is reproduced
    cons = consensus(restarts)
    assert np.all(cons.stability < 0.2)
    assert cons.agreement < 0.2


def test_the_central_restart_is_the_one_the_others_agree_with():
    rng = np.random.default_rng(1)
    truth = _sources(2)
    near = [truth + 0.3 * rng.standard_normal(truth.shape) for _ in range(3)]
    outlier = _sources(3)
    cons = consensus([outlier] + near)
    assert cons.central in (1, 2, 3)
    # two of the three others match at |r| ~ 0.92, the outlier at ~ 0
    np.testing.assert_allclose(cons.stability, 2 / 3 * 0.92, atol=0.05)
    # one component replaced by noise in all other restarts: only that one is unstable
    broken = [np.column_stack([n[:, :3], rng.standard_normal(len(n))]) for n in near[1:]]
    cons = consensus([near[0]] + broken)
    assert cons.stability[:3].min() > 0.8 and cons.stability[3] < 0.2


def test_weight_zero_restart_is_ignored_and_one_restart_gives_nan():
    s = _sources(0)
    cons = consensus([s, _sources(5), s], weights=np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(cons.stability, 1.0)
    assert cons.central in (0, 2)
    single = consensus([s])
    assert single.central == 0 and np.isnan(single.stability).all() and np.isnan(single.agreement)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one"):
        consensus([])
    with pytest.raises(ValueError, match="shape"):
        consensus([_sources(0), _sources(0, k=3)])


def test_collinear_time_courses_warn():
    s = _sources(0)
    tc = np.column_stack([s, s[:, 0] + 0.1 * s[:, 1]])
    with pytest.warns(CollinearityWarning, match="1-5"):
        hits = warn_collinear(tc)
    assert [(a, b) for a, b, _ in hits] == [(0, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)
        assert warn_collinear(s) == []
