"""The model order (``--n-components auto``): Minka's Laplace PCA estimate (MELODIC -d 0), and
MDL / AIC after i.i.d. subsampling of the smooth voxel grid (Li, Adali & Calhoun 2007, GIFT)."""
import numpy as np
import pytest

from _fmri_fixtures import make_data, write_run
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.reduction.prepare import prepare
from trends_ivae.data.store import read_prepared, write_prepared
from trends_ivae.reduction.order import estimate_order, laplace_evidence, order_from_parameters


def _spectrum(n_dims, n_samples, n_sources, seed, noise=1.0):
    """Eigenvalues of the (dims x dims) covariance of n_sources sources plus white noise."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_dims, n_sources)) * 3.0
    Y = mixing @ rng.normal(size=(n_sources, n_samples)) + noise * rng.normal(size=(n_dims, n_samples))
    Y -= Y.mean(axis=1, keepdims=True)
    return np.linalg.eigvalsh(Y @ Y.T / n_samples)


def test_the_evidence_is_minkas_as_scikit_learn_computes_it():
    pca = pytest.importorskip("sklearn.decomposition._pca")
    lam = np.sort(np.random.default_rng(0).gamma(2.0, 1.0, size=25))[::-1]
    ours = laplace_evidence(lam, 400)
    ref = [pca._assess_dimension(lam, k, 400) for k in range(1, 25)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("n_sources, n_dims, n_samples, seed", [
    (3, 60, 1000, 0), (8, 100, 2000, 1), (12, 120, 4000, 2), (20, 100, 3000, 3)])
def test_the_known_number_of_sources_is_found_at_high_snr(n_sources, n_dims, n_samples, seed):
    est = estimate_order(_spectrum(n_dims, n_samples, n_sources, seed), n_samples)
    assert abs(est.n_components - n_sources) <= 1
    assert est.method == "laplace" and est.n_samples == n_samples and not est.capped


def test_the_null_space_left_by_cleaning_is_not_counted_as_noise():
    lam = np.concatenate([_spectrum(60, 1000, 5, 5)[::-1][:54], np.full(6, 1e-9)])   # rank 54
    est = estimate_order(lam, 1000)
    assert abs(est.n_components - 5) <= 1 and est.n_null == 6 and est.n_dims == 54


def test_the_cap_is_applied_and_said():
    est = estimate_order(_spectrum(60, 1000, 10, 4), 1000, max_order=6)
    assert est.n_components == 6 and est.capped and "capped at 6" in est.describe()


def test_bad_spectra_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        laplace_evidence(np.array([1.0]), 10)
    with pytest.raises(ValueError, match="zero"):
        estimate_order(np.zeros(5), 10)
    with pytest.raises(ValueError, match="too short"):
        estimate_order(np.ones(1), 10)
    with pytest.raises(ValueError, match="method"):
        estimate_order(np.ones(5), 10, method="bic")
    with pytest.raises(ValueError, match="no eigenspectrum"):
        order_from_parameters({"n_dims": 3})


def test_prepare_with_auto_dims_finds_the_sources_and_records_them(tmp_path):
    n_sources = 4
    runs = []
    for s in range(3):   # the same maps for every subject, own time courses
        data, _, _ = make_data(n_volumes=40, n_sources=n_sources, seed=0, subject_seed=10 + s, noise=1.0)
        runs.append(write_run(tmp_path / f"sub-{s + 1:02d}_task-x_bold.nii.gz", data=data))
    d = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims="auto", n_keep=1000))
    assert abs(d.n_dims - n_sources) <= 1
    assert d.parameters["n_dims_requested"] == "auto"
    assert d.parameters["order"]["n_components"] == d.n_dims
    method = d.parameters["order"]["method"]
    assert method == "mdl"   # the default, from the subsampled spectrum prepare records
    write_prepared(tmp_path / "p.h5", d)
    again = read_prepared(tmp_path / "p.h5")   # the spectra travel with the file
    assert order_from_parameters(again.parameters, method=method).n_components == d.n_dims
    assert abs(order_from_parameters(again.parameters, method="laplace").n_components - n_sources) <= 1
    fixed = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=8, n_keep=1000))
    assert fixed.parameters["order"] is None
    assert order_from_parameters(fixed.parameters, max_order=8, method=method).n_components == d.n_dims


# -- MDL and AIC after i.i.d. subsampling (Li, Adali & Calhoun 2007) ---------------------------
from scipy.ndimage import gaussian_filter  # noqa: E402

from trends_ivae.reduction.order import DEFAULT_METHOD, order_cap  # noqa: E402
from trends_ivae.reduction.order_iid import (WHITE_ENTROPY, entropy_rate, first_minimum,  # noqa: E402
                                             iid_spectrum, information_criteria, subsampling_step)

SHAPE3 = (20, 22, 18)


def _ball(shape=SHAPE3):
    grid = np.indices(shape).astype(float)
    c = (np.array(shape) - 1) / 2
    return sum(((grid[i] - c[i]) / (shape[i] * 0.45)) ** 2 for i in range(3)) <= 1


def _smooth_data(n_sources, n_rows, seed, sigma=1.5, snr=3.0):
    """(rows x voxels) data of smooth maps with random time courses plus smooth noise,
    the mask; both the maps and the noise smoothed by ``sigma`` voxels."""
    rng = np.random.default_rng(seed)
    mask = _ball()

    def smooth(n):
        out = np.stack([gaussian_filter(rng.normal(size=SHAPE3), sigma)[mask] for _ in range(n)])
        return out / out.std(axis=1, keepdims=True)

    maps, noise = smooth(n_sources), smooth(n_rows)
    tc = rng.normal(size=(n_rows, n_sources)) * snr * np.linspace(2.0, 1.0, n_sources)
    Y = tc @ maps + noise
    return Y - Y.mean(axis=0), mask


def test_the_entropy_rate_is_white_for_white_noise_and_lower_for_smooth_fields():
    rng = np.random.default_rng(0)
    mask = _ball()
    white = rng.normal(size=SHAPE3)
    assert abs(entropy_rate(white, mask) - WHITE_ENTROPY) < 0.03
    assert entropy_rate(gaussian_filter(white, 1.5), mask) < 1.2
    assert subsampling_step(white[mask][None], mask) == 1
    assert subsampling_step(gaussian_filter(white, 1.5)[mask][None], mask) >= 3


def test_mdl_finds_the_known_order_of_white_data():
    for n_sources, seed in [(3, 0), (8, 1), (15, 2)]:
        lam = _spectrum(60, 3000, n_sources, seed)
        mdl, aic = information_criteria(np.sort(lam)[::-1], 3000)
        assert first_minimum(mdl) == n_sources
        assert abs(first_minimum(aic) - n_sources) <= 1


@pytest.mark.parametrize("n_sources, seed", [(4, 0), (9, 1)])
def test_subsampling_corrects_for_smoothness_where_the_laplace_estimate_does_not(n_sources, seed):
    Y, mask = _smooth_data(n_sources, 40, seed)
    iid = iid_spectrum(Y, mask)
    assert iid["step"] >= 2 and iid["n_samples"] < mask.sum() / 4
    mdl = estimate_order(np.array(iid["eigenvalues"]), iid["n_samples"], method="mdl", step=iid["step"])
    assert mdl.n_components == n_sources and f"one in {iid['step']} along each axis" in mdl.describe()
    n_vox = int(mask.sum())
    laplace = estimate_order(np.linalg.eigvalsh(Y @ Y.T / n_vox), n_vox)
    assert laplace.n_components > n_sources + 2   # counting every smooth voxel as a sample


def test_the_cap_is_the_smallest_subject_the_rank_or_the_dimension():
    par = {"spectrum": {"singular_values": [5.0, 4.0, 3.0, 2.0] + [1.0] * 40 + [1e-7] * 6}}
    assert order_cap(par, {"01": 50, "02": 30}, 49) == (30, "30 volumes in sub-02, the smallest subject")
    assert order_cap(par, {"01": 500}, 100) == (44, "the cleaned data have rank 44")
    assert order_cap({}, {"01": 500}, 12) == (12, "the reduced dimension is 12")


def test_auto_records_the_subsampled_spectrum_and_mdl_is_the_default(tmp_path):
    from trends_ivae.simulate import simulate_fmri

    sim = simulate_fmri(n_subjects=4, n_volumes=60, n_components=5, n_task=0, nonlinear=False, map_shift=0.0,
                        drift_curvature=0.0, shape=(16, 18, 16), seed=4)
    d = prepare(sim.imgs, PrepareSettings.from_options(aux="subject", n_dims="auto", smoothing_fwhm=8.0))
    iid = d.parameters["spectrum"]["iid"]
    assert iid["step"] >= 2 and iid["n_samples"] < iid["n_voxels"] / 4
    est = order_from_parameters(d.parameters, max_order=50, cap_reason="test")
    assert DEFAULT_METHOD == "mdl" and est.method == "mdl" and est.n_components == 5
    assert est.to_dict()["reference"].startswith("Li, Y.-O.")
    assert order_from_parameters(d.parameters, method="laplace").n_components > 7
    old = {**d.parameters, "spectrum": {k: v for k, v in d.parameters["spectrum"].items() if k != "iid"}}
    assert order_from_parameters(old).method == "laplace"   # a file prepared before: Minka's, said
    with pytest.raises(ValueError, match="subsampled"):
        order_from_parameters(old, method="mdl")


def test_n_dims_auto_uses_the_subsampled_grid_when_the_mask_is_given():
    from trends_ivae.reduction.migp import MIGP
    from trends_ivae.reduction.stages import choose_n_dims, spectrum_record

    Y, mask = _smooth_data(6, 60, 3)
    migp = MIGP(1, n_keep=100).partial_fit(Y[:30]).partial_fit(Y[30:])
    d, order = choose_n_dims(migp, None, int(mask.sum()), 60, mask)
    assert (d, order.method) == (6, "mdl") and order.step >= 2
    assert spectrum_record(migp, int(mask.sum()), mask)["iid"]["step"] == order.step
    d_old, old = choose_n_dims(MIGP(1, n_keep=100).partial_fit(Y), None, int(mask.sum()), 60)
    assert old.method == "laplace" and d_old > 8
