"""prepare(): end to end on tiny generated runs, every bad input, and the real data."""
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _fmri_fixtures import BLOCK_EVENTS, brain_mask, make_bids, make_data, write_events, write_mask, write_run
from trends_ivae.data.errors import PrepareError
from trends_ivae.data.cleaning import clean_run
from trends_ivae.data.bids import find_bids_runs, runs_from_files
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.reduction.prepare import prepare, transform_runs
from trends_ivae.reduction.migp import project
from trends_ivae.data.store import read_prepared, write_prepared
from trends_ivae.reduction.migp import pca_basis, subspace_distance

REAL = Path(__file__).parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    return make_bids(tmp_path_factory.mktemp("bids") / "ds", n_subjects=3, n_runs=2, n_volumes=40)


@pytest.fixture(scope="module")
def prepared(bids):
    return prepare(find_bids_runs(bids), PrepareSettings.from_options(aux="task+subject", aux_combine="product",
                                                                      n_dims=6, n_keep=1000))


def test_prepare_outputs(prepared, bids):
    d = prepared
    assert d.x.shape == (240, 6) and d.x.dtype == np.float32
    assert d.u.kind == "discrete" and d.u.data.dtype == np.int64 and d.u.data.max() == len(d.u_names) - 1
    assert d.subjects == ["01", "02", "03"]
    assert list(np.bincount(d.subject)) == [80, 80, 80]
    assert list(d.volume[:3]) == [0, 1, 2] and d.volume[40] == 0 and d.run[40] == 1
    assert d.mask.shape == (12, 12, 8) and d.mask.sum() == d.basis.shape[0]
    assert d.mask[brain_mask().astype(bool)].sum() == d.mask.sum()  # EPI mask inside the brain
    np.testing.assert_allclose(d.basis.T @ d.basis, np.eye(6), atol=1e-5)
    assert d.tr == 2.0 and d.runs[2]["subject"] == "02" and d.runs[2]["start"] == 80
    assert d.aux["factors"][0]["levels"] == ["rest", "face", "house"]
    assert d.parameters["clean"]["detrend"] is True


def test_reconstruction_and_shared_basis(prepared, bids):
    """x V^T recovers the cleaned data up to the discarded variance; V = in-memory PCA."""
    runs = find_bids_runs(bids)
    mask_img = prepared.mask_img()
    Y = np.concatenate([clean_run(r, mask_img, prepared.clean_settings, 2.0) for r in runs])
    V_ref, _ = pca_basis(Y - Y.mean(0), 6)
    assert subspace_distance(prepared.basis, V_ref) < 1e-3
    np.testing.assert_allclose(project(Y, prepared.basis, prepared.voxel_mean), prepared.x, atol=1e-2)
    Y_hat = prepared.reconstruct()
    total = np.sum((Y - Y.mean(0)) ** 2)
    residual = np.sum((Y - Y_hat) ** 2)
    discarded = 1.0 - prepared.explained_variance_ratio.sum()
    np.testing.assert_allclose(residual / total, discarded, rtol=1e-2, atol=1e-4)
    # new data transform the same way
    (x0,) = transform_runs(runs[:1], prepared)
    np.testing.assert_allclose(x0, prepared.x[:40], atol=1e-2)


def test_streamed_default_matches_in_memory(bids):
    runs = find_bids_runs(bids)
    default = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=3))  # n_keep = 100 < 240 volumes
    exact = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=3, n_keep=1000))
    assert subspace_distance(default.basis, exact.basis) < 0.05


