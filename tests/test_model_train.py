"""Training loop: determinism, checkpoint save / load / resume, divergence, the posterior."""
import math

import numpy as np
import pytest
import torch

from trends_ivae.estimators.nn import IVAEConfig, IVAEModel, TrainConfig, TrainRun, fit_restarts, train_model
from trends_ivae.estimators.nn import train as train_mod
from trends_ivae.simulate import make_segment_data


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    X = torch.from_numpy((d.X - d.X.mean(0)) / d.X.std(0))
    U = torch.from_numpy(d.u).float()[:, None]             # a discrete u: level indices (N, 1)
    return X, U


MC = IVAEConfig(n_features=2, n_components=2, n_aux=6, hidden_dim=16)
TC = TrainConfig(max_epochs=4, batch_size=64, patience=100)


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_numbers(data):
    X, U = data
    a = train_model(MC, TC, X, U, TrainRun(seed=3))
    b = train_model(MC, TC, X, U, TrainRun(seed=3))
    c = train_model(MC, TC, X, U, TrainRun(seed=4))
    assert _same_state(a.model, b.model)
    assert a.history == b.history
    assert not _same_state(a.model, c.model)


def test_checkpoint_resume_equals_uninterrupted(data, tmp_path, monkeypatch):
    X, U = data
    full = train_model(MC, TC, X, U, TrainRun(seed=5))
    ckpt = tmp_path / "run.pt"
    original = train_mod.save_checkpoint

    def crash_after_two(path, state):
        original(path, state)
        if state.epoch == 2:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_model(MC, TC, X, U, TrainRun(seed=5, checkpoint_path=ckpt))
    monkeypatch.setattr(train_mod, "save_checkpoint", original)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and {"model", "optimizer", "config", "step"} <= state.keys()
    assert IVAEConfig.from_dict(state["config"]) == MC
    resumed = train_model(MC, TC, X, U, TrainRun(seed=5, checkpoint_path=ckpt))
    assert resumed.n_epochs == full.n_epochs == 4
    assert resumed.history == full.history
    assert _same_state(resumed.model, full.model)


