"""trends-ivae-bids: participant shares, group gathering, fMRIPrep derivatives, bad input."""
from __future__ import annotations

import json
import shutil
import warnings

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.cli.bids_app import main
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.reduction.prepare import prepare
from trends_ivae.data.store import read_prepared
from trends_ivae.reduction.participant import (find_runs, gather_shares, share_paths, write_participant_share)
from trends_ivae.reduction.migp import subspace_distance
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "8",
        "--batch-size", "32", "--seed", "0", "--no-report"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=5))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


def _quiet(argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(argv)


@pytest.fixture(scope="module")
def app_out(bids, tmp_path_factory):
    out = tmp_path_factory.mktemp("app") / "out"
    for label in ("01", "02"):        # two separate "cluster jobs"
        assert _quiet([str(bids), str(out), "participant", "--participant-label", label]) == 0
    assert _quiet([str(bids), str(out), "group", *FAST[:-1]]) == 0      # with the report
    return out


def test_participant_and_group_write_a_valid_derivative(app_out, bids):
    desc = json.loads((app_out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "trends_ivae"
    assert desc["SourceDatasets"][0]["URL"] == bids.resolve().as_uri()
    for s in ("01", "02"):
        paths = share_paths(app_out, s)
        assert all(p.is_file() for p in paths.values())
        tsv = pd.read_csv(app_out / f"sub-{s}" / "func" / f"sub-{s}_task-sim_desc-ivae_timeseries.tsv", sep="\t")
        assert tsv.shape == (80, 3)
    assert nib.load(app_out / "group" / "desc-ivae_components.nii.gz").shape == (14, 16, 14, 3)
    with h5py.File(app_out / "prepared.h5") as f:
        assert f["x"].shape == (160, 6)
    assert not list(app_out.glob(".trends_ivae_group-*"))
    assert (app_out / "report.html").is_file()
    from trends_ivae.export.derivatives import read_manifest

    assert "report.html" in read_manifest(app_out)          # built in place, and listed as the tool's own


def test_gathered_shares_equal_prepare(bids, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = find_bids_runs(bids)
        ref = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20, n_dims=6))
        for s in ("01", "02"):
            write_participant_share([r for r in runs if r.subject == s], tmp_path)
        got = gather_shares([share_paths(tmp_path, s)["share"] for s in ("01", "02")],
                            PrepareSettings.from_options(aux="task+window", window=20, n_dims=6))
    assert (got.mask == ref.mask).all()
    assert subspace_distance(got.basis, ref.basis) < 1e-3
    np.testing.assert_allclose(got.x, ref.x, atol=1e-3 * np.abs(ref.x).max())
    assert got.u_on_demand and ref.u_on_demand        # concatenated factors: u_factors only, no dense u
    np.testing.assert_array_equal(got.u_factors, ref.u_factors)
    np.testing.assert_array_equal(got.u, ref.u)


def test_group_alone_does_everything(app_out, bids, tmp_path, capsys):
    out = tmp_path / "alone"
    assert _quiet([str(bids), str(out), "group", *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}:" in printed and ".trends_ivae_group-" not in printed   # the final path only
    assert not list(out.glob("sub-*/*_share.h5"))          # shares computed in a temporary folder
    assert not (out / "report.html").exists()                # --no-report: as in fit, no report.html
    a, b = read_prepared(out / "prepared.h5"), read_prepared(app_out / "prepared.h5")
    np.testing.assert_allclose(a.x, b.x, atol=1e-4 * np.abs(b.x).max())


def test_group_melodic_layout(app_out, bids, tmp_path):
    out = tmp_path / "mel"
    shutil.copytree(app_out, out)
    assert _quiet([str(bids), str(out), "group", "--layout", "melodic", *FAST]) == 0
    ica = out / "ivae.ica"
    assert (ica / "melodic_IC.nii.gz").is_file()
    assert np.loadtxt(ica / "melodic_mix").shape == (160, 3)
    assert nib.load(ica / "mean.nii.gz").get_fdata().max() > 10


def _fmriprep(bids, root):
    """A fake fMRIPrep output: preprocessed BOLD in two spaces, brain masks, confounds."""
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "fmriprep", "BIDSVersion": "1.8.0", "DatasetType": "derivative"}))
    for s in ("01", "02"):
        func = root / f"sub-{s}" / "func"
        func.mkdir(parents=True)
        src = bids / f"sub-{s}" / "func" / f"sub-{s}_task-sim_bold.nii.gz"
        img = nib.load(src)
        for space in ("MNI", "T1w"):
            shutil.copy(src, func / f"sub-{s}_task-sim_space-{space}_desc-preproc_bold.nii.gz")
            mask = np.zeros(img.shape[:3], np.uint8)
            mask[2:-2, 2:-2, 2:-2] = 1
            nib.save(nib.Nifti1Image(mask, img.affine), func / f"sub-{s}_task-sim_space-{space}_desc-brain_mask.nii.gz")
        rng = np.random.default_rng(int(s))
        pd.DataFrame({"trans_x": rng.normal(size=img.shape[3]), "rot_x": rng.normal(size=img.shape[3]),
                      "csf": rng.normal(size=img.shape[3])}).to_csv(
            func / f"sub-{s}_task-sim_desc-confounds_timeseries.tsv", sep="\t", index=False)
    return root


