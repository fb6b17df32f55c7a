"""The real-data benchmark's network metrics and loaders (``benchmarks/real_data.py``,
issue 20) on generated maps; the GIFT smoke run is skipped when the data are absent."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def rd():
    return _load("real_data")


def _blobs(n_maps: int, shape=(12, 14, 10), seed: int = 0) -> np.ndarray:
    """Smooth, overlapping Gaussian blobs flattened: (n_maps, n_voxels)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = rng.uniform(0, 1, (n_maps, 3)) * np.array(shape)
    d2 = ((grid[None] - centres[:, None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * 2.0 ** 2)) + 0.01 * rng.normal(size=d2.shape)


def test_coverage_is_one_for_the_reference_itself(rd):
    ref = _blobs(6)
    s = rd.network_scores(ref, ref)
    assert s["coverage"] == pytest.approx(1.0)
    assert s["one_to_one"] == pytest.approx(1.0)
    assert s["n_matched"] == s["n_networks"] == 6
    np.testing.assert_array_equal(s["best_map"], np.arange(6))


def test_one_to_one_matches_shuffled_and_flipped_maps(rd):
    ref = _blobs(5, seed=1)
    order = np.array([3, 0, 4, 1, 2])
    signs = np.array([1, -1, -1, 1, -1])[:, None]
    extra = _blobs(3, seed=2)
    maps = np.vstack([signs * ref[order], extra])          # 8 maps, 5 of them the networks
    s = rd.network_scores(maps, ref)
    assert s["coverage"] == pytest.approx(1.0)
    assert s["one_to_one"] == pytest.approx(1.0)
    np.testing.assert_array_equal(s["best_map"], np.argsort(order))


def test_one_to_one_penalises_a_map_that_serves_two_networks(rd):
    ref = _blobs(2, seed=3)
    both = ref.sum(0, keepdims=True)                      # one map like both networks
    maps = np.vstack([both, _blobs(1, seed=4)])
    s = rd.network_scores(maps, ref)
    assert s["one_to_one"] < s["coverage"]                  # only one network may use the shared map


def test_threshold_counts_the_matched_networks(rd):
    ref = _blobs(4, seed=5)
    rng = np.random.default_rng(0)
    maps = np.vstack([ref[:2], rng.normal(size=(2, ref.shape[1]))])
    s = rd.network_scores(maps, ref, threshold=0.5)
    assert s["n_matched"] == 2
    assert rd.network_scores(maps, ref, threshold=0.0)["n_matched"] == 4


def test_map_agreement_is_invariant_to_sign_and_order(rd):
    a = _blobs(6, seed=6)
    rng = np.random.default_rng(1)
    b = (rng.choice([-1, 1], size=6)[:, None] * a[rng.permutation(6)]) * 3.0 + 1.0
    assert rd.map_agreement(a, b) == pytest.approx(1.0)
    noisy = a + 0.5 * rng.normal(size=a.shape)
    assert rd.map_agreement(a, noisy) == pytest.approx(rd.map_agreement(noisy[::-1], -a))
    assert rd.map_agreement(a, noisy) < 1.0


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((2, 9))])
def test_maps_on_other_voxels_are_refused(rd, bad):
    with pytest.raises(ValueError, match="voxels|2-D"):
        rd.map_agreement(np.zeros((2, 10)), bad)
    with pytest.raises(ValueError, match="voxels|2-D"):
        rd.network_scores(bad, np.zeros((3, 10)))