def test_checkpoint_rebuilds_model(data, tmp_path):
    X, U = data
    ckpt = tmp_path / "c.pt"
    res = train_model(MC, TC, X, U, TrainRun(seed=1, checkpoint_path=ckpt))
    state = torch.load(ckpt, weights_only=True)
    model = IVAEModel(IVAEConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    assert TrainConfig.from_dict(state["train_config"]) == TC
    assert set(model.state_dict()) == set(res.model.state_dict())


def test_diverging_restart_is_reported_and_not_nan(data, caplog):
    X, U = data
    tc = TrainConfig(max_epochs=3, batch_size=64, lr=1e3, grad_clip=1e9)
    with caplog.at_level("WARNING"):
        results = fit_restarts(MC, tc, X, U, TrainRun(seed=0), n_init=1)
    res = results[0]
    if res.diverged:
        assert "diverged" in caplog.text
        assert res.best_val_elbo == -math.inf or math.isfinite(res.best_val_elbo)
    else:                                                   # the retry at lr/4 recovered
        assert "diverged" in caplog.text and math.isfinite(res.best_val_elbo)
        for p in res.model.parameters():
            assert torch.isfinite(p).all()


@pytest.mark.parametrize("prior", ["gauss", "laplace"])
def test_full_posterior_kl_matches_torch(prior):
    torch.manual_seed(0)
    m = IVAEModel(IVAEConfig(n_features=4, n_components=3, n_aux=5, prior=prior, posterior="full"))
    x = torch.randn(6, 4)
    u = torch.randint(0, 5, (6, 1)).float()
    mu, logvar, off = m.encode_full(x, u)
    L = m._cholesky(logvar, off)
    marg = m.encode(x, u)[1].exp()
    assert torch.allclose(marg, torch.diagonal(L @ L.transpose(1, 2), dim1=1, dim2=2), atol=1e-5)
    if prior == "gauss":
        _, kl = m.elbo_terms(x, u, generator=torch.Generator().manual_seed(0))
        loc, log_scale = m.prior.params(u)
        q = torch.distributions.MultivariateNormal(mu, scale_tril=L)
        p = torch.distributions.MultivariateNormal(loc, scale_tril=torch.diag_embed(log_scale.exp()))
        assert torch.allclose(kl, torch.distributions.kl_divergence(q, p), atol=1e-4)


def test_diag_and_full_agree_without_correlations():
    torch.manual_seed(0)
    cfg = IVAEConfig(n_features=3, n_components=3, n_aux=4, posterior="full")
    m = IVAEModel(cfg)
    with torch.no_grad():                                   # zero the off-diagonal outputs
        m.encoder.net[-1].weight[6:] = 0
        m.encoder.net[-1].bias[6:] = 0
    x, u = torch.randn(5, 3), torch.tensor([[0], [1], [2], [3], [0]]).float()
    mu, logvar = m.encode(x, u)
    kl_diag = m.prior.kl_from_gaussian(mu, logvar, u, mu).sum(-1)
    _, kl_full = m.elbo_terms(x, u, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(kl_diag, kl_full, atol=1e-5)


def test_bad_posterior_name():
    with pytest.raises(ValueError, match="posterior"):
        IVAEConfig(n_features=2, n_components=2, n_aux=2, posterior="banded")


def test_restart_race_continues_only_the_best_restart(data):
    X, U = data
    tc = TrainConfig(max_epochs=5, batch_size=64, patience=100)
    results = fit_restarts(MC, tc, X, U, TrainRun(seed=0), n_init=3, init_epochs=2)
    epochs = [r.n_epochs for r in results]
    assert sorted(epochs) == [2, 2, 5]
    winner = epochs.index(5)
    race = [max(r.history["val_elbo"][:2]) for r in results]
    assert race[winner] == max(race)                         # the best held-out ELBO after the race
    assert all(r.resume_state is None for r in results)
    # the winner continues exactly as an uninterrupted run with the same seed would
    alone = train_model(MC, tc, X, U, TrainRun(seed=results[winner].seed, split_seed=0))
    assert alone.history == results[winner].history
    assert _same_state(alone.model, results[winner].model)


def test_restart_race_resumes_from_checkpoints(data, tmp_path):
    X, U = data
    tc = TrainConfig(max_epochs=4, batch_size=64, patience=100)
    a = fit_restarts(MC, tc, X, U, TrainRun(seed=1), n_init=2, init_epochs=1)
    b = fit_restarts(MC, tc, X, U, TrainRun(seed=1), n_init=2, init_epochs=1, checkpoint_dir=tmp_path)
    c = fit_restarts(MC, tc, X, U, TrainRun(seed=1), n_init=2, init_epochs=1, checkpoint_dir=tmp_path)  # all done
    for ra, rb, rc in zip(a, b, c):
        assert ra.n_epochs == rb.n_epochs == rc.n_epochs
        assert ra.history == rb.history == rc.history
        assert _same_state(ra.model, rb.model) and _same_state(ra.model, rc.model)


def test_iwae_bound_is_above_the_elbo_on_average():
    torch.manual_seed(0)
    m = IVAEModel(IVAEConfig(n_features=4, n_components=3, n_aux=5, decoder_var=0.1))
    x = torch.randn(2000, 4)
    u = torch.randint(0, 5, (2000, 1))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = m.elbo(x, u, generator=g).mean()
        k1 = m.iwae(x, u, 1, generator=g).mean()
        k8 = m.iwae(x, u, 8, generator=g).mean()
    assert abs(float(k1 - elbo)) < 0.05 * abs(float(elbo))  # K = 1: the ELBO with a sampled KL
    assert k8 > elbo


def test_iwae_training_runs(data):
    X, U = data
    res = train_model(MC, TrainConfig(max_epochs=2, batch_size=64, n_iwae=4), X, U, TrainRun(seed=0))
    assert not res.diverged and math.isfinite(res.best_val_elbo)