def test_fmriprep_derivatives(bids, tmp_path):
    deriv = _fmriprep(bids, tmp_path / "fmriprep")
    from trends_ivae.data.errors import PrepareError

    with pytest.raises(PrepareError, match="--space"):
        find_runs(bids, derivatives=deriv)
    runs = find_runs(bids, derivatives=deriv, space="MNI", with_confounds=True)
    assert [r.img.name for r in runs] == [f"sub-{s}_task-sim_space-MNI_desc-preproc_bold.nii.gz" for s in ("01", "02")]
    assert runs[0].confounds.name == "sub-01_task-sim_desc-confounds_timeseries.tsv"
    assert runs[0].events is not None and runs[0].events.name == "sub-01_task-sim_events.tsv"
    assert runs[0].tr is not None                       # sidecar TR from the raw dataset
    out = tmp_path / "out"
    assert _quiet([str(bids), str(out), "participant", "--derivatives", str(deriv), "--space", "MNI",
                   "--confounds", "trans_*", "rot_x"]) == 0
    with h5py.File(share_paths(out, "01")["share"]) as f:
        meta = json.loads(f.attrs["meta"])
    assert meta["mask_source"] == "fmriprep_brain_mask"
    assert meta["clean"]["confounds"] == ["trans_*", "rot_x"]
    assert nib.load(share_paths(out, "01")["mask"]).get_fdata().sum() <= 10 * 12 * 10
    # the group level must be given the same cleaning options
    assert _quiet([str(bids), str(out), "group", "--derivatives", str(deriv), "--space", "MNI", *FAST]) == 1
    assert not (out / "group").exists()
    assert _quiet([str(bids), str(out), "group", "--derivatives", str(deriv), "--space", "MNI",
                   "--confounds", "trans_*", "rot_x", *FAST]) == 0
    assert (out / "group" / "desc-ivae_components.nii.gz").is_file()
    desc = json.loads((out / "dataset_description.json").read_text())
    assert len(desc["SourceDatasets"]) == 2


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else None


def test_output_inside_bids_dir_is_refused(bids, capsys):
    before = _listing(bids)
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(bids / "out"), "participant"])
    assert exc.value.code == 2
    assert "inside BIDS_DIR" in capsys.readouterr().err
    assert _listing(bids) == before


def test_unknown_participant_label_is_refused(bids, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(tmp_path / "o"), "participant", "--participant-label", "01", "99"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "99" in err and "01, 02" in err
    assert not (tmp_path / "o").exists()


def test_group_without_shares_or_raw_data(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    assert main([str(empty), str(tmp_path / "o"), "group", *FAST]) == 1
    assert "no participant outputs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_outputs_need_force(app_out, bids, capsys):
    before = share_paths(app_out, "01")["share"].stat().st_mtime_ns
    # same runs and cleaning: the share is kept (a rerun picks up where it stopped)
    assert main([str(bids), str(app_out), "participant", "--participant-label", "01"]) == 0
    assert "kept" in capsys.readouterr().out
    # other cleaning: refused without --force
    assert main([str(bids), str(app_out), "participant", "--participant-label", "01", "--high-pass", "0.01"]) == 1
    assert "--force" in capsys.readouterr().err
    assert share_paths(app_out, "01")["share"].stat().st_mtime_ns == before
    assert main([str(bids), str(app_out), "group", *FAST]) == 1
    assert "group outputs exist" in capsys.readouterr().err


def test_group_force_keeps_a_users_file(app_out, bids, tmp_path, capsys):
    out = tmp_path / "app"
    shutil.copytree(app_out, out)
    (out / "group" / "my_notes.txt").write_text("my notes")
    before = (out / "model" / "config.json").read_text()
    assert _quiet([str(bids), str(out), "group", "--force", *FAST]) == 1
    err = capsys.readouterr().err
    assert "group/my_notes.txt" in err and "did not write" in err
    assert (out / "group" / "my_notes.txt").read_text() == "my notes"
    assert (out / "model" / "config.json").read_text() == before
    (out / "group" / "my_notes.txt").unlink()
    (out / "notes_beside.txt").write_text("mine")      # outside what the group stage replaces
    assert _quiet([str(bids), str(out), "group", "--force", *FAST]) == 0
    assert (out / "notes_beside.txt").read_text() == "mine"
    assert all(share_paths(out, s)["share"].is_file() for s in ("01", "02"))
    assert _quiet([str(bids), str(out), "group", "--force", *FAST]) == 0   # its own outputs again
