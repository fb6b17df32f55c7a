"""The fMRI simulator: truth matches what it wrote, determinism, the switches."""
from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.simulate import FMRISimParams, load_truth, simulate_fmri, write_bids
from trends_ivae.simulate.fmri import glover_hrf

SMALL = dict(n_subjects=3, n_volumes=40, n_components=5, n_task=2, segment_length=10,
             shape=(16, 18, 16), seed=3)


@pytest.fixture(scope="module")
def sim():
    return simulate_fmri(FMRISimParams(**SMALL))


def test_shapes_and_truth(sim):
    t = sim.truth
    n_vox = int(sim.mask.sum())
    assert 500 < n_vox < 16 * 18 * 16
    assert len(sim.data) == 3 and sim.data[0].shape == (40, n_vox)
    assert sim.data[0].dtype == np.float32
    assert t.maps.shape == (5, n_vox) and t.effect_maps.shape == (5, n_vox)
    assert t.subject_maps.shape == (3, 5, n_vox)
    assert t.timecourses.shape == (3, 40, 5) and t.mixed.shape == (3, 40, 5)
    assert t.segments.shape == (3, 40) and t.segments.max() == 3
    assert t.task_regressors.shape == (3, 40, 2)
    assert t.component_kinds == ["task", "task", "rest", "rest", "rest"]
    np.testing.assert_allclose(np.abs(t.maps).max(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t.maps.max(1), 1.0, rtol=1e-6)  # peak positive
    # sources are standardised over subjects and volumes
    flat = t.timecourses.reshape(-1, 5)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1, atol=1e-4)
    # without mixing, the mixed sources are the sources
    np.testing.assert_array_equal(t.mixed, t.timecourses)
    # the baseline is near 1000 and the data positive
    assert 900 < float(np.median(sim.data[0])) < 1100
    # task sources follow their regressors (the sources are detrended per run)
    from scipy.signal import detrend
    for s in range(3):
        for j in range(2):
            reg = detrend(t.task_regressors[s, :, j].astype(np.float64))
            assert np.corrcoef(t.timecourses[s, :, j], reg)[0, 1] > 0.7


def test_events(sim):
    for ev in sim.events:
        assert list(ev.columns) == ["onset", "duration", "trial_type"]
        assert set(ev.trial_type) <= set(sim.truth.conditions)
        assert (ev.onset + ev.duration <= 40 * 2.0).all()
        assert np.all(np.diff(ev.onset) > 0)


def test_deterministic_by_seed():
    a = simulate_fmri(FMRISimParams(**SMALL))
    b = simulate_fmri(FMRISimParams(**SMALL))
    c = simulate_fmri(FMRISimParams(**{**SMALL, "seed": 4}))
    np.testing.assert_array_equal(a.data[1], b.data[1])
    np.testing.assert_array_equal(a.truth.maps, b.truth.maps)
    pd.testing.assert_frame_equal(a.events[2], b.events[2])
    assert not np.array_equal(a.truth.timecourses, c.truth.timecourses)


def test_nonlinearity_switch_changes_data():
    lin = simulate_fmri(FMRISimParams(**SMALL, nonlinear=False))
    sat = simulate_fmri(FMRISimParams(**SMALL, nonlinear=True))
    np.testing.assert_array_equal(lin.truth.timecourses, sat.truth.timecourses)
    assert not np.allclose(lin.data[0], sat.data[0])
    # saturation shrinks the largest deviations from baseline
    assert np.abs(sat.data[0] - sat.data[0].mean(0)).max() < np.abs(lin.data[0] - lin.data[0].mean(0)).max()
    # linear, unmixed: effect maps are the mean amplitude-scaled maps
    expected = 2.0 * lin.truth.subject_maps.mean(0)
    np.testing.assert_allclose(lin.truth.effect_maps, expected, rtol=1e-4, atol=1e-5)


