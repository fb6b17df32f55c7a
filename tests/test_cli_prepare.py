"""``trends-ivae prepare`` through main([...]) on tiny generated data."""
import json

import numpy as np
import pytest

from _fmri_fixtures import BLOCK_EVENTS, make_bids, write_events, write_mask, write_run
from trends_ivae.cli.main import main
from trends_ivae.data.store import read_prepared


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    return make_bids(tmp_path_factory.mktemp("cli") / "ds", n_subjects=2, n_runs=2, n_volumes=40)


def test_help_lists_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--n-dims" in out and "30 for" in out and "--force" in out and "(default: None)" not in out


def test_bids_round_trip_and_force(bids, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prepare", "--bids", str(bids), "--task", "faces", "--out", str(out),
               "--aux", "task+subject", "--aux-combine", "product", "--n-dims", "4", "--participant-label", "01", "02"])
    assert rc == 0
    data = read_prepared(out / "prepared.h5")
    assert data.x.shape == (160, 4) and data.subjects == ["01", "02"]
    assert data.aux["spec"] == "task+subject" and data.u_kind == "discrete"
    assert json.loads((out / "prepare_config.json").read_text())["n_dims"] == 4
    assert "wrote" in capsys.readouterr().out
    before = (out / "prepared.h5").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:  # refuses before any work
        main(["prepare", "--bids", str(bids), "--out", str(out)])
    assert exc.value.code == 2 and "--force" in capsys.readouterr().err
    assert (out / "prepared.h5").stat().st_mtime_ns == before
    rc = main(["prepare", "--bids", str(bids), "--out", str(out), "--aux", "window+group", "--aux-combine", "product", "--window", "10",
               "--n-dims", "3", "--force", "--whiten", "--no-detrend", "--high-pass", "0.01"])
    assert rc == 0
    data = read_prepared(out / "prepared.h5")
    assert data.x.shape == (160, 3) and data.parameters["clean"]["detrend"] is False
    assert data.u_names[0] == "sub-01_run-1_w000|patient"


def test_func_input_with_tr_mask_and_confounds(tmp_path):
    f1 = write_run(tmp_path / "r1.nii.gz", n_volumes=30, seed=1, header_tr=False)
    f2 = write_run(tmp_path / "r2.nii.gz", n_volumes=30, seed=2, header_tr=False)
    ev = write_events(tmp_path / "ev.tsv", BLOCK_EVENTS[:2])
    conf = tmp_path / "motion.txt"
    np.savetxt(conf, np.random.default_rng(0).normal(size=(30, 3)))
    mask = write_mask(tmp_path / "mask.nii.gz")
    out = tmp_path / "o"
    rc = main(["prepare", "--func", str(f1), str(f2), "--events", str(ev), str(ev),
               "--confounds-file", str(conf), str(conf), "--subject", "a", "a", "--tr", "2.5",
               "--mask", str(mask), "--aux", "task+run", "--aux-combine", "product", "--n-dims", "4", "--out", str(out)])
    assert rc == 0
    data = read_prepared(out / "prepared.h5")
    assert data.tr == 2.5 and data.subjects == ["a"] and "house|run-2" in data.u_names


def test_errors_exit_nonzero_and_write_nothing(tmp_path, capsys):
    f = write_run(tmp_path / "lonely.nii.gz", n_volumes=20)
    out = tmp_path / "o"
    rc = main(["prepare", "--func", str(f), "--out", str(out), "--aux", "task"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "lonely.nii.gz" in err and "events" in err
    assert not (out / "prepared.h5").exists()
    with pytest.raises(SystemExit):
        main(["prepare", "--out", str(out)])  # neither --bids nor --func
    with pytest.raises(SystemExit):
        main(["prepare", "--func", str(tmp_path / "nope.nii.gz"), "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["prepare", "--func", str(f), "--events", str(f), str(f), "--out", str(out)])
