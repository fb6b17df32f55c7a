"""u as integer indices of its one-hot layout (N, F), never a dense one-hot: the model on
indices is the model on the one-hot; IVAE with 1-D labels and with a DataFrame of
factors; GroupIVAE passes concatenated factors as factors."""
from __future__ import annotations

import copy
import dataclasses
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from trends_ivae import IVAE
from trends_ivae.estimators import ivae as estimator_mod
from trends_ivae.metrics import mcc
from trends_ivae.estimators.nn import IVAEConfig, IVAEModel
from trends_ivae.estimators.nn.priors import LOG_SCALE_MAX, LOG_SCALE_MIN
from trends_ivae.simulate import make_segment_data


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _onehot(idx: torch.Tensor, width: int) -> torch.Tensor:
    """The dense equivalent of (B, F) column indices: the sum of one-hot rows."""
    out = torch.zeros(idx.shape[0], width)
    out.scatter_add_(1, idx.long(), torch.ones(idx.shape))
    return out


def _dense_discrete(model: IVAEModel) -> IVAEModel:
    """The same weights evaluated as before indices: encoder on [x, one-hot], prior ``u @ table``."""
    ref = copy.deepcopy(model)
    ref.config = dataclasses.replace(model.config, aux_kind="continuous")   # encoder: torch.cat([x, u])

    def params(self, u):
        return u @ self.loc_table, (u @ self.log_scale_table).clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    ref.prior.params = types.MethodType(params, ref.prior)
    return ref


def _randomise(model: IVAEModel, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("prior,posterior", [("gauss", "full"), ("laplace", "diag")])
def test_discrete_indices_give_the_one_hot_model(prior, posterior):
    torch.manual_seed(0)
    L, B = 7, 32
    model = IVAEModel(IVAEConfig(n_features=4, n_components=3, n_aux=L, aux_kind="discrete",
                                 prior=prior, posterior=posterior, hidden_dim=16))
    _randomise(model, 1)
    ref = _dense_discrete(model)
    x = torch.randn(B, 4)
    idx = torch.randint(0, L, (B, 1)).float()
    dense = _onehot(idx, L)
    eps = torch.randn(B, 3)
    for a, b in zip(model.encode_full(x, idx), ref.encode_full(x, dense)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.elbo(x, idx, eps=eps), ref.elbo(x, dense, eps=eps), rtol=1e-5, atol=1e-5)
    k_eps = torch.randn(4, B, 3)
    torch.testing.assert_close(model.iwae(x, idx, 4, eps=k_eps), ref.iwae(x, dense, 4, eps=k_eps),
                               rtol=1e-5, atol=1e-5)
    for a, b in zip(model.prior.variance(idx), ref.prior.variance(dense)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("uses_aux", [True, False])
def test_factor_indices_give_the_concatenated_one_hot_model(uses_aux):
    """aux_kind="factors" on indices == aux_kind="continuous" on the dense one-hot, same weights;
    and so are the gradients."""
    torch.manual_seed(0)
    sizes, B = [3, 5, 4], 40
    cfg = IVAEConfig(n_features=4, n_components=3, n_aux=sum(sizes), aux_kind="factors",
                     encoder_uses_aux=uses_aux, hidden_dim=16)
    model = IVAEModel(cfg).double()                          # float64: only the summation order differs
    _randomise(model, 2)
    dense_model = IVAEModel(dataclasses.replace(cfg, aux_kind="continuous")).double()
    dense_model.load_state_dict(model.state_dict())         # identical parameter shapes
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx = torch.stack([torch.randint(0, s, (B,)) + int(o) for s, o in zip(sizes, offsets)], 1).float()
    dense = _onehot(idx, sum(sizes)).double()
    assert torch.equal(dense.sum(1), torch.full((B,), 3.0, dtype=torch.float64))
    x, eps = torch.randn(B, 4, dtype=torch.float64), torch.randn(B, 3, dtype=torch.float64)
    a, b = model.elbo(x, idx, eps=eps), dense_model.elbo(x, dense, eps=eps)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode(x, idx), dense_model.encode(x, dense), rtol=1e-5, atol=1e-5)
    a.sum().backward()
    b.sum().backward()
    grads = dict(dense_model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-9, atol=1e-9, msg=lambda m: name + m)
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for s, t in zip(model.sample(idx, ga), dense_model.sample(dense, gb)):
        torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-5)


