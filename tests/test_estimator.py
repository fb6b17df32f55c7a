"""The array-level IVAE: recovery, determinism, save / load, bad input."""
import warnings

import numpy as np
import pytest

from trends_ivae import IVAE
from trends_ivae.estimators.ivae import IdentifiabilityWarning
from trends_ivae.metrics import mcc
from trends_ivae.simulate import make_segment_data

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


FAST = dict(max_epochs=2, batch_size=64, hidden_dim=16, random_state=0)


@pytest.fixture(scope="module")
def tiny():
    return make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                             n_draws_for_threshold=50)


@pytest.fixture(scope="module")
def fitted(tiny):
    return IVAE(2, n_init=2, **FAST).fit(tiny.X, tiny.u)


def test_recovery_ivae_above_vanilla_vae():
    # n=3 sources, 2 mixing layers, 20 segments: seeded, about 4 s per model on one core
    d = make_segment_data(n_sources=3, n_segments=20, n_per_segment=200, n_layers=2, random_state=1,
                          n_draws_for_threshold=500)
    # both from random starts (the vanilla VAE never takes the linear-ICA start, which uses u)
    kw = dict(max_epochs=60, batch_size=64, patience=100, random_state=0, init="random")
    ivae = IVAE(3, **kw).fit(d.X, d.u)
    vae = IVAE(3, prior="normal", **kw).fit(d.X, d.u)
    m_ivae = mcc(ivae.transform(d.X, d.u), d.S).score
    m_vae = mcc(vae.transform(d.X, d.u), d.S).score
    # defaults (IWAE K=4, decoder variance annealed): iVAE 0.945, vanilla VAE 0.851 here
    assert m_ivae > 0.9
    assert m_ivae > m_vae + 0.08


def test_fitted_attributes(fitted, tiny):
    est = fitted
    assert est.transform(tiny.X, tiny.u).shape == (600, 2)
    assert est.inverse_transform(np.zeros((3, 2))).shape == (3, 2)
    assert np.isfinite(est.elbo_) and len(est.restart_elbos_) == 2
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    assert est.stability_.shape == (2,) and np.all((est.stability_ >= 0) & (est.stability_ <= 1))
    assert 0 <= est.restart_agreement_ <= 1
    assert np.isfinite(est.score(tiny.X, tiny.u))
    X, Z = est.sample(tiny.u[:10], random_state=0)
    assert X.shape == (10, 2) and Z.shape == (10, 2)
    mean, var = est.prior_params(np.arange(6))
    assert mean.shape == var.shape == (6, 2) and np.all(var > 0)
    assert est.decoder_jacobian(est.transform(tiny.X[:20], tiny.u[:20])).shape == (2, 2)


def test_same_random_state_same_numbers(tiny):
    a = IVAE(2, **FAST).fit(tiny.X, tiny.u).transform(tiny.X, tiny.u)
    b = IVAE(2, **FAST).fit(tiny.X, tiny.u).transform(tiny.X, tiny.u)
    c = IVAE(2, **{**FAST, "random_state": 1}).fit(tiny.X, tiny.u).transform(tiny.X, tiny.u)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_round_trip(fitted, tiny, tmp_path):
    fitted.reorder([1, 0], [1, -1])
    try:
        path = tmp_path / "model.pt"
        fitted.save(path)
        back = IVAE.load(path, device="cpu")
        np.testing.assert_array_equal(back.transform(tiny.X, tiny.u), fitted.transform(tiny.X, tiny.u))
        assert back.score(tiny.X, tiny.u) == pytest.approx(fitted.score(tiny.X, tiny.u))
        assert back.get_params() == {**fitted.get_params(), "device": "cpu"}
        assert back.elbo_ == fitted.elbo_
    finally:
        fitted.reorder([1, 0], [-1, 1])


def test_model_file_with_the_removed_annealing_options_still_loads(fitted, tiny, tmp_path):
    """Files written while IVAE had kl_start and entropy_start (inactive, removed) load; the keys are ignored."""
    import torch

    from trends_ivae.estimators.nn import TrainConfig

    path = tmp_path / "old.pt"
    fitted.save(path)
    state = torch.load(path, weights_only=True)
    state["params"].update(kl_start=1.0, entropy_start=1.0)
    state["train_config"].update(kl_start=1.0, entropy_start=1.0)
    torch.save(state, path)
    back = IVAE.load(path, device="cpu")
    assert "kl_start" not in back.get_params() and "entropy_start" not in back.get_params()
    assert back._train_config == TrainConfig.from_dict(state["train_config"])
    np.testing.assert_array_equal(back.transform(tiny.X, tiny.u), fitted.transform(tiny.X, tiny.u))


