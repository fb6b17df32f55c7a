"""More dimensions than components cost nothing (issue 24): ``standardize="global"``."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from trends_ivae.group.training import make_estimator
from trends_ivae.metrics import mcc
from trends_ivae.simulate.synthetic import make_segment_data


def _fit_mcc(x, data, **params) -> float:
    est = make_estimator("vae", data.S.shape[1], len(x), n_init=1, params={"max_epochs": 20, **params},
                         random_state=0, device="cpu", n_features=x.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, data.u)
    return mcc(est.transform(x, data.u), data.S).score


@pytest.fixture(scope="module")
def mixed():
    data = make_segment_data(3, n_segments=20, n_per_segment=60, n_layers=2, noise_std=0.1, random_state=3,
                             n_draws_for_threshold=200)
    x = data.X / data.X.std(0)
    noise = 0.3 * np.random.default_rng(4).standard_normal((len(x), 3)).astype(np.float32)
    return data, x, np.hstack([x, noise])


def test_more_dimensions_than_components_get_one_scale():
    est = make_estimator("vae", 3, 1000, n_features=6)
    assert est.get_params()["standardize"] == "global"
    assert make_estimator("vae", 3, 1000, n_features=3).get_params()["standardize"] is True
    assert make_estimator("vae", 3, 1000, n_features=6, params={"standardize": True}).get_params()["standardize"] is True


def test_pure_noise_extra_dimensions_cost_nothing(mixed):
    data, x, x_wide = mixed
    square = _fit_mcc(x, data)
    wide = _fit_mcc(x_wide, data)
    assert square > 0.8                       # the case is recoverable at d = n
    assert wide >= square - 0.02              # and d = 2n with pure-noise dimensions recovers as well


def test_global_scale_keeps_quiet_dimensions_quiet(mixed):
    data, _, x_wide = mixed
    est = make_estimator("vae", 3, len(x_wide), n_init=1, params={"max_epochs": 1}, random_state=0, device="cpu",
                         n_features=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x_wide, data.u)
    assert np.allclose(est.x_scale_, est.x_scale_[0])
    assert np.all(np.isfinite(est.transform(x_wide, data.u)))
