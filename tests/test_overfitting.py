"""Early stopping said honestly: the epoch of the held-out ELBO's peak, its fall after the
peak and the epoch kept, in model/config.json, the summary line and the report."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from trends_ivae.export.fit_outputs import early_stopping, early_stopping_note
from trends_ivae.group.fit_folder import TrainingRecord
from trends_ivae.workflow.fit import summary_line

#: a held-out ELBO that peaks at epoch 11 of 40 and falls by 8 nats per volume
VAL = [-60.0 + 4 * min(e, 11) - 0.4 * max(0, e - 11) for e in range(1, 41)]


def test_the_record_finds_the_peak_the_fall_and_the_kept_epoch():
    rec = early_stopping(VAL, kept=max(VAL), n_dims=10)
    assert rec["peak_epoch"] == 11 and rec["kept_epoch"] == 11 and rec["n_epochs"] == 40
    assert np.isclose(rec["fall_after_peak"], 0.4 * 29) and rec["fell_after_peak"]
    note = early_stopping_note(rec)
    assert "peaked at epoch 11 of 40" in note and "fell by 11.6" in note and "overfits" in note
    assert "epoch-11 model (the peak) is the one kept" in note
    # a curve still rising at the end, or falling by less than the margin, says nothing
    assert not early_stopping(sorted(VAL), kept=max(VAL), n_dims=10)["fell_after_peak"]
    assert early_stopping_note(early_stopping(VAL[:11] + [VAL[10] - 0.05, VAL[10] - 0.03], n_dims=10)) == ""


def test_summary_line_says_the_held_out_elbo_fell_after_its_peak():
    est = SimpleNamespace(n_init=1, history_={"train_elbo": list(np.linspace(-60, 10, 40)), "val_elbo": VAL},
                          elbo_=max(VAL), restart_elbos_=[max(VAL)], n_iter_=40, device_="cpu",
                          n_features_in_=10, get_params=lambda: {})
    model = SimpleNamespace(estimator_=est, restart_agreement_=float("nan"), elbo_=max(VAL),
                            total_explained_variance_=0.5)
    line = summary_line(model, SimpleNamespace(n_subjects=2, runs=[{}, {}]), 3)
    assert "held-out ELBO per volume -16.00 (data units, epoch 11 of 40)" in line
    assert "peaked at epoch 11 of 40" in line and "fell by 11.6" in line
    rising = SimpleNamespace(**{**vars(est), "history_": {"train_elbo": [], "val_elbo": sorted(VAL)}})
    line = summary_line(SimpleNamespace(**{**vars(model), "estimator_": rising}),
                        SimpleNamespace(n_subjects=2, runs=[{}, {}]), 3)
    assert "epoch 40 of 40" in line and "fell" not in line


def test_training_record_goes_into_config(tmp_path):
    rec = TrainingRecord(params={}, history={"train_elbo": VAL, "val_elbo": VAL}, restart_elbos=[max(VAL)],
                         n_epochs=40, device="cpu", elbo=max(VAL), n_dims=10)
    out = json.loads(json.dumps(rec.early_stopping()))
    assert out["peak_epoch"] == 11 and out["fell_after_peak"] is True


def test_a_curve_that_wanders_within_its_noise_after_the_peak_is_not_overfitting():
    rng = np.random.default_rng(0)
    val = list(np.r_[np.linspace(-19, -16.4, 20), -16.4 + 0.05 * rng.standard_normal(100)])
    rec = early_stopping(val, kept=max(val), n_dims=3)
    assert rec["fall_after_peak"] > rec["noise"] > 0 and not rec["fell_after_peak"]


def test_identifiability_warning_fits_the_u_at_hand():
    import pandas as pd

    from trends_ivae.aux_variable import AuxVariable
    from trends_ivae.estimators.aux_codes import identifiability_advice

    windows = AuxVariable.discrete(np.arange(30) % 6, [f"w{i}" for i in range(6)], spec="window")
    text = identifiability_advice(windows, 6)
    assert "already has sliding windows" in text and "add sliding windows" not in text
    assert "at most 2" in text and "--window" in text
    task = pd.DataFrame({"task": ["a", "b"] * 5})
    assert "--aux task+window" in identifiability_advice(task, 2)


def test_a_kept_state_past_the_peak_is_said_with_the_warm_up_as_its_reason():
    kept = VAL[29]                                     # epoch 30: the warm-up's last
    rec = TrainingRecord(params={"warmup_frac": 0.3, "max_epochs": 100}, history={"val_elbo": VAL},
                         restart_elbos=[kept], n_epochs=40, device="cpu", elbo=kept, n_dims=10).early_stopping()
    assert rec["kept_epoch"] == 30 and rec["warmup_epochs"] == 30
    note = early_stopping_note(rec)
    assert "epoch-30 model is the one kept, 7.6 below the peak" in note and "warm-up, the first 30 epochs" in note