def test_options_whiten_window_confounds_parallel(bids, tmp_path):
    runs = find_bids_runs(bids)
    conf = tmp_path / "conf.tsv"
    rng = np.random.default_rng(0)
    conf.write_text("trans_x\ttrans_y\n" + "\n".join(f"{a}\t{b}" for a, b in rng.normal(size=(40, 2))))
    for r in runs:
        r.confounds = conf
    opts = dict(aux="window+group", aux_combine="product", window=10, n_dims=4, whiten=True, confounds=["trans_*"],
                standardize=True, high_pass=0.01, smoothing_fwhm=4.0)
    d = prepare(runs, PrepareSettings.from_options(n_jobs=2, **opts))
    np.testing.assert_allclose(d.x, prepare(runs, PrepareSettings.from_options(n_jobs=1, **opts)).x,
                               atol=1e-5)  # n_jobs-independent
    np.testing.assert_allclose(d.x.std(0, ddof=1), 1.0, rtol=0.05)
    assert d.u_names[0] == "sub-01_run-1_w000|patient" and len(d.u_names) == 24
    assert d.parameters["clean"]["confounds"] == ["trans_*"]


def test_explicit_files_tr_override_and_mask(tmp_path):
    f1 = write_run(tmp_path / "r1.nii.gz", n_volumes=30, seed=1, header_tr=False)
    f2 = write_run(tmp_path / "r2.nii.gz", n_volumes=30, seed=2, header_tr=False)
    ev = write_events(tmp_path / "ev.tsv", BLOCK_EVENTS[:2])
    mask = write_mask(tmp_path / "mask.nii.gz")
    runs = runs_from_files([f1, f2], events=[ev, ev], subjects=["a", "a"])
    d = prepare(runs, PrepareSettings.from_options(aux="task+run", aux_combine="product", n_dims=4),
                tr=2.5, mask=mask)
    assert d.tr == 2.5 and d.mask.sum() == brain_mask().sum() and d.subjects == ["a"]
    assert "face|run-2" in d.u_names
    # in-memory nibabel images work too
    imgs = [nib.load(f1), nib.load(f2)]
    d2 = prepare(imgs, PrepareSettings.from_options(aux="subject", n_dims=4), tr=2.5, mask=mask)
    assert d2.subjects == ["01", "02"]


def test_prepare_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, trends_ivae.data as d, trends_ivae.reduction as r; [getattr(m, n) for m in (d, r) for n in m.__all__]; "
            "import trends_ivae.cli.prepare; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- bad input: a clear error naming the file, nothing partial ---------------------------

def test_not_4d(tmp_path):
    f = tmp_path / "three_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), f)
    with pytest.raises(PrepareError, match="three_d.nii.gz.*3D"):
        prepare([f], PrepareSettings.from_options(aux="subject"), tr=2.0)


def test_unreadable(tmp_path):
    f = tmp_path / "broken.nii.gz"
    f.write_bytes(b"this is not a nifti")
    with pytest.raises(PrepareError, match="broken.nii.gz.*cannot be read"):
        prepare([f], PrepareSettings.from_options(aux="subject"), tr=2.0)
    with pytest.raises(PrepareError, match="missing.nii.gz.*does not exist"):
        prepare([tmp_path / "missing.nii.gz"], PrepareSettings.from_options(aux="subject"), tr=2.0)


def test_grids_differ(tmp_path):
    f1 = write_run(tmp_path / "r1.nii.gz", n_volumes=20)
    data, _, _ = make_data(20, shape=(10, 12, 8))
    f2 = write_run(tmp_path / "r2.nii.gz", data=data)
    f3 = write_run(tmp_path / "r3.nii.gz", n_volumes=20, zoom=2.0)
    mask = write_mask(tmp_path / "mask.nii.gz")
    with pytest.raises(PrepareError, match="r2.nii.gz.*shape.*resample"):
        prepare([f1, f2], PrepareSettings.from_options(aux="subject"), mask=mask)
    with pytest.raises(PrepareError, match="r3.nii.gz.*affine"):
        prepare([f1, f3], PrepareSettings.from_options(aux="subject"), mask=mask)
    with pytest.warns(UserWarning, match="constant"):  # outside r3's smaller field of view
        d = prepare([f1, f2, f3], PrepareSettings.from_options(aux="subject", n_dims=3,
                                                               resample_to_first=True), mask=mask)
    assert d.mask.shape == (12, 12, 8) and d.x.shape == (60, 3)


