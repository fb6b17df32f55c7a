"""The model order (``--n-components auto``): Minka's Laplace PCA estimate, as MELODIC -d 0."""
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
        estimate_order(np.ones(5), 10, method="aic")
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
    assert d.parameters["order"]["method"] == "laplace"
    write_prepared(tmp_path / "p.h5", d)
    again = read_prepared(tmp_path / "p.h5")   # the spectrum travels with the file
    assert order_from_parameters(again.parameters).n_components == d.n_dims
    fixed = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=8, n_keep=1000))
    assert fixed.parameters["order"] is None
    assert order_from_parameters(fixed.parameters, max_order=8).n_components == d.n_dims
