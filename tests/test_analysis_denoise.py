"""Removing components: ``fsl_regfilt``-style regression on arrays and ``trends-ivae denoise``."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.analysis.denoise import components_to_remove, regfilt
from trends_ivae.cli.main import main

from _analysis_fixtures import fitted_folder


def _fsl_regfilt(data, mix, remove):
    """FSL's fsl_regfilt (non-aggressive), written out: demean, pinv of the full design,
    subtract the removed columns' part."""
    mean = data.mean(0)
    design = mix - mix.mean(0)
    beta = np.linalg.pinv(design) @ (data - mean)
    return data - design[:, remove] @ beta[remove, :]


def test_regfilt_is_fsl_regfilt_and_removes_only_what_it_should():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((120, 4))
    maps = rng.standard_normal((4, 50))
    noise = 0.1 * rng.standard_normal((120, 50))
    data = 100 + mix @ maps + noise
    out = regfilt(data, mix, [1, 3])
    assert np.abs(out - _fsl_regfilt(data, mix, [1, 3])).max() < 1e-10
    kept = 100 + mix[:, [0, 2]] @ maps[[0, 2]] + noise
    centred = (out - out.mean(0)) - (kept - kept.mean(0))
    assert np.abs(centred).max() < 0.1 < np.abs(data - kept).max()    # the removed signal is gone
    assert np.allclose(out.mean(0), data.mean(0))                    # each voxel keeps its mean
    aggressive = regfilt(data, mix, [1], aggressive=True)
    x = mix[:, [1]] - mix[:, [1]].mean(0)
    assert np.allclose(x.T @ (aggressive - aggressive.mean(0)), 0, atol=1e-8)   # nothing left along it
    with pytest.raises(ValueError, match="one row per volume"):
        regfilt(data[:10], mix, [0])
    with pytest.raises(ValueError, match="out of range"):
        regfilt(data, mix, [4])


def test_components_to_remove_names_numbers_and_artifacts():
    names = ["ic01", "ic02", "ic03"]
    assert components_to_remove(names, ["ic03", "1"]) == [0, 2]
    assert components_to_remove(names, ["artifacts"], ["network", "artifact", "uncertain"]) == [1]
    with pytest.raises(ValueError, match="unknown component 'ic09'.*ic01, ic02, ic03"):
        components_to_remove(names, ["ic09"])
    with pytest.raises(ValueError, match="trends-ivae label"):
        components_to_remove(names, ["artifacts"])
    with pytest.raises(ValueError, match="no component"):
        components_to_remove(names, ["artifacts"], ["network"] * 3)
    with pytest.raises(ValueError, match="every component"):
        components_to_remove(names, ["1", "2", "3"])


@pytest.fixture(scope="module")
def fitted():
    out, bids, _ = fitted_folder()
    return out, bids


def test_denoise_command_equals_regfilt_on_the_fits_own_runs(fitted, tmp_path):
    fit, bids = fitted
    out = tmp_path / "clean"
    assert main(["denoise", str(fit), "--remove", "ic02", "--out", str(out)]) == 0
    mask = np.asarray(nib.load(str(fit / "group/desc-ivae_mask.nii.gz")).dataobj) > 0
    files = sorted(out.glob("sub-*/func/*_desc-ivaedenoised_bold.nii.gz"))
    assert len(files) == 2
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    for f in files:
        side = json.loads(f.with_name(f.name.replace(".nii.gz", ".json")).read_text())
        assert side["RemovedComponents"] == ["ic02"] and side["Method"] == "regression"
        raw = nib.load(side["Sources"][0])
        tsv = next(fit.glob(f"{f.parts[-3]}/func/*_desc-ivae_timeseries.tsv"))
        z = pd.read_csv(tsv, sep="\t").to_numpy(float)
        y = raw.get_fdata()[mask].T
        expected = _fsl_regfilt(y, z, [1])
        got = nib.load(str(f)).get_fdata()
        assert got.shape == raw.shape
        assert np.abs(got[mask].T - expected).max() <= 1e-5 * np.abs(y).max()
        assert np.array_equal(got[~mask], raw.get_fdata()[~mask])          # outside the mask: unchanged
    assert main(["denoise", str(fit), "--remove", "ic02", "--out", str(out)]) == 1       # exists: --force
    assert main(["denoise", str(fit), "--remove", "ic02", "--out", str(out), "--force"]) == 0


def test_denoise_through_the_decoder_and_new_runs(fitted, tmp_path):
    fit, bids = fitted
    run = next(bids.glob("sub-01/func/*_bold.nii.gz"))
    events = next(bids.glob("sub-01/func/*_events.tsv"))
    assert main(["denoise", str(fit), "--remove", "ic01", "--method", "decoder", "--out", str(tmp_path / "d")]) == 0
    assert main(["denoise", str(fit), "--remove", "ic01", "--func", str(run), "--events", str(events),
                 "--out", str(tmp_path / "n")]) == 0
    dec = nib.load(str(next((tmp_path / "d").glob("sub-01/func/*.nii.gz")))).get_fdata()
    new = nib.load(str(next((tmp_path / "n").glob("sub-01/func/*.nii.gz")))).get_fdata()
    raw = nib.load(str(run)).get_fdata()
    assert dec.shape == new.shape == raw.shape
    assert not np.allclose(dec, raw) and not np.allclose(new, raw)


def test_denoise_bad_inputs_write_nothing(fitted, tmp_path, capsys):
    fit, bids = fitted
    out = tmp_path / "never"
    assert main(["denoise", str(fit), "--remove", "ic09", "--out", str(out)]) == 1
    assert "unknown component 'ic09'" in capsys.readouterr().err
    assert main(["denoise", str(fit), "--remove", "artifacts", "--out", str(out)]) == 1
    assert "trends-ivae label" in capsys.readouterr().err
    run = next(bids.glob("sub-01/func/*_bold.nii.gz"))
    assert main(["denoise", str(fit), "--remove", "ic01", "--func", str(run), "--out", str(bids)]) == 1
    assert not out.exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["denoise", str(fit), "--remove", "ic01", "--out", str(tmp_path / "mine"), "--force"]) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    with pytest.raises(SystemExit):
        main(["denoise", str(fit), "--remove", "ic01", "--out", str(out), "--method", "decoder", "--aggressive"])