def test_nan_and_constant_voxels_dropped(tmp_path):
    data, mask, _ = make_data(20)
    inside = np.argwhere(mask)
    data[tuple(inside[0])][3] = np.nan
    data[tuple(inside[1])] = 1000.0
    f = write_run(tmp_path / "holes.nii.gz", data=data)
    m = write_mask(tmp_path / "mask.nii.gz")
    with pytest.warns(UserWarning) as rec:
        d = prepare([f], PrepareSettings.from_options(aux="subject", n_dims=3), mask=m)
    messages = " ".join(str(w.message) for w in rec)
    assert "NaN" in messages and "constant" in messages and "holes.nii.gz" in messages
    assert d.mask.sum() == mask.sum() - 2 and np.isfinite(d.x).all()


def test_events_missing_for_task(tmp_path):
    f = write_run(tmp_path / "noevents.nii.gz", n_volumes=20)
    with pytest.raises(PrepareError, match="noevents.nii.gz.*no events"):
        prepare([f], PrepareSettings.from_options(aux="task"))


def test_events_beyond_end_warns(tmp_path):
    f = write_run(tmp_path / "r.nii.gz", n_volumes=20)
    ev = write_events(tmp_path / "late_events.tsv", [(10.0, 8.0, "a"), (36.0, 10.0, "b"), (50.0, 1.0, "c")])
    m = write_mask(tmp_path / "mask.nii.gz")
    with pytest.warns(UserWarning, match="late_events.tsv.*1 event.*dropped.*1 run past"):
        d = prepare(runs_from_files([f], events=[ev]), PrepareSettings.from_options(aux="task", n_dims=2),
                    mask=m)
    assert d.u_names == ["rest", "a", "b"]


def test_window_longer_than_run(tmp_path):
    f = write_run(tmp_path / "short.nii.gz", n_volumes=10)
    with pytest.raises(PrepareError, match="short.nii.gz"):
        prepare([f], PrepareSettings.from_options(aux="window", window=20))