def test_fit_with_many_levels_trains_on_n_by_1_indices(monkeypatch):
    """5000 levels on 10000 rows: u is (N, 1) on the device; no one-hot is ever built."""
    L, N = 5000, 10000
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 4)).astype(np.float32)
    u = np.repeat(np.arange(L), N // L)
    seen = {}
    real = estimator_mod.fit_restarts

    def spy(mc, tc, X, U, **kw):
        seen["U"], seen["config"] = tuple(U.shape), mc
        return real(mc, tc, X, U, **kw)

    def no_one_hot(*a, **k):
        raise AssertionError("a dense one-hot u was built")

    monkeypatch.setattr(estimator_mod, "fit_restarts", spy)
    monkeypatch.setattr(torch.nn.functional, "one_hot", no_one_hot)
    est = IVAE(2, max_epochs=1, batch_size=512, hidden_dim=16, random_state=0, device="cpu").fit(X, u)
    assert seen["U"] == (N, 1)
    assert seen["config"].aux_kind == "discrete" and seen["config"].n_aux == L
    assert est.aux_kind_ == "discrete" and est.n_aux_ == L and len(est.classes_) == L
    assert tuple(est.model_.prior.loc_table.shape) == (L, 2)
    assert est.transform(X[:50], u[:50]).shape == (50, 2)
    mean, var = est.prior_params(est.classes_[:3])
    assert mean.shape == var.shape == (3, 2)


@pytest.fixture(scope="module")
def two_factors():
    """Segment data whose 10 segments are the combinations of two factors (5 blocks x 2 halves)."""
    d = make_segment_data(n_sources=2, n_segments=10, n_per_segment=150, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    df = pd.DataFrame({"block": [f"b{s // 2}" for s in d.u], "half": d.u % 2})
    return d, df


FIT = dict(max_epochs=25, batch_size=64, hidden_dim=16, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def factor_fit(two_factors):
    d, df = two_factors
    return IVAE(2, **FIT).fit(d.X, df)


def test_factors_recover_the_sources_like_their_dense_one_hot(two_factors, factor_fit):
    d, df = two_factors
    est = factor_fit
    assert est.aux_kind_ == "factors" and est.classes_ is None
    assert est.factor_names_ == ["block", "half"]
    assert [c.tolist() for c in est.factor_classes_] == [[f"b{i}" for i in range(5)], [0, 1]]
    assert est.factor_offsets_.tolist() == [0, 5] and est.n_aux_ == 7
    dense = pd.get_dummies(df, columns=["block", "half"]).to_numpy(np.float32)   # the same column layout
    est_dense = IVAE(2, **FIT).fit(d.X, dense)
    s_factors = mcc(est.transform(d.X, df), d.S).score
    s_dense = mcc(est_dense.transform(d.X, dense), d.S).score
    assert s_factors > 0.7, s_factors
    assert s_factors >= s_dense - 0.02, (s_factors, s_dense)
    assert abs(est.elbo_ - est_dense.elbo_) < 0.05 * abs(est_dense.elbo_)


def test_factor_save_load_round_trip_and_errors(two_factors, factor_fit, tmp_path):
    d, df = two_factors
    est = factor_fit
    path = tmp_path / "f.pt"
    est.save(path)
    back = IVAE.load(path, device="cpu")
    assert back.aux_kind_ == "factors" and back.factor_names_ == ["block", "half"]
    assert [c.tolist() for c in back.factor_classes_] == [c.tolist() for c in est.factor_classes_]
    np.testing.assert_allclose(back.transform(d.X, df), est.transform(d.X, df), atol=1e-6)
    assert back.score(d.X, df) == pytest.approx(est.score(d.X, df))
    # columns are matched by name; categorical columns by their labels, whatever their categories
    swapped = df[["half", "block"]].astype({"block": pd.CategoricalDtype(["b4", "b3", "b2", "b1", "b0", "bx"])})
    np.testing.assert_allclose(back.transform(d.X, swapped), est.transform(d.X, df), atol=1e-6)
    with pytest.raises(ValueError, match=r"factor 'block' has labels not seen during fit: \['b9'\]"):
        back.transform(d.X[:3], pd.DataFrame({"block": ["b0", "b9", "b1"], "half": [0, 1, 0]}))
    with pytest.raises(ValueError, match="factor 'half' has labels not seen"):
        back.score(d.X[:2], pd.DataFrame({"block": ["b0", "b1"], "half": [0, 2]}))
    with pytest.raises(ValueError, match=r"lacks the factor columns \['half'\]"):
        back.transform(d.X[:2], pd.DataFrame({"block": ["b0", "b1"]}))
    with pytest.raises(ValueError, match="DataFrame"):
        back.transform(d.X[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match="missing labels"):
        IVAE(2, **FIT).fit(d.X, df.assign(half=np.where(np.arange(len(df)) == 3, np.nan, df["half"])))
    mean, var = back.prior_params(df.iloc[:4])
    assert mean.shape == var.shape == (4, 2) and np.all(var > 0)
    Xs, Zs = back.sample(df.iloc[:5], random_state=0)
    assert Xs.shape == (5, 2) and Zs.shape == (5, 2)


def test_streamed_factor_fit_is_the_resident_fit(two_factors, factor_fit):
    d, df = two_factors
    est = IVAE(2, **FIT).fit(d.X, df, stream_rows=256)
    assert est.history_ == factor_fit.history_
    np.testing.assert_allclose(est.transform(d.X, df), factor_fit.transform(d.X, df), atol=1e-6)


def test_identifiability_warning_counts_distinct_factor_rows(two_factors):
    from trends_ivae.estimators.ivae import IdentifiabilityWarning

    d, df = two_factors
    few = pd.DataFrame({"a": d.u % 2, "b": d.u % 2})          # 2 distinct rows < 2 * 2 + 1
    with pytest.warns(IdentifiabilityWarning, match="takes 2 distinct values"):
        IVAE(2, max_epochs=1, batch_size=64, hidden_dim=8, random_state=0, device="cpu").fit(d.X, few)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        IVAE(2, max_epochs=1, batch_size=64, hidden_dim=8, random_state=0, device="cpu").fit(d.X, df)


def test_old_model_files_still_load(two_factors, tmp_path):
    """A file from before factors (no "factors" entry, a discrete model) loads and transforms."""
    d, _ = two_factors
    est = IVAE(2, max_epochs=2, batch_size=64, hidden_dim=8, random_state=0, device="cpu").fit(d.X, d.u)
    path = tmp_path / "old.pt"
    est.save(path)
    state = torch.load(path, weights_only=True)
    del state["factors"]
    torch.save(state, path)
    back = IVAE.load(path, device="cpu")
    assert back.aux_kind_ == "discrete" and back.factor_names_ is None
    np.testing.assert_allclose(back.transform(d.X, d.u), est.transform(d.X, d.u), atol=1e-6)


def test_aux_variable_factors_encode_as_build_aux_concat_columns():
    from trends_ivae.data.auxiliary import RunMeta, build_aux

    runs = [RunMeta(name=f"r{i}", subject=s, run="1", n_volumes=30, tr=2.0) for i, s in enumerate("ab")]
    aux = build_aux("subject+window", runs, window=10)
    assert aux.kind == "factors" and aux.store_kind == "continuous"
    est = IVAE(1)
    est._encode_u(aux, fitting=True, device=torch.device("cpu"))
    idx = est._encode_u(aux, device=torch.device("cpu"))
    assert idx.shape == (60, 2)
    np.testing.assert_array_equal(_onehot(idx, aux.dense().shape[1]).numpy(), aux.dense())
    assert [f"{n}={lv}" for n, c in zip(est.factor_names_, est.factor_classes_) for lv in c] == aux.names
    framed = IVAE(1)   # the DataFrame of the same factors gives the same coding
    framed._encode_u(aux.frame(), fitting=True, device=torch.device("cpu"))
    np.testing.assert_array_equal(framed._encode_u(aux.frame(), device=torch.device("cpu")).numpy(), idx.numpy())
    assert all(np.array_equal(a, b) and a.dtype == b.dtype
               for a, b in zip(framed.factor_classes_, est.factor_classes_))


def test_ivae_fit_on_an_aux_variable_equals_the_dataframe_and_label_paths():
    """The same seed gives the same model from u as an AuxVariable as from its DataFrame of
    factors (factors) or its 1-D codes (labels); new rows in another level order map by name."""
    from trends_ivae.aux_variable import AuxVariable

    d = make_segment_data(n_sources=2, n_obs=3, n_segments=6, n_per_segment=50, n_layers=2, random_state=4)
    kw = dict(max_epochs=3, batch_size=64, hidden_dim=8, random_state=0, device="cpu", n_init=1)
    codes = np.stack([d.u // 2, d.u % 2], axis=1)
    factors = [{"name": "block", "levels": ["b0", "b1", "b2"]}, {"name": "half", "levels": ["h0", "h1"]}]
    u = AuxVariable.from_factors(codes, factors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = IVAE(2, **kw).fit(d.X, u)
        b = IVAE(2, **kw).fit(d.X, u.frame())
    assert a.aux_kind_ == b.aux_kind_ == "factors"
    np.testing.assert_array_equal(a.transform(d.X, u), b.transform(d.X, u.frame()))
    assert a.elbo_ == b.elbo_
    np.testing.assert_array_equal(a.prior_params(u)[0], b.prior_params(u.frame())[0])
    flipped = AuxVariable.from_factors(codes[:, ::-1], factors[::-1])   # the same u, factors swapped
    np.testing.assert_array_equal(a.transform(d.X, flipped), a.transform(d.X, u))
    labels = AuxVariable.discrete(d.u, [f"s{k}" for k in range(6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = IVAE(2, **kw).fit(d.X, labels)
        e = IVAE(2, **kw).fit(d.X, d.u)
    np.testing.assert_array_equal(c.transform(d.X, labels), e.transform(d.X, d.u))
    assert c.aux_kind_ == "discrete"


# ------------------------------------------------------------------ GroupIVAE
@pytest.fixture(scope="module")
def group_fit(tmp_path_factory):
    from trends_ivae import GroupIVAE
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=2, n_task=1,
                                      shape=(10, 12, 10), seed=3))
    bids = write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")
    runs = find_bids_runs(bids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GroupIVAE(n_components=2, aux="task+window", window=20, n_dims=4, n_init=1, ica="temporal",
                          estimator_params={"max_epochs": 3, "batch_size": 16, "encoder_uses_aux": True},
                          random_state=0, device="cpu").fit(runs)
    return model, runs


def test_group_ivae_passes_concatenated_factors_as_factors(group_fit):
    model, runs = group_fit
    p, ivae = model.prepared_, model.estimator_
    assert p.aux["combine"] == "concat" and p.u_kind == "continuous"
    assert ivae.aux_kind_ == "factors" and ivae.model_.config.aux_kind == "factors"
    assert ivae.factor_names_ == ["task", "window"]
    assert [c.tolist() for c in ivae.factor_classes_] == [f["levels"] for f in p.aux["factors"]]
    assert ivae.n_aux_ == len(p.u_names) == p.u.shape[1]     # the dense layout, never built for the model
    # transform and score of a run build the same factor form from its events
    z = model.transform(runs[:1])
    np.testing.assert_allclose(z[0], model.timecourses_[0], atol=1e-3)
    assert np.isfinite(model.score(runs[:1]))


def test_group_ivae_factors_and_the_report_prior(group_fit, tmp_path):
    """The report's prior summary takes the factors from u_factors (model/estimator.pt + prepared.h5)."""
    from trends_ivae.data.store import write_prepared
    from trends_ivae.data.store import read_prepared
    from trends_ivae.report.results import _load_prior

    model, _ = group_fit
    (tmp_path / "model").mkdir()
    model.estimator_.save(tmp_path / "model" / "estimator.pt")
    write_prepared(tmp_path / "prepared.h5", model.prepared_)
    res = types.SimpleNamespace(out_dir=tmp_path, prepared=read_prepared(tmp_path / "prepared.h5"),
                                notes=[], runs=[], subject_run=0, n_components=2)
    prior = _load_prior(res)
    assert prior is not None, res.notes
    names = [f["name"] for f in prior.by_factor]
    assert names == ["task"] and np.isfinite(prior.by_factor[0]["mean"]).all()


def test_distributed_factors_match_one_process(two_factors, tmp_path):
    """Two Gloo ranks build one coding per factor (the union of their labels) and fit as one process."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with Gloo is not available")
    from _distributed_helpers import fit_on_ranks

    d, df = two_factors
    params = dict(n_components=2, max_epochs=3, batch_size=64, hidden_dim=16, random_state=0,
                  device="cpu", n_init=1)
    z = {}
    for world in (1, 2):
        path = tmp_path / f"w{world}.pt"
        fit_on_ranks(d.X, df, params, world, str(path))
        est = IVAE.load(path, device="cpu")
        assert est.aux_kind_ == "factors" and est.factor_offsets_.tolist() == [0, 5]
        z[world] = est.transform(d.X, df)
    np.testing.assert_allclose(z[2], z[1], atol=0.05 * z[1].std())


def test_iflow_fit_on_an_aux_variable_equals_the_dataframe_path():
    from trends_ivae import IFlow
    from trends_ivae.aux_variable import AuxVariable

    d = make_segment_data(n_sources=2, n_obs=2, n_segments=6, n_per_segment=40, n_layers=2, random_state=5)
    u = AuxVariable.from_factors(np.stack([d.u // 2, d.u % 2], axis=1),
                                 [{"name": "block", "levels": ["b0", "b1", "b2"]}, {"name": "half", "levels": ["h0", "h1"]}])
    kw = dict(max_epochs=2, batch_size=64, random_state=0, device="cpu", n_init=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = IFlow(2, **kw).fit(d.X, u)
        b = IFlow(2, **kw).fit(d.X, u.frame())
    assert a.aux_kind_ == b.aux_kind_ == "factors"
    np.testing.assert_array_equal(a.transform(d.X, u), b.transform(d.X, u.frame()))