def test_load_rejects_other_files(tmp_path):
    import torch
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a trends_ivae IVAE"):
        IVAE.load(tmp_path / "other.pt")
    torch.save({"format": "trends_ivae.Unknown"}, tmp_path / "unknown.pt")
    from trends_ivae.estimators.base import SourceEstimator
    with pytest.raises(ValueError, match=r"unknown\.pt.*not a trends_ivae SourceEstimator file.*'trends_ivae\.Unknown'"):
        SourceEstimator.load(tmp_path / "unknown.pt")


def test_every_model_file_loads_through_the_base_class_alone(fitted, tiny, tmp_path):
    """The base class knows each format from the registry: a process that imports only
    ``trends_ivae.estimators.base`` loads an IVAE file and an IFlow file."""
    import subprocess
    import sys

    from trends_ivae import IFlow

    fitted.save(tmp_path / "ivae.pt")
    IFlow(2, transforms=1, max_epochs=1, linear_epochs=1, batch_size=64, hidden_dim=8,
          random_state=0).fit(tiny.X, tiny.u).save(tmp_path / "flow.pt")
    code = ("import sys\n"
            "from trends_ivae.estimators.base import SourceEstimator\n"
            "for path in sys.argv[1:]:\n"
            "    print(type(SourceEstimator.load(path, device='cpu')).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ivae.pt"), str(tmp_path / "flow.pt")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["IVAE", "IFlow"]


def test_checkpoint_dir_resume(tiny, tmp_path):
    a = IVAE(2, **FAST).fit(tiny.X, tiny.u, checkpoint_dir=tmp_path)
    assert (tmp_path / "restart00.pt").exists()
    b = IVAE(2, **FAST).fit(tiny.X, tiny.u, checkpoint_dir=tmp_path)   # resumes from the finished run
    np.testing.assert_array_equal(a.transform(tiny.X, tiny.u), b.transform(tiny.X, tiny.u))


# ----------------------------------------------------------------- bad input
def test_rows_mismatch(tiny):
    with pytest.raises(ValueError, match="same number of rows"):
        IVAE(2, **FAST).fit(tiny.X, tiny.u[:-1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(tiny, bad):
    X = tiny.X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        IVAE(2, **FAST).fit(X, tiny.u)


def test_too_many_components(tiny):
    with pytest.raises(ValueError, match="larger than the number of features"):
        IVAE(3, **FAST).fit(tiny.X, tiny.u)


def test_fewer_samples_than_a_batch(tiny):
    with pytest.raises(ValueError, match="fewer than one batch"):
        IVAE(2, **{**FAST, "batch_size": 1000}).fit(tiny.X, tiny.u)


def test_too_few_u_levels_warns(tiny):
    u = tiny.u % 3                                           # 3 levels < 2 * 2 + 1
    with pytest.warns(IdentifiabilityWarning, match="may not be identifiable"):
        IVAE(2, **FAST).fit(tiny.X, u)


def test_enough_u_levels_do_not_warn(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        IVAE(2, **FAST).fit(tiny.X, tiny.u)


def test_transform_checks(fitted, tiny):
    with pytest.raises(ValueError, match="features"):
        fitted.transform(np.zeros((5, 3)), tiny.u[:5])
    with pytest.raises(ValueError, match="not seen during fit"):
        fitted.transform(tiny.X[:2], np.array([0, 99]))
    with pytest.raises(ValueError, match="not fitted"):
        IVAE(2).transform(tiny.X, tiny.u)


def test_diverging_fit_never_returns_nan(tiny):
    est = IVAE(2, **{**FAST, "lr": 1e3, "grad_clip": 1e9, "n_init": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            est.fit(tiny.X, tiny.u)
        except RuntimeError as err:                          # every restart diverged: said so
            assert "diverged" in str(err)
            return
    assert np.all(np.isfinite(est.transform(tiny.X, tiny.u)))
    assert np.isfinite(est.elbo_)


def test_restart_race_option(tiny):
    est = IVAE(2, n_init=3, init_epochs=1, n_iwae=2, **{**FAST, "max_epochs": 3}).fit(tiny.X, tiny.u)
    assert est.n_iter_ == 3 and est.restart_elbos_.shape == (3,)
    assert np.isfinite(est.restart_elbos_).all()
    assert est.elbo_ == est.restart_elbos_.max()


@pytest.mark.parametrize("kw", [dict(init_epochs=0), dict(n_iwae=0)])
def test_bad_race_or_iwae(tiny, kw):
    with pytest.raises(ValueError):
        IVAE(2, **FAST, **kw).fit(tiny.X, tiny.u)