def test_tr_missing_everywhere_and_suspicious(tmp_path):
    f = write_run(tmp_path / "notr.nii.gz", n_volumes=10, header_tr=False)
    with pytest.raises(PrepareError, match="repetition time.*notr.nii.gz.*tr="):
        prepare([f], PrepareSettings.from_options(aux="subject"))
    g = write_run(tmp_path / "tr1.nii.gz", n_volumes=10, tr=1.0)
    m = write_mask(tmp_path / "mask.nii.gz")
    with pytest.warns(UserWarning, match="tr1.nii.gz.*1.0 s"):
        prepare([g], PrepareSettings.from_options(aux="subject", n_dims=2), mask=m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = prepare([g], PrepareSettings.from_options(aux="subject", n_dims=2), mask=m, tr=2.4)
    assert d.tr == 2.4


def test_mask_problems(tmp_path):
    f = write_run(tmp_path / "r.nii.gz", n_volumes=10)
    empty = tmp_path / "empty_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 12, 8), np.uint8), np.eye(4)), empty)
    with pytest.raises(PrepareError, match="empty_mask.nii.gz.*empty"):
        prepare([f], PrepareSettings.from_options(aux="subject"), mask=empty)
    other = tmp_path / "other_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), other)
    with pytest.raises(PrepareError, match="other_grid.nii.gz.*grid"):
        prepare([f], PrepareSettings.from_options(aux="subject"), mask=other)


def test_bad_confounds(tmp_path):
    f = write_run(tmp_path / "r.nii.gz", n_volumes=10)
    conf = tmp_path / "conf.tsv"
    conf.write_text("a\tb\n" + "1\t2\n" * 9)
    m = write_mask(tmp_path / "mask.nii.gz")
    with pytest.raises(PrepareError, match="conf.tsv.*9 rows.*10 volumes"):
        prepare(runs_from_files([f], confounds=[conf]), PrepareSettings.from_options(aux="subject", n_dims=2),
                mask=m)
    with pytest.raises(PrepareError, match="conf.tsv.*no column matching 'zz'"):
        prepare(runs_from_files([f], confounds=[conf]),
                PrepareSettings.from_options(aux="subject", n_dims=2, confounds=["zz"]), mask=m)


# ---- real data (skipped when ../shared/data is absent) -----------------------------------

HAXBY = REAL / "haxby2001_sub001" / "sub001"
LOCALIZER = REAL / "pyhrf_localizer_mni"


@pytest.mark.realdata
@pytest.mark.skipif(not HAXBY.is_dir(), reason="../shared/data not available")
def test_real_haxby_runs_with_events_and_run_labels():
    runs_dir = [HAXBY / "BOLD" / f"task001_run00{i}" for i in (1, 2)]
    runs = runs_from_files([d / "bold_25mm.nii.gz" for d in runs_dir],
                           events=[d / "bold_events.tsv" for d in runs_dir],
                           confounds=[d / "bold_moest.txt" for d in runs_dir],
                           subjects=["1", "1"])
    d = prepare(runs, PrepareSettings.from_options(aux="task+run", n_dims=10, high_pass=1 / 128, hrf_delay=5.0),
                mask=HAXBY / "masks" / "25mm" / "brain.nii.gz")
    assert d.x.shape == (242, 10) and d.tr == 2.5 and d.n_voxels <= 129
    levels = d.aux["factors"][0]["levels"]
    assert levels[0] == "rest" and {"face", "house", "cat", "shoe"} <= set(levels)
    assert d.aux["factors"][1]["levels"] == ["run-1", "run-2"]
    assert "task=face" in d.u_names and "run=run-2" in d.u_names and d.u_kind == "continuous"
    # each category covers ~9 volumes per run (22.5 s blocks at TR 2.5 s)
    task = d.u_factors[:, 0]
    counts = np.bincount(task[:121], minlength=len(levels))
    assert all(8 <= c <= 10 for c in counts[1:])
    assert d.explained_variance_ratio.sum() > 0.2


@pytest.mark.realdata
@pytest.mark.skipif(not LOCALIZER.is_dir(), reason="../shared/data not available")
def test_real_localizer_mni_with_mask_and_tr_override(tmp_path):
    bold = LOCALIZER / "real_data_vol_4_regions_BOLD.nii.gz"
    runs = runs_from_files([bold], events=[LOCALIZER / "real_data_vol_4_regions_events.tsv"])
    mask = LOCALIZER / "real_data_vol_4_regions_mask.nii.gz"
    with pytest.warns(UserWarning, match="1.0 s"):  # the header says TR 1
        prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=5), mask=mask)
    d = prepare(runs, PrepareSettings.from_options(aux="task", n_dims=10, hrf_delay=4.8, high_pass=0.008),
                mask=mask, tr=2.4)
    assert d.tr == 2.4 and d.x.shape == (128, 10)
    assert 6000 < d.n_voxels <= 6443
    levels = d.aux["factors"][0]["levels"]
    assert levels[0] == "rest" and len(levels) == 11  # 10 conditions + rest
    assert (d.u.data > 0).sum() >= 60  # zero-duration events each mark a volume
    out = write_prepared(tmp_path / "prepared.h5", d)
    assert read_prepared(out).n_voxels == d.n_voxels


def test_participant_shares_drop_initial_volumes_as_prepare_does(tmp_path):
    from trends_ivae.reduction.participant import gather_shares, write_participant_share

    files = [write_run(tmp_path / f"sub-0{i}_bold.nii.gz", n_volumes=40, tr=2.0, seed=i) for i in (1, 2, 3)]
    m = write_mask(tmp_path / "mask.nii.gz")
    st = PrepareSettings.from_options(aux="window", window=10, n_dims=3, drop_initial=3)
    runs = runs_from_files(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = gather_shares([write_participant_share([r], tmp_path / "shares", st, mask=m)["share"] for r in runs], st)
        p = prepare(runs, st, mask=m)
    assert g.x.shape == p.x.shape == (3 * 37, 3) and [r.get("censored") for r in g.runs] == [[0, 1, 2]] * 3
    np.testing.assert_array_equal(g.u.data, p.u.data)