def test_mixing_layers():
    mixed = simulate_fmri(FMRISimParams(**SMALL, mixing_layers=2))
    t = mixed.truth
    assert not np.allclose(t.mixed, t.timecourses)
    flat = t.mixed.reshape(-1, 5)
    np.testing.assert_allclose(flat.std(0), 1, atol=1e-4)
    assert np.isfinite(t.effect_maps).all()


def test_mixing_jacobian_matches_finite_differences():
    """The Jacobian used for the effect maps is d h / d s of the mixing MLP."""
    from trends_ivae.simulate.timecourses import mix, mixing_matrices
    rng = np.random.default_rng(0)
    mats = mixing_matrices(5, 3, rng)
    S = rng.standard_normal((50, 5))
    H0, J = mix(S, mats, 0.1)
    eps = 1e-5
    for j in range(5):
        Sp = S.copy()
        Sp[:, j] += eps
        Hp, _ = mix(Sp, mats, 0.1)
        np.testing.assert_allclose((Hp - H0) / eps, J[:, j, :], rtol=1e-3, atol=1e-4)


def test_validation():
    with pytest.raises(ValueError, match="n_task"):
        simulate_fmri(FMRISimParams(n_components=2, n_task=3))
    with pytest.raises(ValueError, match="snr"):
        simulate_fmri(snr=0)


def test_hrf_peaks_near_5s():
    h = glover_hrf(0.1)
    assert abs(h.sum() - 1) < 1e-9
    assert 4.0 < np.argmax(h) * 0.1 < 6.5


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_write_bids_roundtrip(sim, tmp_path, dtype):
    out = write_bids(sim, tmp_path / "bids", dtype=dtype)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] and desc["DatasetType"] == "raw"
    parts = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(parts.columns) == ["participant_id", "group", "site"]
    assert list(parts.participant_id) == ["sub-01", "sub-02", "sub-03"]
    for i, sub in enumerate(sim.subjects):
        func = out / f"sub-{sub}" / "func"
        img = nib.load(func / f"sub-{sub}_task-sim_bold.nii.gz")
        assert img.shape == sim.mask.shape + (40,)
        np.testing.assert_allclose(img.affine, sim.affine)
        assert img.header.get_zooms()[3] == pytest.approx(2.0)
        assert img.header.get_xyzt_units() == ("mm", "sec")
        assert img.get_data_dtype() == np.dtype(dtype)
        data = np.asarray(img.dataobj)[sim.mask].T
        np.testing.assert_allclose(data, sim.data[i], atol=0.51 if dtype == "int16" else 1e-3)
        assert np.all(np.asarray(img.dataobj)[~sim.mask] == 0)
        meta = json.loads((func / f"sub-{sub}_task-sim_bold.json").read_text())
        assert meta == {"RepetitionTime": 2.0, "TaskName": "sim"}
        ev = pd.read_csv(func / f"sub-{sub}_task-sim_events.tsv", sep="\t")
        pd.testing.assert_frame_equal(ev, sim.events[i], check_dtype=False, atol=1e-3)
    truth = load_truth(out)
    for name in ("maps", "effect_maps", "timecourses", "segments", "subject_maps", "mask", "affine"):
        np.testing.assert_array_equal(getattr(truth, name), getattr(sim.truth, name))
    assert truth.component_names == sim.truth.component_names and truth.tr == 2.0
    tdir = out / "derivatives" / "truth"
    maps_img = nib.load(tdir / "truth_maps.nii.gz")
    assert maps_img.shape == sim.mask.shape + (5,)
    np.testing.assert_allclose(maps_img.get_fdata()[sim.mask].T, sim.truth.maps, atol=1e-6)
    mask_img = nib.load(tdir / "truth_mask.nii.gz")
    np.testing.assert_array_equal(mask_img.get_fdata() > 0, sim.mask)
    assert FMRISimParams.from_dict(json.loads((tdir / "params.json").read_text())) == sim.params
    assert load_truth(tdir / "truth.npz").subjects == ["01", "02", "03"]


