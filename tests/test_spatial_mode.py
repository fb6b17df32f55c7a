"""The spatial mode (``GroupIVAE(ica="spatial")``, ``fit --ica spatial``) and its u from space."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from trends_ivae import GroupIVAE
from trends_ivae.cli.main import main
from trends_ivae.data.spatial_aux import (SpatialAuxSettings, atlas_codes, rbf_columns, segment_codes,
                                          spatial_aux, voxel_coordinates)
from trends_ivae.metrics import mcc
from trends_ivae.simulate.fmri import simulate_fmri

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"max_epochs": 25}


def _mask_img(shape=(10, 9, 8)) -> nib.Nifti1Image:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    return nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0]))


# ----------------------------------------------------------------------------- u builders
def test_segments_are_compact_and_cover_the_mask():
    img = _mask_img()
    coords = voxel_coordinates(np.asarray(img.dataobj), img.affine)
    codes = segment_codes(coords, 12, random_state=0)
    assert codes.shape == (coords.shape[0],)
    assert set(np.unique(codes)) == set(range(12))
    # compact: a segment's spread is well below the mask's
    spread = np.mean([coords[codes == j].std(0).mean() for j in range(12)])
    assert spread < 0.6 * coords.std(0).mean()
    # deterministic, and renumbered by position (not by k-means' labelling)
    assert np.array_equal(codes, segment_codes(coords, 12, random_state=0))


def test_multiscale_segments_are_factors_and_rbf_is_continuous():
    img = _mask_img()
    n = int(np.asarray(img.dataobj).sum())
    u = spatial_aux(SpatialAuxSettings(spec="segments", n_segments=(4, 16)), img)
    assert u.kind == "factors" and len(u) == n and u.n_levels == 20
    r = rbf_columns(voxel_coordinates(np.asarray(img.dataobj), img.affine), 6)
    assert r.shape == (n, 6) and r.min() >= 0 and np.allclose(r.max(0), 1, atol=0.2)
    both = spatial_aux(SpatialAuxSettings(spec="segments+rbf", n_segments=5, n_rbf=6), img)
    assert both.kind == "continuous" and both.data.shape == (n, 11)


def test_atlas_parcels_are_levels_and_other_grids_are_refused(tmp_path):
    img = _mask_img()
    labels = np.zeros(img.shape, dtype=np.int16)
    labels[:5] = 3
    labels[5:] = 7
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels, img.affine), atlas)
    codes, names = atlas_codes(atlas, img)
    assert names == ["3", "7"] and set(np.unique(codes)) == {0, 1}
    u = spatial_aux(SpatialAuxSettings(spec="atlas", atlas=atlas), img)
    assert u.kind == "discrete" and u.factors[0]["name"] == "atlas"
    other = tmp_path / "other_grid.nii.gz"
    nib.save(nib.Nifti1Image(labels[:, :, :5], img.affine), other)
    with pytest.raises(ValueError, match="other_grid.nii.gz.*another grid"):
        atlas_codes(other, img)


@pytest.mark.parametrize("settings, message", [
    (SpatialAuxSettings(n_segments=10_000), "larger than the .* voxels"),
    (SpatialAuxSettings(spec="segments+voxels"), "unknown part"),
    (SpatialAuxSettings(spec="atlas"), "needs an atlas"),
    (SpatialAuxSettings(n_segments=1), ">= 2"),
])
def test_bad_spatial_u_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        spatial_aux(settings, _mask_img())


# ----------------------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def sim():
    return simulate_fmri(n_subjects=3, n_volumes=100, n_components=6, n_task=0, seed=11)


@pytest.fixture(scope="module")
def spatial_fit(sim):
    model = GroupIVAE(6, ica="spatial", aux="window", window=20, n_segments=40, mask=sim.truth.mask_img(),
                      n_init=1, random_state=0, estimator_params=FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(sim.imgs)


def test_spatial_mode_recovers_known_maps(sim, spatial_fit):
    assert spatial_fit.ica_ == "spatial"
    score = mcc(spatial_fit.components_.T, sim.truth.maps.T).score
    assert score > 0.8, score
    assert spatial_fit.components_.shape == sim.truth.maps.shape
    # time courses: one per run; the maps' strongest peaks positive; sorted by explained variance
    assert [t.shape for t in spatial_fit.timecourses_] == [(100, 6)] * 3
    peaks = spatial_fit.components_[np.arange(6), np.abs(spatial_fit.components_).argmax(1)]
    assert (peaks > 0).all()
    assert np.all(np.diff(spatial_fit.explained_variance_) <= 1e-12)


def test_spatial_transform_reproduces_the_fit_and_temporal_only_methods_refuse(sim, spatial_fit):
    again = spatial_fit.transform(sim.imgs[:1])[0]
    np.testing.assert_allclose(again, spatial_fit.timecourses_[0], atol=1e-4)
    recon = spatial_fit.inverse_transform(spatial_fit.timecourses_[0])[0]
    assert recon.shape == sim.imgs[0].shape
    for call in (lambda: spatial_fit.sample(n_volumes=10), lambda: spatial_fit.score(sim.imgs[:1])):
        with pytest.raises(NotImplementedError, match="temporal mode"):
            call()


def test_unknown_mode_is_refused(sim):
    with pytest.raises(ValueError, match="ica='space'"):
        GroupIVAE(3, ica="space").fit(sim.imgs[:1])


# ----------------------------------------------------------------------------- files
def _fit(bids: Path, out: Path, mode: str) -> set[str]:
    args = ["fit", "--bids", str(bids), "--out", str(out), "--n-components", "4", "--aux", "window",
            "--window", "20", "--ica", mode, "--n-segments", "20", "--max-epochs", "3", "--n-init", "1",
            "--no-report"]
    assert main(args) == 0
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_both_modes_write_the_same_files_and_the_record_names_the_mode(tmp_path):
    bids = tmp_path / "ds"
    assert main(["simulate", str(bids), "--subjects", "2", "--scans", "60", "--components", "4",
                 "--task-components", "0", "--seed", "3"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spatial = _fit(bids, tmp_path / "spatial", "spatial")
        temporal = _fit(bids, tmp_path / "temporal", "temporal")
    # the same files, but for the prior's dynamics over time (analysis/*desc-prior_timeseries*):
    # in the spatial mode the prior is over space (docs/analysis.md)
    over_time = {f for f in temporal if "desc-prior_timeseries" in f}
    assert over_time and spatial == temporal - over_time
    config = json.loads((tmp_path / "spatial" / "model" / "config.json").read_text())
    assert config["mode"]["ica"] == "spatial" and config["mode"]["u"]["spec"] == "segments"
    assert config["mode"]["u"]["n_levels"] == 20
    assert json.loads((tmp_path / "temporal" / "model" / "config.json").read_text())["mode"]["ica"] == "temporal"
    sidecar = json.loads((tmp_path / "spatial" / "group" / "desc-ivae_components.json").read_text())
    assert '"ica": "spatial"' in json.dumps(sidecar)
    # the model folder reads back in its mode
    loaded = GroupIVAE.load(tmp_path / "spatial", device="cpu")
    assert loaded.ica_ == "spatial"
    # follow-ups: removing a component from a new run (regression on the maps' time courses)
    # works; through the decoder it is refused, and nothing is written
    run = next(bids.glob("sub-01/func/*_bold.nii.gz"))
    assert main(["denoise", str(tmp_path / "spatial"), "--remove", "ic01", "--func", str(run),
                 "--out", str(tmp_path / "clean")]) == 0
    assert next((tmp_path / "clean").rglob("*desc-ivaedenoised_bold.nii.gz"), None) is not None
    assert main(["denoise", str(tmp_path / "spatial"), "--remove", "ic01", "--method", "decoder",
                 "--out", str(tmp_path / "decoded")]) != 0
    assert not (tmp_path / "decoded").exists()
