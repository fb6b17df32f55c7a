"""GroupIVAE: images in, maps and time courses out (tiny simulated BIDS data)."""
from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from trends_ivae import GroupIVAE
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.metrics import mcc
from trends_ivae.simulate import FMRISimParams, load_truth, simulate_fmri, write_bids

N_COMP = 4
IVAE_PARAMS = {"max_epochs": 30, "batch_size": 32}


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=3, n_volumes=100, n_components=N_COMP, n_task=2,
                                      shape=(16, 18, 16), seed=3))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def fitted(bids):
    runs = find_bids_runs(bids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GroupIVAE(n_components=N_COMP, aux="task+window", window=20, n_dims=8, n_init=2,
                          estimator_params=IVAE_PARAMS, random_state=0).fit(runs)
    return model, runs


def test_fitted_attributes_have_the_documented_shapes(fitted, bids):
    model, runs = fitted
    first = nib.load(runs[0].img)
    assert model.components_img_.shape == first.shape[:3] + (N_COMP,)
    np.testing.assert_allclose(model.components_img_.affine, first.affine)
    assert model.components_img_.get_data_dtype() == np.float32
    n_vox = int(np.asarray(model.mask_img_.dataobj).sum())
    assert model.components_.shape == (N_COMP, n_vox)
    assert model.effects_.shape == (N_COMP, n_vox)
    assert len(model.timecourses_) == len(runs)
    assert all(tc.shape == (100, N_COMP) for tc in model.timecourses_)
    assert len(model.subject_maps_) == 3
    assert np.isfinite(model.elbo_)
    assert model.masker_.mask_img_.shape == first.shape[:3]


def test_sign_and_order_follow_the_convention(fitted):
    model, _ = fitted
    maps = model.components_
    peaks = maps[np.arange(N_COMP), np.abs(maps).argmax(1)]
    assert np.all(peaks > 0)
    assert np.all(np.diff(model.explained_variance_) <= 1e-12)
    np.testing.assert_allclose(maps.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(maps.std(1), 1, rtol=1e-4)
    # the model is reordered like the maps: its posterior means are the stored time courses
    z = model.estimator_.transform(model.prepared_.x)
    np.testing.assert_allclose(z, np.concatenate(model.timecourses_), atol=1e-5)


def test_time_courses_correlate_with_the_truth(fitted, bids):
    model, _ = fitted
    truth = load_truth(bids)
    est = np.concatenate(model.timecourses_)
    tru = np.concatenate(list(truth.timecourses))
    score = mcc(est, tru).score
    chance = mcc(np.random.default_rng(0).standard_normal(est.shape), tru).score
    assert score > chance + 0.25, (score, chance)


def test_transform_of_a_training_run_gives_its_time_courses(fitted):
    model, runs = fitted
    z = model.transform(runs[:1])
    assert len(z) == 1
    np.testing.assert_allclose(z[0], model.timecourses_[0], atol=1e-3)


def test_inverse_transform_gives_4d_images(fitted):
    model, runs = fitted
    imgs = model.inverse_transform(model.timecourses_[:2])
    assert len(imgs) == 2
    assert imgs[0].shape == nib.load(runs[0].img).shape


def test_score_is_finite(fitted):
    model, runs = fitted
    assert np.isfinite(model.score(runs[:1]))


def test_too_many_components_is_refused(fitted):
    model, _ = fitted
    with pytest.raises(ValueError, match="n_components"):
        GroupIVAE(n_components=9).fit_prepared(model.prepared_)


def test_n_dims_defaults_to_n_components_and_more_dims_warn(bids):
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    runs = find_bids_runs(bids)
    kw = dict(n_components=N_COMP, aux="task+window", window=20, n_init=1,
              estimator_params={"max_epochs": 2, "batch_size": 32}, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = GroupIVAE(**kw).fit(runs)
    assert model.prepared_.n_dims == N_COMP
    assert not [w for w in caught if "dimensions for" in str(w.message)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        more = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20, n_dims=2 * N_COMP))
    with pytest.warns(UserWarning, match=f"{2 * N_COMP} dimensions for {N_COMP} components"):
        GroupIVAE(**kw).fit_prepared(more)


def test_ivae_names_are_deprecated_aliases(fitted):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    model, _ = fitted
    with pytest.warns(DeprecationWarning, match="estimator_"):
        assert model.ivae_ is model.estimator_
    old = GroupIVAE(ivae_params={"max_epochs": 2})
    assert clone(old).get_params()["ivae_params"] == {"max_epochs": 2}   # stored unchanged
    with pytest.warns(DeprecationWarning, match="estimator_params"):
        assert old.build_estimator(200).max_epochs == 2
    with pytest.raises(ValueError, match="ivae_params"):
        GroupIVAE(ivae_params={}, estimator_params={}).build_estimator(200)
    with pytest.raises(NotFittedError, match="GroupIVAE.load"):
        GroupIVAE().transform(None)
