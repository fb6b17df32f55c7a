"""MCC against hand-made cases."""
import numpy as np
import pytest

from trends_ivae.metrics import correlation_matrix, mcc


@pytest.fixture
def sources():
    return np.random.default_rng(0).normal(size=(2000, 4))


def test_perfect_recovery_permuted_and_flipped(sources):
    perm = [2, 0, 3, 1]
    recovered = sources[:, perm] * np.array([1, -1, -1, 1]) * 3.0 + 5.0
    res = mcc(recovered, sources)
    assert res.score == pytest.approx(1.0)
    # the matching undoes the permutation: recovered column i is true column perm[i]
    assert dict(zip(res.rows.tolist(), res.cols.tolist())) == dict(enumerate(perm))
    assert np.allclose(np.abs(res.corr), 1.0)
    assert res.corr[1] < 0 and res.corr[0] > 0


def test_independent_noise_is_low(sources):
    noise = np.random.default_rng(1).normal(size=sources.shape)
    assert mcc(noise, sources).score < 0.1


def test_spearman_sees_through_monotone_transforms(sources):
    recovered = np.column_stack([np.exp(sources[:, 1]), sources[:, 0] ** 3, np.tanh(sources[:, 3]),
                                 -np.exp(sources[:, 2])])
    assert mcc(recovered, sources, method="spearman").score == pytest.approx(1.0)
    assert mcc(recovered, sources, method="pearson").score < 0.95


def test_partial_mixing_is_between(sources):
    mixed = sources.copy()
    mixed[:, 0] = sources[:, 0] + sources[:, 1]
    score = mcc(mixed, sources).score
    assert 0.8 < score < 1.0


def test_fewer_recovered_than_true(sources):
    res = mcc(sources[:, :2], sources)
    assert res.score == pytest.approx(1.0) and len(res.rows) == 2


def test_constant_column_correlates_zero(sources):
    a = sources.copy()
    a[:, 0] = 1.0
    c = correlation_matrix(a, sources)
    assert np.all(c[0] == 0)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((5, 2)), np.zeros((6, 2)), "same number of rows"),
    (np.full((5, 2), np.nan), np.zeros((5, 2)), "NaN"),
])
def test_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        mcc(a, b)


def test_bad_method(sources):
    with pytest.raises(ValueError, match="method"):
        mcc(sources, sources, method="kendall")
