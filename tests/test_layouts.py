"""MELODIC and GIFT layouts: names, shapes, and agreement with the BIDS layout."""
from __future__ import annotations

import warnings
from dataclasses import replace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae import GroupIVAE
from trends_ivae.cli.main import main
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.export.fit_outputs import FitOutputs
from trends_ivae.export.layouts import gift_subjects, mean_epi, power_spectra, write_gift, write_layout
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "8",
        "--batch-size", "32", "--seed", "0"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=5))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def layouts(bids, tmp_path_factory):
    """One fit, written in the three layouts from the same arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = find_bids_runs(bids)
        model = GroupIVAE(n_components=3, n_dims=6, n_init=1, random_state=0,
                          estimator_params={"max_epochs": 8, "batch_size": 32}).fit(runs)
    root = tmp_path_factory.mktemp("layouts")
    run_dicts = [{**r["entities"], "sub": r["subject"], "path": r["file"], "tr": r["tr"]} for r in model.runs_]
    subject_maps = [model.subject_maps_[r["subject_index"]] for r in model.runs_]
    outputs = FitOutputs(mask_img=model.mask_img_, group_maps=model.components_, effect_maps=model.effects_,
                         runs=run_dicts, timecourses=model.timecourses_, subject_maps=subject_maps,
                         explained_variance=model.explained_variance_)
    for layout in ("bids", "melodic", "gift"):
        write_layout(layout, root / ("out.ica" if layout == "melodic" else layout), outputs, prefix="study")
    return root, model


def test_melodic_names_shapes_and_agreement(layouts, bids):
    root, model = layouts
    ica = root / "out.ica"
    for name in ("melodic_IC.nii.gz", "melodic_mix", "melodic_FTmix", "mask.nii.gz", "mean.nii.gz",
                 "melodic_ICstats"):
        assert (ica / name).is_file(), name
    bold = nib.load(sorted(bids.glob("sub-01/func/*_bold.nii.gz"))[0])
    ic = nib.load(ica / "melodic_IC.nii.gz")
    assert ic.shape == bold.shape[:3] + (3,)
    assert ic.header.get_zooms()[3] == pytest.approx(bold.header.get_zooms()[3])
    group = nib.load(root / "bids" / "group" / "desc-ivae_components.nii.gz")
    np.testing.assert_allclose(ic.get_fdata(), group.get_fdata(), atol=1e-6)
    mix = np.loadtxt(ica / "melodic_mix")
    assert mix.shape == (160, 3)
    tsvs = [pd.read_csv(root / "bids" / f"sub-{s}" / "func" / f"sub-{s}_task-sim_desc-ivae_timeseries.tsv",
                        sep="\t").to_numpy() for s in ("01", "02")]
    np.testing.assert_allclose(mix, np.concatenate(tsvs), rtol=1e-4, atol=1e-4)
    ft = np.loadtxt(ica / "melodic_FTmix")
    assert ft.shape == (40, 3) and (ft >= 0).all()
    mean = nib.load(ica / "mean.nii.gz").get_fdata()
    assert mean.shape == bold.shape[:3] and mean.max() > 10     # the mean EPI, not the ~0 voxel mean
    assert set(np.unique(nib.load(ica / "mask.nii.gz").get_fdata())) <= {0, 1}
    stats = np.loadtxt(ica / "melodic_ICstats")   # % of explained, % of total variance
    assert stats.shape == (3, 2)
    assert stats[:, 0].sum() == pytest.approx(100, rel=1e-6)
    np.testing.assert_allclose(stats[:, 1], 100 * model.explained_variance_, rtol=1e-6)


def test_gift_names_shapes_and_agreement(layouts):
    root, model = layouts
    gift = root / "gift"
    agg = nib.load(gift / "study_agg__component_ica_.nii")
    group = nib.load(root / "bids" / "group" / "desc-ivae_components.nii.gz")
    np.testing.assert_allclose(agg.get_fdata(), group.get_fdata(), atol=1e-6)
    assert (gift / "studyMask.nii").is_file()
    for k, s in enumerate(("01", "02"), start=1):
        tc = nib.load(gift / f"study_sub{k:03d}_timecourses_ica_s1_.nii").get_fdata()
        tsv = pd.read_csv(root / "bids" / f"sub-{s}" / "func" / f"sub-{s}_task-sim_desc-ivae_timeseries.tsv",
                          sep="\t").to_numpy()
        assert tc.shape == (80, 3)
        np.testing.assert_allclose(tc, tsv, rtol=1e-4, atol=1e-4)
        smap = nib.load(gift / f"study_sub{k:03d}_component_ica_s1_.nii").get_fdata()
        bids_map = nib.load(root / "bids" / f"sub-{s}" / "func" /
                            f"sub-{s}_task-sim_desc-ivae_components.nii.gz").get_fdata()
        np.testing.assert_allclose(smap, bids_map, atol=1e-6)
    table = pd.read_csv(gift / "study_subjects.tsv", sep="\t", dtype=str)
    assert list(table["gift_subject"]) == ["sub001", "sub002"] and list(table["sub"]) == ["01", "02"]


def test_gift_sessions_and_refusals(tmp_path):
    mask = nib.Nifti1Image(np.ones((3, 3, 2), np.uint8), np.eye(4))
    maps = np.random.default_rng(0).normal(size=(2, 18))
    runs = [{"sub": "b", "run": "1"}, {"sub": "a", "run": "1"}, {"sub": "b", "run": "2"}]
    assert gift_subjects(runs) == [(1, 1), (2, 1), (1, 2)]
    tcs = [np.ones((5, 2)), np.ones((6, 2)), np.ones((7, 2))]
    outputs = FitOutputs(mask_img=mask, group_maps=maps, runs=runs, timecourses=tcs)
    write_gift(tmp_path / "g", outputs, prefix="p")
    assert nib.load(tmp_path / "g" / "p_sub001_timecourses_ica_s2_.nii").shape == (7, 2)
    assert (tmp_path / "g" / "p_sub002_component_ica_s1_.nii").is_file()
    with pytest.raises(FileExistsError):
        write_gift(tmp_path / "g", outputs)
    with pytest.raises(ValueError, match="timecourses"):
        write_gift(tmp_path / "h", replace(outputs, timecourses=[np.ones((5, 3))] * 3))
    assert not (tmp_path / "h").exists()


def test_power_spectra_peak_at_the_signal_frequency():
    t = np.arange(64)
    tc = np.stack([np.sin(2 * np.pi * 8 * t / 64), np.cos(2 * np.pi * 3 * t / 64)], axis=1)
    ft = power_spectra([tc, tc[:60]])
    assert ft.shape == (30, 2)
    assert np.argmax(ft[:, 1]) + 1 == 3


def test_mean_epi_averages_runs(tmp_path):
    a = nib.Nifti1Image(np.full((2, 2, 2, 3), 2.0, np.float32), np.eye(4))
    b = nib.Nifti1Image(np.full((2, 2, 2, 4), 4.0, np.float32), np.eye(4))
    np.testing.assert_allclose(mean_epi([a, b]).get_fdata(), 3.0)


def test_fit_cli_layout_option(bids, tmp_path):
    out = tmp_path / "fit.ica"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), "--layout", "melodic", *FAST]) == 0
    assert (out / "melodic_IC.nii.gz").is_file() and (out / "model" / "estimator.pt").is_file()
    assert not (out / "group").exists()
    model = GroupIVAE.load(out, device="cpu")
    z = model.transform(sorted(bids.glob("sub-02/func/*_bold.nii.gz")))
    np.testing.assert_allclose(z[0], np.loadtxt(out / "melodic_mix")[80:], rtol=1e-4, atol=1e-4)


def test_melodic_folder_has_the_files_fsl_users_open(bids, tmp_path):
    """melodic_unmix, melodic_pca, eigenvalues_percent, log.txt, stats/thresh_zstatN: readable,
    with shapes that agree with each other and with the fit; the report reads the folder."""
    import json

    from trends_ivae.data.store import read_prepared
    from trends_ivae.export.melodic_files import THRESHOLD
    from trends_ivae.report import build_report

    out = tmp_path / "fit.ica"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), "--layout", "melodic", *FAST]) == 0
    prepared = read_prepared(out / "prepared.h5")
    d = prepared.n_dims
    mix = np.loadtxt(out / "melodic_mix")
    unmix = np.loadtxt(out / "melodic_unmix")
    assert unmix.shape == (3, d)
    x = np.concatenate([prepared.x[prepared.run == i] for i in range(len(prepared.runs))])
    fit = x @ unmix.T      # the least-squares linear map from the reduced data to the time courses
    assert np.corrcoef(fit[:, 0], mix[:, 0])[0, 1] > 0.5
    pca = nib.load(out / "melodic_pca.nii.gz")
    ic = nib.load(out / "melodic_IC.nii.gz")
    assert pca.shape == ic.shape[:3] + (d,)
    mask = nib.load(out / "mask.nii.gz").get_fdata() > 0
    np.testing.assert_allclose(pca.get_fdata()[mask], prepared.basis, atol=1e-6)
    ev = np.loadtxt(out / "eigenvalues_percent")
    assert ev.shape == (d,) and np.all(np.diff(ev) >= 0) and 0 < ev[-1] <= 1 + 1e-6
    np.testing.assert_allclose(ev, np.cumsum(prepared.explained_variance_ratio), rtol=1e-5)
    for i in range(3):
        z = ic.get_fdata()[..., i]
        t = nib.load(out / "stats" / f"thresh_zstat{i + 1}.nii.gz").get_fdata()
        assert t.shape == ic.shape[:3]
        np.testing.assert_allclose(t, np.where(np.abs(z) > THRESHOLD, z, 0), atol=1e-6)
    assert not (out / "stats" / "thresh_zstat4.nii.gz").exists()
    log = (out / "log.txt").read_text()
    assert "trends-ivae" in log and "melodic_unmix" in log and "not written" in log and "R^2" in log
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["results"]["early_stopping"]["n_epochs"] == 8
    page = build_report(out, interactive=False)
    assert page == out / "report" / "00index.html" and "ic03" in page.read_text()


@pytest.mark.parametrize("layout", ["melodic", "gift"])
def test_layouts_keep_the_input_space_codes(tmp_path, layout):
    """An MNI-coded input (qform/sform code 4) gives MNI-coded maps, mask and mean image,
    as in the BIDS layout, although the mask (as nilearn computes it) has codes 1/2."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-20, -30, -10]
    bold = nib.Nifti1Image(np.random.default_rng(0).normal(100, 1, (4, 5, 3, 6)).astype(np.float32), affine)
    bold.header.set_qform(affine, code=4)
    bold.header.set_sform(affine, code=4)
    run = tmp_path / "sub-01_task-x_space-MNI152NLin2009cAsym_bold.nii.gz"
    bold.to_filename(run)
    mask = nib.Nifti1Image(np.ones((4, 5, 3), np.uint8), affine)   # nibabel's default codes
    mask.header.set_qform(affine, code=1)
    mask.header.set_sform(affine, code=2)
    maps = np.random.default_rng(1).normal(size=(2, 60))
    out = tmp_path / ("out.ica" if layout == "melodic" else "gift")
    write_layout(layout, out, FitOutputs(mask_img=mask, group_maps=maps, timecourses=[np.ones((6, 2))],
                                         runs=[{"sub": "01", "path": str(run), "tr": 2.0}], subject_maps=[maps],
                                         explained_variance=[0.2, 0.1]), prefix="p")
    images = [f for f in sorted(out.iterdir()) if f.name.endswith((".nii", ".nii.gz"))
              and "timecourses" not in f.name]
    assert len(images) >= 3
    for f in images:
        hdr = nib.load(f).header
        assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (4, 4), f.name
        np.testing.assert_allclose(nib.load(f).affine, affine)
