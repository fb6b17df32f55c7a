"""The consensus linear start (``linear_restarts`` / ``n_restarts``, issue 20): the most
central of several FastICA runs, so that the start depends less on the seed."""
from __future__ import annotations

import numpy as np
import pytest

from trends_ivae.estimators.ivae import IVAE
from trends_ivae.estimators.linear_start import fastica_unmixing, linear_start
from trends_ivae.metrics import mcc


def _mixture(n: int = 2000, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(n, k))
    A = rng.normal(size=(k, k)) + 2 * np.eye(k)
    return s @ A.T, s


def test_central_restart_recovers_the_sources_with_unit_variance():
    X, s = _mixture()
    W, b = fastica_unmixing(X, 4, random_state=3, n_restarts=5)
    y = X @ W.T + b
    assert W.shape == (4, 4)
    np.testing.assert_allclose(y.std(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-8)
    assert mcc(y, s).score > 0.95


def test_central_restart_is_one_of_the_runs_and_seeded():
    X, _ = _mixture(seed=1)
    W1, _ = fastica_unmixing(X, 4, random_state=7, n_restarts=4)
    W2, _ = fastica_unmixing(X, 4, random_state=7, n_restarts=4)
    np.testing.assert_array_equal(W1, W2)
    seeds = np.random.default_rng(7).integers(2**31 - 1, size=4).tolist()
    singles = [fastica_unmixing(X, 4, random_state=s)[0] for s in seeds]
    assert any(np.allclose(W1, W) for W in singles)


def test_linear_start_passes_restarts_and_rejects_zero():
    X, _ = _mixture(seed=2)
    st = linear_start(X, None, 4, method="fastica", random_state=0, n_restarts=3)
    assert st.method == "fastica" and st.unmixing.shape == (4, 4)
    with pytest.raises(ValueError, match="n_restarts"):
        linear_start(X, None, 4, n_restarts=0)


def test_ivae_linear_restarts_fits_and_checks():
    X, _ = _mixture(n=400, k=3, seed=4)
    u = np.repeat(np.arange(8), 50)
    est = IVAE(3, linear_restarts=3, max_epochs=1, hidden_dim=8, device="cpu", random_state=0).fit(X, u)
    assert est.transform(X, u).shape == (400, 3)
    assert est.get_params()["linear_restarts"] == 3
    with pytest.raises(ValueError, match="linear_restarts"):
        IVAE(3, linear_restarts=0, device="cpu").fit(X, u)
