"""The analysis layer on arrays: post-processing, static FNC, spectra, dFNC, the prior's
dynamics, and the simulator's known coupling states."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from trends_ivae.analysis import (DFNCSettings, PostprocessSettings, SpectraSettings, dynamic_fnc, postprocess,
                                  prior_dynamics, spectra, static_fnc)
from trends_ivae.analysis.spectra import frequency_grid, spectral_summary
from trends_ivae.simulate import FMRISimParams, simulate_fmri
from trends_ivae.simulate.coupling import coupling_states


def _correlated(n, rho, rng, k=3):
    """(n, k) Gaussian series whose first two columns correlate at ``rho``."""
    x = rng.standard_normal((n, k))
    x[:, 1] = rho * x[:, 0] + np.sqrt(1 - rho ** 2) * x[:, 1]
    return x


# ----------------------------------------------------------------------------- post-processing
def test_postprocess_removes_a_cubic_trend_and_squashes_a_spike():
    rng = np.random.default_rng(0)
    t = np.linspace(-1, 1, 200)
    noise = rng.standard_normal((200, 2))
    tc = noise + 5 * t[:, None] ** 3 - 3 * t[:, None]
    tc[100, 0] += 40
    out = postprocess(tc, 2.0, PostprocessSettings(low_pass=None))
    assert abs(np.polyfit(t, out[:, 1], 3)[0]) < 0.5                    # the cubic is gone
    assert abs(out[100, 0]) < 4 * np.std(np.delete(out[:, 0], 100))    # squashed to about c2 = 3 SDs
    kept = postprocess(tc, 2.0, PostprocessSettings(low_pass=None, despike=False))
    assert kept[100, 0] > 30


def test_postprocess_low_pass_at_each_runs_own_tr():
    t = np.arange(300) * 1.0
    slow, fast = np.sin(2 * np.pi * 0.03 * t), np.sin(2 * np.pi * 0.3 * t)
    out = postprocess(np.c_[slow + fast], 1.0, PostprocessSettings(despike=False))[:, 0]
    assert np.corrcoef(out[20:-20], slow[20:-20])[0, 1] > 0.98
    assert np.std(out - slow) < 0.2 * np.std(fast)
    # at TR 4 s the Nyquist frequency (0.125 Hz) is below the cut-off: nothing to filter
    x = np.random.default_rng(1).standard_normal((60, 1))
    unfiltered = postprocess(x, 4.0, PostprocessSettings(despike=False, detrend=0))
    assert np.allclose(unfiltered, x - x.mean())


@pytest.mark.parametrize("tr, bad, match", [(2.0, "nan", "NaN or infinite"), (None, None, "repetition time"),
                                            (0.0, None, "repetition time")])
def test_postprocess_names_the_run_on_bad_input(tr, bad, match):
    x = np.ones((20, 2)) + np.arange(20)[:, None]
    if bad == "nan":
        x[3, 1] = np.nan
    with pytest.raises(ValueError, match=match) as info:
        postprocess(x, tr, name="sub-01_run-1_timeseries.tsv")
    assert "sub-01_run-1_timeseries.tsv" in str(info.value)


# ----------------------------------------------------------------------------- static FNC
def test_static_fnc_equals_nilearn_and_recovers_a_known_correlation():
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    rng = np.random.default_rng(2)
    runs = [_correlated(400, 0.6, rng) for _ in range(4)]
    subjects = ["01", "01", "02", "02"]
    fnc = static_fnc(runs, subjects, 2.0)
    assert fnc.subjects == ["01", "02"] and fnc.n_runs == [2, 2] and fnc.z.shape == (2, 3, 3)
    assert np.isnan(fnc.z[:, [0, 1, 2], [0, 1, 2]]).all()
    clean = [postprocess(r, 2.0) for r in runs]
    ref = ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance()).fit_transform(clean)
    off = ~np.eye(3, dtype=bool)
    expect = np.arctanh(ref[:, off]).reshape(2, 2, -1).mean(axis=1)
    assert np.allclose(fnc.z[:, off], expect, atol=1e-10)
    assert fnc.mean[0, 1] == pytest.approx(np.arctanh(0.6), abs=0.12)
    assert abs(fnc.mean[0, 2]) < 0.15
    assert fnc.sd.shape == (3, 3) and np.all(fnc.sd[off] >= 0)
    flipped = fnc.reordered([2, 1, 0])
    assert flipped.names == ["ic03", "ic02", "ic01"] and flipped.z[0, 2, 1] == fnc.z[0, 0, 1]


def test_static_fnc_refuses_runs_that_disagree():
    with pytest.raises(ValueError, match="different numbers of components"):
        static_fnc([np.random.default_rng(0).standard_normal((50, 3)),
                    np.random.default_rng(1).standard_normal((50, 4))], ["01", "02"], 2.0)
    with pytest.raises(ValueError, match="2 TRs for 1 runs"):
        static_fnc([np.zeros((50, 3))], ["01"], [2.0, 2.0])


# ----------------------------------------------------------------------------- spectra
def test_spectra_match_a_plain_scipy_multitaper_and_find_the_peak():
    rng = np.random.default_rng(3)
    t = np.arange(256) * 2.0
    x = np.c_[np.sin(2 * np.pi * 0.05 * t) + 0.3 * rng.standard_normal(256), rng.standard_normal(256)]
    sp = spectra([x], ["01"], 2.0)
    clean = postprocess(x, 2.0, PostprocessSettings().for_spectra())
    tapers = signal.windows.dpss(256, 3.0, Kmax=5)
    ref = np.mean([np.abs(np.fft.rfft(clean * w[:, None], axis=0)) ** 2 for w in tapers], axis=0) * 2.0 * 2
    ref[0] /= 2
    ref[-1] /= 2
    assert np.allclose(sp.frequencies, np.fft.rfftfreq(256, 2.0))
    assert np.allclose(sp.power[0], ref, rtol=1e-8, atol=1e-12)
    assert sp.frequencies[np.argmax(sp.power[0, :, 0])] == pytest.approx(0.05, abs=0.01)
    assert sp.falff[0, 0] > 5 * sp.falff[0, 1]                   # low-frequency power dominates the sine
    assert sp.dynamic_range[0, 0] > sp.dynamic_range[0, 1]


def test_spectra_on_a_common_grid_across_trs_and_the_summary_without_its_band():
    grid = frequency_grid([100, 200], [2.0, 1.0])
    assert grid[-1] == pytest.approx(0.25) and grid[1] == pytest.approx(1 / 200)
    rng = np.random.default_rng(4)
    sp = spectra([rng.standard_normal((100, 2)), rng.standard_normal((200, 2))], ["01", "02"], [2.0, 1.0])
    assert sp.power.shape == (2, len(grid), 2) and np.allclose(sp.frequencies, grid)
    f = np.linspace(0, 0.12, 30)   # TR above 4 s: no 0.15-0.25 Hz band
    dyn, falff = spectral_summary(f, np.ones((30, 1)), SpectraSettings())
    assert np.isnan(falff).all() and dyn[0] == 0
    with pytest.raises(ValueError, match="too few"):
        spectra([rng.standard_normal((6, 2))], ["01"], 2.0)


# ----------------------------------------------------------------------------- dFNC
def test_dfnc_recovers_two_alternating_states():
    rng = np.random.default_rng(5)
    block, n = 40, 200
    state = (np.arange(n) // block) % 2
    runs = []
    for _ in range(3):
        x = rng.standard_normal((n, 4))
        rho = np.where(state == 0, 0.8, -0.8)
        x[:, 1] = rho * x[:, 0] + np.sqrt(1 - rho ** 2) * x[:, 1]
        runs.append(x)
    res = dynamic_fnc(runs, ["01", "02", "03"], 1.0, settings=DFNCSettings(window=20, n_states=2, alpha=0.01),
                      postprocess_settings=PostprocessSettings(low_pass=None, detrend=1))
    assert res.n_states == 2 and res.centroids.shape == (2, 4, 4)
    signs = np.sign(res.centroids[:, 0, 1])
    assert set(signs) == {-1.0, 1.0}
    positive = int(np.argmax(res.centroids[:, 0, 1]))
    centre = res.window_start[0] + 10
    truth = (state[centre] == 0)
    agree = np.mean((res.states[0] == positive) == truth)
    assert agree > 0.85
    assert np.allclose(res.fraction.sum(1), 1) and np.all(np.abs(res.fraction[:, positive] - truth.mean()) < 0.1)
    true_changes = int(np.sum(np.diff(truth.astype(int)) != 0))
    assert np.all(np.abs(res.transitions - true_changes) <= 2) and np.all(res.dwell > 0.6 * block)


def test_dfnc_elbow_chooses_a_number_of_states_and_refuses_short_runs():
    rng = np.random.default_rng(6)
    res = dynamic_fnc([rng.standard_normal((60, 3))] * 2, ["01", "02"], 2.0,
                      settings=DFNCSettings(window=15, max_states=4, alpha=0.05, metric="euclidean"))
    assert sorted(res.within_distance) == [2, 3, 4] and 2 <= res.n_states <= 4
    with pytest.raises(ValueError, match="shorter than the dFNC window") as info:
        dynamic_fnc([rng.standard_normal((60, 3)), rng.standard_normal((10, 3))], ["01", "02"], 2.0,
                    run_names=["a.tsv", "short.tsv"])
    assert "short.tsv" in str(info.value)


# ----------------------------------------------------------------------------- prior, simulator
def test_prior_dynamics_split_into_runs():
    codes = np.array([0, 0, 1, 1, 2, 2, 0])
    mean, var = np.arange(6.0).reshape(3, 2), np.ones((3, 2))
    pd_ = prior_dynamics(codes, mean, var, np.array([0, 0, 0, 1, 1, 1, 1]), runs=["a", "b"], names=["ic01", "ic02"],
                         trs=[2.0, 2.0])
    assert [m.shape for m in pd_.mean] == [(3, 2), (4, 2)]
    assert np.array_equal(pd_.mean[1][:, 0], [2.0, 4.0, 4.0, 0.0])
    with pytest.raises(ValueError, match="volumes"):
        prior_dynamics(codes, mean, var, np.zeros(3), runs=["a"], names=["ic01", "ic02"], trs=[2.0])


def test_simulated_coupling_alternates_between_the_two_known_states():
    p = FMRISimParams(n_subjects=8, n_volumes=320, n_components=6, n_task=1, shape=(10, 12, 10),
                      coupling_block=40, seed=1)
    sim = simulate_fmri(p)
    state, mats = coupling_states(p)
    assert mats.shape == (2, 6, 6) and mats[0, 1, 2] == 0.5 and mats[1, 1, 2] == -0.5 and mats[0, 3, 4] == 0.4
    s, seg = sim.truth.timecourses, sim.truth.segments
    for k in range(2):   # within a segment (one mean and SD per source) the pair correlates at the state's value
        r = [np.corrcoef(x[(g == j) & (state == k)], rowvar=False) for x, g in zip(s, seg) for j in np.unique(g)
             if np.sum((g == j) & (state == k)) > 10]
        assert np.tanh(np.mean([np.arctanh(c[1, 2]) for c in r])) == pytest.approx(mats[k, 1, 2], abs=0.1)
        assert np.tanh(np.mean([np.arctanh(c[3, 4]) for c in r])) == pytest.approx(mats[k, 3, 4], abs=0.1)
    assert FMRISimParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="coupling pair 2"):
        FMRISimParams(n_components=4, n_task=1, coupling_block=20).validate()
