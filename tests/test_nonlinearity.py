"""The held-out nonlinearity test: "helps" on nonlinear mixtures, "no evidence" on linear
ones, "untestable" where subjects cannot be held out."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trends_ivae import IVAE
from trends_ivae.estimators.flow import IFlow
from trends_ivae.group.nonlinearity import NonlinearityTest, held_out_test, linear_counterpart
from trends_ivae.simulate import make_segment_data


def _data(n_layers: int, seed: int = 7):
    d = make_segment_data(n_sources=3, n_obs=3, n_segments=20, n_per_segment=200, n_layers=n_layers,
                          noise_std=0.05, random_state=seed)
    groups = np.arange(d.X.shape[0]) % 8          # 8 "subjects", each seeing every segment
    return d.X, d.u, groups


def _vae(**kw):
    kw = {"encoder_uses_aux": False, "max_epochs": 25, **kw}
    return IVAE(3, batch_size=256, random_state=0, decoder_var=None, n_iwae=1,
                decoder_var_start=None, **kw)


@pytest.mark.parametrize("make", [_vae, lambda: IFlow(3, random_state=0, batch_size=512)], ids=["vae", "flow"])
def test_helps_on_nonlinear_mixing_and_not_on_linear(make):
    X, u, g = _data(n_layers=3)
    res = held_out_test(make(), X, u, g, random_state=0)
    assert res.verdict == "helps", res.summary()
    assert res.ci_low > res.margin > 0
    assert len(res.group_differences) == 8 and res.nonlinear_score > res.linear_score
    assert "better by" in res.summary()
    X, u, g = _data(n_layers=1)
    res = held_out_test(make(), X, u, g, random_state=0)
    assert res.verdict == "no evidence", res.summary()
    assert "no evidence" in res.summary() and abs(res.difference) < res.margin


def test_untestable_cases_say_why():
    X, u, g = _data(n_layers=1)
    res = held_out_test(_vae(), X, u, np.zeros(len(u)), random_state=0)
    assert res.verdict == "untestable" and "two subjects" in res.reason
    # new u levels in held-out subjects need an encoder without u
    res = held_out_test(_vae(encoder_uses_aux=True), X, g, g, random_state=0)
    assert res.verdict == "untestable" and "encoder" in res.summary()


def test_new_levels_of_held_out_subjects_are_folded_in():
    # u = a per-subject segment label (like sliding windows): no held-out level was seen
    X, u, g = _data(n_layers=3)
    own = np.char.add(g.astype(str), np.char.add("_", u.astype(str)))
    res = held_out_test(_vae(), X, own, g, random_state=0)
    assert res.verdict == "helps", res.summary()
    X, u, g = _data(n_layers=1)
    own = np.char.add(g.astype(str), np.char.add("_", u.astype(str)))
    res = held_out_test(IFlow(3, random_state=0, batch_size=512), X, own, g, random_state=0)
    assert res.verdict == "no evidence", res.summary()


def test_linear_counterpart_is_affine_and_to_dict_is_json():
    X, u, _ = _data(n_layers=3)
    lin = linear_counterpart(_vae()).fit(X[:2000], u[:2000])
    J = lin.decoder_jacobian(np.random.default_rng(0).normal(size=(50, 3)), reduce=None)
    assert np.allclose(J, J[:1], atol=1e-5)           # constant Jacobian: an affine decoder
    assert linear_counterpart(IFlow(3)).transforms == 0
    with pytest.raises(ValueError, match="vanilla"):
        linear_counterpart(_vae(prior="normal"))
    res = NonlinearityTest("helps", difference=0.5, ci_low=0.4, ci_high=0.6, margin=0.03,
                           group_differences=[0.4, 0.6], groups=["01", "02"])
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["verdict"] == "helps" and out["summary"].startswith("the nonlinear model explains")


def test_score_samples_matches_score_for_the_flow():
    X, u, _ = _data(n_layers=2)
    m = IFlow(3, random_state=0, max_epochs=2).fit(X, u)
    assert np.isclose(m.score_samples(X, u).mean(), m.score(X, u), rtol=1e-5)


def test_fit_command_reports_the_test(tmp_path, capsys):
    from pathlib import Path

    from trends_ivae.cli.main import main

    bids = Path(__file__).resolve().parents[1] / "sample_data" / "bids"
    out = tmp_path / "out"
    assert main(["fit", "--bids", str(bids), "--out", str(out), "--n-components", "3", "--n-init", "1",
                 "--max-epochs", "15", "--nonlinearity-test", "-q"]) == 0
    printed = capsys.readouterr().out
    side = json.loads((out / "group" / "desc-ivae_components.json").read_text())["NonlinearityTest"]
    config = json.loads((out / "model" / "config.json").read_text())["results"]["nonlinearity_test"]
    assert side == config and side["verdict"] in ("helps", "no evidence", "linear better")
    assert len(side["groups"]) == 4 and side["grouping"] == "subject"
    assert f"nonlinearity test: {side['summary']}" in printed
    assert side["summary"] in (out / "report.html").read_text()


def test_the_verdict_says_what_the_data_say_both_ways():
    from trends_ivae.group.nonlinearity import verdict_of

    # six held-out subjects all favouring the linear model (the real resting-state case)
    assert verdict_of(-9.6, -19.0, -0.19, margin=0.3) == "linear better"
    assert verdict_of(9.6, 0.19, 19.0, margin=0.3) == "helps"          # the mirror image
    assert verdict_of(-0.1, -0.15, -0.05, margin=0.3) == "no evidence"  # real but negligible
    assert verdict_of(0.1, 0.05, 0.15, margin=0.3) == "no evidence"
    assert verdict_of(-5.0, -12.0, 2.0, margin=0.3) == "no evidence"    # the interval crosses zero
    res = NonlinearityTest("linear better", difference=-9.6, ci_low=-19.0, ci_high=-0.19, margin=0.3,
                           group_differences=[-1.8, -21.3, -5, -8, -10, -11.5], groups=list("123456"))
    assert res.summary().startswith("linear ICA with the same prior explains held-out subjects better")
    assert "no evidence" not in res.summary() and "9.6 nats per volume" in res.summary()


class _ScoresByGroup:
    """A stand-in estimator whose held-out score of a row is a fixed number per group
    (column 0 of X holds the group); the linear counterpart scores 0."""

    def __init__(self, per_group=None):
        self.per_group = per_group

    def fit(self, X, u):
        return self

    def score_samples(self, X, u, n_importance=1):
        if self.per_group is None:
            return np.zeros(len(X))
        return np.array([self.per_group[int(k)] for k in X[:, 0]])


def test_held_out_test_says_linear_better_when_every_subject_favours_linear(monkeypatch):
    from trends_ivae.group import nonlinearity

    # per subject: nonlinear - linear, nats per volume (the real case: -1.8 to -21.3)
    per_group = {0: -1.8, 1: -21.3, 2: -2.0, 3: -3.0, 4: -9.5, 5: -20.0}
    groups = np.repeat(np.arange(6), 20)
    X = np.column_stack([groups, np.zeros((groups.size, 29))]).astype(float)   # 30 dims: margin 0.3
    u = np.tile(np.arange(10), 12)
    monkeypatch.setattr(nonlinearity, "clone", lambda est: _ScoresByGroup(per_group))
    monkeypatch.setattr(nonlinearity, "linear_counterpart", lambda est: _ScoresByGroup())
    res = nonlinearity.held_out_test(_vae(), X, u, groups, random_state=0)
    assert res.verdict == "linear better", res.summary()
    assert res.ci_high < 0 and -res.ci_high < res.margin     # inside the margin: "no evidence" before
    assert res.summary().startswith("linear ICA with the same prior explains held-out subjects better")
    # the mirror image says "helps"
    monkeypatch.setattr(nonlinearity, "clone", lambda est: _ScoresByGroup({k: -v for k, v in per_group.items()}))
    assert nonlinearity.held_out_test(_vae(), X, u, groups, random_state=0).verdict == "helps"


def test_identifiability_warning_once_per_test():
    import warnings

    from trends_ivae.estimators.aux_codes import IdentifiabilityWarning

    X, u, g = _data(n_layers=1)
    poor = u % 3                                     # 3 levels < 2 * 3 + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held_out_test(_vae(max_epochs=1), X, poor, g, random_state=0)
    said = [w for w in caught if issubclass(w.category, IdentifiabilityWarning)]
    assert len(said) == 1 and "nonlinearity test" in str(said[0].message)      # 4 fits, said once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held_out_test(_vae(max_epochs=1), X, poor, g, random_state=0, warn_identifiability=False)
    assert not [w for w in caught if issubclass(w.category, IdentifiabilityWarning)]


def test_fit_with_the_test_gives_the_identifiability_warning_once(tmp_path):
    import warnings
    from pathlib import Path

    from trends_ivae.cli.main import main
    from trends_ivae.estimators.aux_codes import IdentifiabilityWarning

    bids = Path(__file__).resolve().parents[1] / "sample_data" / "bids"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--bids", str(bids), "--out", str(tmp_path / "out"), "--aux", "task",   # 4 levels
                     "--n-components", "3", "--n-init", "1", "--max-epochs", "4", "--nonlinearity-test",
                     "--no-report", "-q"]) == 0
    said = [str(w.message) for w in caught if issubclass(w.category, IdentifiabilityWarning)]
    assert len(said) == 1, said                       # the fit's; not again for each of the test's 4 fits
    assert "add sliding windows (--aux task+window)" in said[0]
