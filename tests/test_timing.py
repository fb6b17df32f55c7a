"""Timing in a fit (issue 21): one TR per fit, the TR in the MELODIC header, ``--drop-initial``."""
from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from _fmri_fixtures import write_run
from trends_ivae.cli.main import main

FAST = ["--aux", "window", "--window", "10", "--n-components", "2", "--n-init", "1", "--max-epochs", "2",
        "--no-report", "-q"]


def _main(argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(argv)


def _files(tmp_path, trs):
    return [str(write_run(tmp_path / f"sub-0{i}_bold.nii.gz", n_volumes=40, tr=t, seed=i))
            for i, t in enumerate(trs, start=1)]


def test_a_fit_of_runs_with_different_trs_is_refused(tmp_path, capsys):
    files = _files(tmp_path, [2.0, 2.0, 1.0])
    out = tmp_path / "fit"
    assert _main(["fit", "--func", *files, "--layout", "melodic", "--out", str(out), *FAST]) != 0
    err = capsys.readouterr().err
    assert "different TRs" in err and "sub-03_bold.nii.gz" in err and "TR 1 s" in err and "TR 2 s" in err
    assert "--tr" in err
    assert not out.exists()


def test_melodic_ic_carries_the_tr(tmp_path):
    files = _files(tmp_path, [1.0, 1.0, 1.0])   # headers say 1 s; the user knows better
    out = tmp_path / "fit.ica"
    assert _main(["fit", "--func", *files, "--tr", "2.5", "--layout", "melodic", "--out", str(out), *FAST]) == 0
    img = nib.load(out / "melodic_IC.nii.gz")
    assert img.header.get_zooms()[3] == pytest.approx(2.5) and img.header.get_xyzt_units()[1] == "sec"


def test_prepare_drop_initial(tmp_path):
    files = _files(tmp_path, [2.0, 2.0])
    out = tmp_path / "prep"
    assert _main(["prepare", "--func", *files, "--aux", "subject", "--n-dims", "3", "--drop-initial", "3",
                  "--out", str(out)]) == 0
    from trends_ivae.data.store import read_prepared

    p = read_prepared(out / "prepared.h5")
    assert p.x.shape[0] == 2 * 37 and p.clean_settings.drop_initial == 3
    assert [r["censored"] for r in p.runs] == [[0, 1, 2]] * 2 and np.all(p.volume[:37] == np.arange(3, 40))
    assert _main(["prepare", "--func", *files, "--drop-initial", "-1", "--out", str(tmp_path / "x")]) != 0
    assert not (tmp_path / "x").exists()
