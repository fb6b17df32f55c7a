"""The exact-likelihood flow estimator (IFlow), its linear-ICA start and thread setting."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import FastICA

from trends_ivae import IFlow
from trends_ivae.estimators.linear_start import linear_loglik, linear_start
from trends_ivae.metrics import mcc
from trends_ivae.estimators.nn.flow import FlowConfig, FlowModel
from trends_ivae.simulate import make_segment_data


def _fastica_mcc(X, S, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcc(FastICA(S.shape[1], whiten="unit-variance", random_state=seed, max_iter=1000)
                   .fit_transform(X), S).score


@pytest.mark.parametrize("method", ["auto", "fastica", "nsica"])
def test_linear_start_recovers_linear_mixtures_as_well_as_fastica(method):
    d = make_segment_data(n_sources=4, n_segments=20, n_per_segment=300, n_layers=1, random_state=3)
    st = linear_start(d.X, d.u, 4, method=method)
    assert st.unmixing.shape == (4, 4) and st.method in ("fastica", "nsica")
    y = st.transform(d.X)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-4)
    assert mcc(y, d.S).score >= _fastica_mcc(d.X, d.S) - 0.01
    assert mcc(y, d.S).score > 0.97


def test_auto_start_keeps_the_higher_likelihood():
    d = make_segment_data(n_sources=3, n_segments=20, n_per_segment=300, n_layers=2, random_state=4)
    both = {m: linear_start(d.X, d.u, 3, method=m) for m in ("fastica", "nsica")}
    auto = linear_start(d.X, d.u, 3)
    assert auto.loglik == pytest.approx(max(b.loglik for b in both.values()))
    assert auto.loglik == pytest.approx(linear_loglik(auto.transform(d.X), d.u, auto.unmixing))
    with pytest.raises(ValueError, match="discrete u"):
        linear_start(d.X, None, 3, method="nsica")


@pytest.mark.parametrize("architecture", ["elementwise", "autoregressive"])
def test_flow_log_likelihood_is_the_change_of_variables(architecture):
    torch.manual_seed(0)
    model = FlowModel(FlowConfig(n_components=2, n_aux=3, transforms=2, bins=6, hidden_dim=16,
                                 architecture=architecture))
    with torch.no_grad():   # move away from the identity start
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(7, 2) * 2
    u = torch.tensor([0, 1, 2, 0, 1, 2, 0], dtype=torch.float32)[:, None]
    expected = []
    for i in range(7):
        J = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0][0], x[i])
        z = model.encode(x[i:i + 1])[0]
        loc, log_scale = model.prior.params(u[i:i + 1])
        log_pz = torch.distributions.Normal(loc, log_scale.exp()).log_prob(z).sum()
        expected.append(log_pz + torch.linalg.slogdet(J)[1])
    got = model.log_prob(x, u)
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-4, rtol=1e-4)
    # and f = g^{-1}
    torch.testing.assert_close(model.decode(model.encode(x)[0]), x, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("architecture", ["elementwise", "autoregressive"])
def test_flow_starts_at_the_linear_layer(architecture):
    model = FlowModel(FlowConfig(n_components=3, n_aux=2, architecture=architecture))
    W = torch.tensor([[2.0, 0, 0], [0.5, 1, 0], [0, 0, -1]])
    model.set_linear(W, torch.ones(3))
    x = torch.randn(5, 3)
    z, logdet = model.forward_and_logdet(x)
    torch.testing.assert_close(z, x @ W.T + 1, atol=1e-5, rtol=1e-5)
    z0, logdet0 = model.forward_and_logdet(x, splines=False)   # the linear phase's shortcut
    torch.testing.assert_close(z0, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet0, logdet, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet, torch.full((5,), float(np.log(2.0))), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def nonlinear():
    return make_segment_data(n_sources=3, n_segments=20, n_per_segment=400, n_layers=3, random_state=17)


@pytest.fixture(scope="module")
def fitted_flow(nonlinear):
    return IFlow(3, max_epochs=8, linear_epochs=2, batch_size=512, hidden_dim=32, random_state=0,
                 n_init=2).fit(nonlinear.X, nonlinear.u)


def test_flow_recovers_nonlinear_sources_clearly_above_fastica(nonlinear, fitted_flow):
    z = fitted_flow.transform(nonlinear.X, nonlinear.u)
    assert z.shape == nonlinear.S.shape and np.isfinite(z).all()
    assert mcc(z, nonlinear.S).score > _fastica_mcc(nonlinear.X, nonlinear.S) + 0.15
    start = linear_start(nonlinear.X, nonlinear.u, 3)   # and no worse than where it started
    assert mcc(z, nonlinear.S).score >= mcc(start.transform(nonlinear.X), nonlinear.S).score - 0.02
    assert fitted_flow.stability_.shape == (3,) and np.isfinite(fitted_flow.restart_agreement_)
    assert fitted_flow.restart_elbos_.shape == (2,) and np.isfinite(fitted_flow.elbo_)
    assert fitted_flow.score(nonlinear.X, nonlinear.u) == pytest.approx(fitted_flow.elbo_, abs=0.5)


def test_flow_save_load_gives_the_same_transform(tmp_path, nonlinear, fitted_flow):
    path = tmp_path / "flow.pt"
    fitted_flow.save(path)
    back = IFlow.load(path, device="cpu")
    np.testing.assert_array_equal(back.transform(nonlinear.X, nonlinear.u),
                                  fitted_flow.transform(nonlinear.X, nonlinear.u))
    np.testing.assert_allclose(back.inverse_transform(back.transform(nonlinear.X[:50], nonlinear.u[:50])),
                               nonlinear.X[:50], atol=1e-2)
    np.testing.assert_array_equal(back.stability_, fitted_flow.stability_)
    from trends_ivae import IVAE
    with pytest.raises(ValueError, match="not a trends_ivae IVAE file"):
        IVAE.load(path)


def test_flow_bad_input_is_named(nonlinear):
    with pytest.raises(ValueError, match="square"):
        IFlow(2).fit(nonlinear.X, nonlinear.u)
    with pytest.raises(ValueError, match="init must be"):
        IFlow(3, init="pca", max_epochs=1).fit(nonlinear.X, nonlinear.u)


def test_fit_restores_the_callers_thread_setting(nonlinear):
    before = torch.get_num_threads()
    seen = []

    class Spy(IFlow):
        def _select(self, *args, **kwargs):
            seen.append(torch.get_num_threads())
            return super()._select(*args, **kwargs)

    Spy(3, max_epochs=1, linear_epochs=0, batch_size=1024, random_state=0).fit(nonlinear.X, nonlinear.u)
    assert seen == [1]   # a small model trains on one thread by default
    assert torch.get_num_threads() == before
    seen.clear()
    Spy(3, max_epochs=1, linear_epochs=0, batch_size=1024, n_threads=None).fit(nonlinear.X, nonlinear.u)
    assert seen == [before] and torch.get_num_threads() == before


def test_vae_linear_start_stays_at_least_as_good_as_linear_ica_on_linear_data():
    from trends_ivae import IVAE

    d = make_segment_data(n_sources=3, n_segments=20, n_per_segment=200, n_layers=1, random_state=5)
    start = linear_start(d.X, d.u, 3)
    lin = mcc(start.transform(d.X), d.S).score
    est = IVAE(3, init="ica", max_epochs=4, batch_size=256, hidden_dim=16, random_state=0).fit(d.X, d.u)
    assert est.start_method_ in ("fastica", "nsica") and est.model_.config.linear_skip
    assert mcc(est.transform(d.X, d.u), d.S).score >= lin - 0.01
    with pytest.raises(ValueError, match="init must be"):
        IVAE(3, init="pca").fit(d.X, d.u)


def test_vae_set_linear_start_is_the_affine_model():
    from trends_ivae.estimators.nn import IVAEConfig, IVAEModel

    model = IVAEModel(IVAEConfig(n_features=3, n_components=3, n_aux=4, linear_skip=True))
    W, b = torch.randn(3, 3) + 3 * torch.eye(3), torch.randn(3)
    model.set_linear_start(W, b)
    x, u = torch.randn(6, 3), torch.zeros(6, 1)
    torch.testing.assert_close(model.encode(x, u)[0], x @ W.T + b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.decode(x @ W.T + b), x, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="linear_skip"):
        IVAEModel(IVAEConfig(n_features=3, n_components=3, n_aux=4)).set_linear_start(W, b)


def test_loading_an_unusable_model_file_is_a_clear_error_and_runs_nothing(tmp_path, nonlinear, fitted_flow):
    import pickle

    from trends_ivae.estimators.base import SourceEstimator

    good = tmp_path / "good.pt"
    fitted_flow.save(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match="cut.pt.*not a readable trends_ivae model file"):
        SourceEstimator.load(cut)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="evil.pt.*not a readable trends_ivae model file"):
        SourceEstimator.load(evil)
    assert not marker.exists()
