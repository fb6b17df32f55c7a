"""Issue 25's speed and memory changes: the flow's Jacobian and passes, the background import."""
import sys
import threading

import numpy as np
import pytest
import torch

from trends_ivae import IFlow
from trends_ivae.estimators import flow as flow_module
from trends_ivae.estimators.nn import flow_train
from trends_ivae.simulate import make_segment_data
from trends_ivae.workflow.preload import TRAINING_MODULES, preload


@pytest.fixture(scope="module")
def fitted_flow():
    d = make_segment_data(n_sources=3, n_segments=10, n_per_segment=60, n_layers=2, random_state=0)
    m = IFlow(3, max_epochs=2, linear_epochs=1, batch_size=64, hidden_dim=8, init="random", random_state=0, device="cpu")
    return m.fit(d.X, d.u), d


def _finite_differences(m, z, h=1e-4):
    """The decoder's Jacobian by central differences, in float64, in the API's layout (n, k, d)."""
    model = m.model_.double()
    zi = torch.as_tensor(m._internal_from_user(z), dtype=torch.float64)
    k = z.shape[1]
    fd = np.zeros((len(z), k, k))
    with torch.no_grad():
        for j in range(k):
            e = torch.zeros_like(zi)
            e[:, j] = h
            fd[:, :, j] = ((model.decode(zi + e) - model.decode(zi - e)) / (2 * h)).numpy()
    m.model_.float()
    fd = fd[:, :, m.component_order_] * m.component_signs_
    return fd.transpose(0, 2, 1) * m.x_scale_


def test_flow_decoder_jacobian_is_the_decoders_derivative(fitted_flow):
    m, d = fitted_flow
    z = m.transform(d.X, d.u)[:40]
    jac = m.decoder_jacobian(z, reduce=None)
    assert jac.shape == (40, 3, 3)
    err = np.abs(jac - _finite_differences(m, z)) / max(1.0, np.abs(jac).max())
    assert err.max() < 0.02 and np.median(err) < 1e-3   # (differences across a spline knot: the worst ones)
    np.testing.assert_allclose(m.decoder_jacobian(z), jac.mean(0), rtol=1e-5, atol=1e-6)


def test_flow_jacobian_and_inference_are_batched(fitted_flow, monkeypatch):
    m, d = fitted_flow
    z = m.transform(d.X, d.u)
    seen = []
    rows = m._decoder_jacobian_rows
    monkeypatch.setattr(m, "_decoder_jacobian_rows", lambda zi: seen.append(len(zi)) or rows(zi))
    monkeypatch.setattr(flow_module, "JACOBIAN_ROWS", 50)
    whole = m.decoder_jacobian(z, batch_size=10_000)
    assert max(seen) == 50 and sum(seen) == len(z)
    monkeypatch.setattr(flow_module, "INFER_ROWS", 70)
    np.testing.assert_allclose(m.transform(d.X, d.u), z, rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    np.testing.assert_allclose(m.decoder_jacobian(z), whole, rtol=1e-5, atol=1e-6)


def test_held_out_pass_is_the_same_in_any_batch(fitted_flow):
    m, d = fitted_flow
    X = torch.as_tensor((d.X - m.x_mean_) / m.x_scale_, dtype=torch.float32)
    U = m._encode_u(m._check_u(d.u, len(d.X), fitting=False))
    idx = torch.arange(len(X))
    whole = flow_train._mean_loglik(m.model_, X, U, idx, batch=len(X))
    assert flow_train._mean_loglik(m.model_, X, U, idx, batch=37) == pytest.approx(whole, rel=1e-6)
    assert flow_train.EVAL_ROWS <= 4096


def test_preload_imports_in_a_thread_and_never_raises():
    thread = preload(("json", "no_such_module_for_trends_ivae", "csv"))
    assert isinstance(thread, threading.Thread) and thread.daemon
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "json" in sys.modules and "no_such_module_for_trends_ivae" not in sys.modules
    assert TRAINING_MODULES[0] == "torch"


@pytest.mark.parametrize("from_runs", [True, False])
def test_fit_preloads_torch_only_while_it_prepares_runs(from_runs, tmp_path, monkeypatch):
    from trends_ivae.workflow import fit as wfit
    from trends_ivae.workflow import preload as preload_module
    from trends_ivae.workflow.prepare import PrepareRequest

    started = []

    def stop_here(*args, **kwargs):   # the fit itself is not the point: stop after the start
        raise wfit.WorkflowError("stopped")

    monkeypatch.setattr(preload_module, "preload", lambda *a: started.append(a) or threading.Thread())
    monkeypatch.setattr(wfit, "_prepared_data", stop_here)
    data = PrepareRequest(runs=[]) if from_runs else tmp_path / "prepared.h5"
    with pytest.raises(wfit.WorkflowError, match="stopped"):
        wfit.fit_to_folder(data, tmp_path / "out")
    assert len(started) == (1 if from_runs else 0)
    assert not (tmp_path / "out").exists()


def test_preparing_on_two_workers_gives_the_same_bytes(tmp_path):
    from _fmri_fixtures import make_bids
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    runs = find_bids_runs(make_bids(tmp_path / "ds", n_subjects=3, n_runs=1, n_volumes=30))
    out = {}
    for n_jobs in (1, 2):
        out[n_jobs] = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=4, n_jobs=n_jobs))
    for name in ("x", "basis", "singular_values", "scale", "subject", "run"):
        a, b = (np.asarray(getattr(out[j], name)) for j in (1, 2))
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert np.array_equal(out[1].mask_img().get_fdata(), out[2].mask_img().get_fdata())


def test_group_flow_keeps_its_fmri_budget_and_one_restart():
    """IFlow's array defaults (tuned on the paper's square arrays) do not change the flow
    GroupIVAE trains on fMRI rows; the flow and the spatial mode default to one restart."""
    from trends_ivae import GroupIVAE
    from trends_ivae.group.training import GROUP_FLOW_DEFAULTS, default_restarts

    est = GroupIVAE(n_components=4, estimator="flow").build_estimator(48 * 240, n_features=4)
    assert est.n_init == 1 and est.lr == GROUP_FLOW_DEFAULTS["lr"]
    assert est.transforms == GROUP_FLOW_DEFAULTS["transforms"]
    assert est.batch_size == GROUP_FLOW_DEFAULTS["batch_size"]
    assert est.max_epochs >= GROUP_FLOW_DEFAULTS["max_epochs"]
    assert GroupIVAE(n_components=4).build_estimator(48 * 240, n_features=4).n_init == 3
    assert default_restarts("vae", "spatial") == 1 and default_restarts("vae", "temporal") == 3
    assert GroupIVAE(n_components=4, estimator="flow", n_init=2).build_estimator(500).n_init == 2