def _atlas(folder: Path, text: str) -> Path:
    """A tiny RSN-like atlas: 4 binary ROI boxes at 3 mm and a key."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.zeros((20, 20, 20, 4), np.int16)
    data[2:6, 2:6, 2:6, 0] = 1
    data[2:6, 12:16, 2:6, 1] = 1
    data[12:16, 2:6, 12:16, 2] = 1
    data[12:16, 12:16, 12:16, 3] = 1
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), folder / "RSN.nii")
    (folder / "RSN.txt").write_text(text)
    return folder


def test_rsn_reference_is_the_union_of_rois_on_the_mask_grid(rd, tmp_path):
    folder = _atlas(tmp_path / "gift", "Left, 1, 2\nRight, 3\nLast, 4")     # no final newline
    mask = nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.diag([6.0, 6.0, 6.0, 1.0]))
    ref, names = rd.rsn_reference(mask, folder)
    assert names == ["Left", "Right", "Last"]
    assert ref.shape == (3, 1000)
    vol = ref.reshape(3, 10, 10, 10)
    assert vol[0, 2, 2, 2] > 0.5 and vol[0, 2, 7, 2] > 0.5     # both ROIs of "Left"
    assert vol[1, 7, 2, 7] > 0.5 and vol[1, 2, 2, 2] < 0.1
    assert abs(vol[2, 2, 2, 2]) < 0.1


@pytest.mark.parametrize("text, match", [("Net, 1, x\n", "integers"), ("Net, 1, 9\n", "outside"),
                                         ("Net\n", "no ROI")])
def test_a_bad_key_names_the_file(rd, tmp_path, text, match):
    folder = _atlas(tmp_path / "gift", text)
    mask = nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.diag([15.0, 15.0, 15.0, 1.0]))
    with pytest.raises(ValueError, match=match) as err:
        rd.rsn_reference(mask, folder)
    assert "RSN.txt" in str(err.value)


def test_gift_dir_follows_the_environment(rd, tmp_path, monkeypatch):
    folder = _atlas(tmp_path / "gift", "Net, 1\n")
    monkeypatch.setenv("TRENDS_IVAE_GIFT_DIR", str(tmp_path / "nowhere"))
    assert rd.gift_dir() is None
    monkeypatch.setenv("TRENDS_IVAE_GIFT_DIR", str(folder))
    assert rd.gift_dir() is None                     # no subjects yet
    (folder / "sub-01_lowres.nii").write_bytes(b"")
    assert rd.gift_dir() == folder.resolve()
    assert rd.gift_runs(folder) == [folder / "sub-01_lowres.nii"]


# ----------------------------------------------------------------------------- the benchmarks
TINY_SIM = dict(n_subjects=3, n_volumes=60, n_components=4, n_task=0, shape=(14, 16, 14),
                voxel_size=6.0, blob_fwhm=(18.0, 24.0), snr=4.0, nonlinear=False)


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory):
    from trends_ivae.simulate.fmri import load_truth, simulate_fmri, write_bids

    bids = tmp_path_factory.mktemp("sim") / "bids"
    write_bids(simulate_fmri(seed=7, **TINY_SIM), bids, force=True)
    return bids, load_truth(bids)


def test_truth_mcc_is_one_for_the_true_maps_in_any_order(tiny_sim):
    sim = _load("spatial_simulation")
    _, truth = tiny_sim
    maps = -truth.maps[::-1]
    assert sim.truth_mcc(maps, truth.mask, truth) == pytest.approx(1.0)
    noisy = maps + np.random.default_rng(0).normal(size=maps.shape)
    assert sim.truth_mcc(noisy, truth.mask, truth) < 0.99


def test_spatial_fastica_on_the_common_mask_recovers_the_simulated_maps(rd, tiny_sim):
    rn = _load("real_networks")
    sim = _load("spatial_simulation")
    bids, truth = tiny_sim
    runs = sorted(bids.glob("sub-*/func/*_bold.nii*"))
    mask_img = rd.common_mask(runs)
    maps, wall = rn.fit_maps("fastica-spatial", runs, mask_img, 4, 0, smoothing=None, tr=2.0)
    mask = np.asarray(mask_img.dataobj) > 0
    assert maps.shape == (4, int(mask.sum())) and wall > 0
    assert sim.truth_mcc(maps, mask, truth) > 0.8


def test_a_groupivae_without_the_spatial_mode_is_not_available(monkeypatch):
    """Before the spatial mode exists, GroupIVAE's TypeError becomes NotAvailable."""
    rn = _load("real_networks")
    import trends_ivae

    def reject(*args, **kwargs):
        raise TypeError("GroupIVAE.__init__() got an unexpected keyword argument 'ica'")

    monkeypatch.setitem(vars(trends_ivae), "GroupIVAE", reject)   # not getattr: that imports torch
    mask = nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4))
    for method in ("ivae-spatial", "ivae-spatial-linear"):
        with pytest.raises(rn.NotAvailable, match="spatial mode"):
            rn.fit_maps(method, [], mask, 4, 0, smoothing=None, tr=2.0)


GIFT = _load("real_data").gift_dir()


@pytest.mark.skipif(GIFT is None, reason="GIFT's development data are absent (TRENDS_IVAE_GIFT_DIR)")
def test_gift_smoke(tmp_path, capsys):
    """The GIFT table with 3 components, one seed, one fast method."""
    import json

    rn = _load("real_networks")
    out = tmp_path / "gift.json"
    assert rn.main(["--methods", "fastica-spatial", "--n-components", "3", "--seeds", "0",
                    "--no-split", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fastica-spatial |" in printed
    rec = json.loads(out.read_text())
    assert len(rec["networks"]) == 14
    row = rec["rows"][0]
    assert 0 < row["coverage"] <= 1 and 0 <= row["n_matched"] <= 14


def test_absent_gift_data_skip_the_table(monkeypatch, tmp_path, capsys):
    rn = _load("real_networks")
    monkeypatch.setenv("TRENDS_IVAE_GIFT_DIR", str(tmp_path / "nowhere"))
    assert rn.main(["--methods", "canica"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_subspace_ceiling_is_one_inside_the_span_and_bounds_linear_maps(rd):
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(500, 4))
    inside = (basis @ rng.normal(size=(4, 2))).T                 # two networks in the span
    outside = rng.normal(size=(1, 500))
    ref = np.vstack([inside, outside])
    ceiling = rd.subspace_ceiling(basis, ref)
    np.testing.assert_allclose(ceiling[:2], 1.0)
    maps = (basis @ rng.normal(size=(4, 6))).T                   # any maps linear in the basis
    assert np.all(rd.network_scores(maps, ref)["best"] <= ceiling + 1e-12)
    with pytest.raises(ValueError, match="voxels"):
        rd.subspace_ceiling(basis[:10], ref)
