"""The decoder's affine path after a linear start (issue 24): trained, frozen or annealed away."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from trends_ivae import IVAE
from trends_ivae.estimators.nn import IVAEConfig, IVAEModel


def _config(**kw) -> IVAEConfig:
    return IVAEConfig(n_features=4, n_components=3, n_aux=5, linear_skip=True, **kw)


def test_bad_affine_path_is_refused():
    with pytest.raises(ValueError, match="affine_path"):
        _config(affine_path="sometimes")


def test_anneal_weight_goes_from_one_to_zero_with_the_training_steps():
    model = IVAEModel(_config(affine_path="anneal", anneal_steps=4))
    x, u = torch.randn(8, 4), torch.randint(0, 5, (8, 1)).float()
    assert float(model.affine_weight()) == 1.0
    model.train()
    for _ in range(2):
        model.elbo_terms(x, u)
    assert float(model.affine_weight()) == pytest.approx(0.5)
    model.eval()
    model.elbo_terms(x, u)                                   # evaluation does not move the clock
    assert float(model.affine_weight()) == pytest.approx(0.5)
    model.train()
    for _ in range(5):
        model.iwae(x, u, 2)
    assert float(model.affine_weight()) == 0.0
    assert "affine_step" in model.state_dict()               # checkpointed: a resumed fit continues the homotopy


def test_frozen_affine_path_stays_at_the_linear_start():
    torch.manual_seed(0)
    model = IVAEModel(_config(affine_path="frozen"))
    W = torch.randn(3, 4)
    model.set_linear_start(W, torch.zeros(3))
    start = model.dec_linear.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, u = torch.randn(32, 4), torch.randint(0, 5, (32, 1)).float()
    for _ in range(5):
        opt.zero_grad()
        (-model.elbo(x, u).mean()).backward()
        opt.step()
    assert torch.equal(model.dec_linear.weight, start)                      # the affine path did not move
    assert model.decoder.net[-1].weight.abs().sum() > 0                     # the nonlinear path did
    assert torch.allclose(start, torch.linalg.pinv(W), atol=1e-5)


@pytest.mark.parametrize("path", ["frozen", "anneal"])
def test_affine_paths_fit_and_never_give_nan(path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3)).astype(np.float32) * np.repeat(rng.uniform(0.3, 2, (4, 3)), 100, axis=0)
    u = np.repeat(np.arange(4), 100)
    est = IVAE(3, affine_path=path, max_epochs=2, batch_size=50, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = est.fit(x, u).transform(x, u)
    assert z.shape == (400, 3) and np.all(np.isfinite(z))