def test_write_bids_uncompressed(sim, tmp_path):
    """compress=False writes .nii BOLD images with the same data, found by the BIDS reader."""
    from trends_ivae.data.bids import find_bids_runs

    out = write_bids(sim, tmp_path / "bids", compress=False)
    img = nib.load(out / "sub-01" / "func" / "sub-01_task-sim_bold.nii")
    assert not (out / "sub-01" / "func" / "sub-01_task-sim_bold.nii.gz").exists()
    np.testing.assert_allclose(np.asarray(img.dataobj)[sim.mask].T, sim.data[0], atol=1e-3)
    assert len(find_bids_runs(out, task="sim")) == 3


def test_split_modules_keep_the_public_names():
    """The simulator's pieces live in sibling modules; trends_ivae.simulate.fmri re-exports them."""
    import trends_ivae.simulate as package
    import trends_ivae.simulate.fmri as fmri
    from trends_ivae.simulate import geometry, params, results, timecourses, writing

    for name in fmri.__all__:
        assert getattr(fmri, name) is getattr(package, name)
    assert fmri.FMRISimParams is params.FMRISimParams
    assert fmri.SimulationTruth is results.SimulationTruth and fmri.write_bids is writing.write_bids
    assert fmri.brain_mask is geometry.brain_mask and fmri.glover_hrf is timecourses.glover_hrf


def test_write_bids_refuses_existing(sim, tmp_path):
    out = tmp_path / "bids"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_bids(sim, out)
    assert (out / "keep.txt").exists()
    from trends_ivae.export.derivatives import ForeignFilesError

    with pytest.raises(ForeignFilesError, match="keep.txt"):   # force never deletes a user's file
        write_bids(sim, out, force=True)
    assert (out / "keep.txt").read_text() == "x"
    (out / "keep.txt").unlink()
    write_bids(sim, out, force=True)
    write_bids(sim, out, force=True)   # over its own files
    assert (out / "participants.tsv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bids"]  # no temporary leftovers


def test_sources_have_no_run_offset_or_trend(sim):
    """What a linear detrend removes from the data is removed from the truth as well."""
    tc = sim.truth.timecourses.astype(np.float64)  # (S, T, K)
    ramp = np.linspace(-1, 1, tc.shape[1])
    np.testing.assert_allclose(tc.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(np.einsum("t,stk->sk", ramp, tc), 0, atol=1e-3)


def _pca_ica(sim, k):
    from scipy.signal import detrend
    from sklearn.decomposition import PCA, FastICA

    X = np.concatenate([detrend(d.astype(np.float64), axis=0) for d in sim.data])
    z = PCA(k, random_state=0).fit_transform(X)
    with warnings.catch_warnings():  # FastICA may not converge on the mixed data
        warnings.simplefilter("ignore")
        return z, FastICA(k, random_state=0, max_iter=1000).fit_transform(z)


def test_linear_simulation_is_recoverable_by_temporal_ica():
    """Detrend, one group PCA of k dimensions, temporal FastICA: the sources come back.

    Guards against nuisance signals (drift) that dominate the leading principal components.
    With nonlinear mixing of the sources the same linear pipeline fails."""
    from trends_ivae.metrics import mcc

    kw = dict(n_subjects=6, n_volumes=150, n_components=5, n_task=2, segment_length=20,
              shape=(20, 24, 20), nonlinear=False, seed=3)
    lin = simulate_fmri(**kw)
    truth = np.concatenate(lin.truth.timecourses)
    z, est = _pca_ica(lin, 5)
    fit = z @ np.linalg.lstsq(z, truth, rcond=None)[0]  # best linear read-out of each source
    r = [np.corrcoef(fit[:, j], truth[:, j])[0, 1] for j in range(5)]
    assert min(r) > 0.9, r
    score_lin = mcc(est, truth).score
    assert score_lin > 0.85
    mixed = simulate_fmri(**kw, mixing_layers=3)
    _, est_mixed = _pca_ica(mixed, 5)
    assert mcc(est_mixed, np.concatenate(mixed.truth.timecourses)).score < score_lin - 0.2
