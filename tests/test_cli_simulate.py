"""``trends-ivae simulate`` called as ``main([...])``."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from trends_ivae.cli.main import main
from trends_ivae.simulate import load_truth


def test_simulate_cli(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", str(out), "--subjects", "2", "--scans", "30", "--components", "4",
               "--seed", "5", "--linear", "--snr", "2"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    img = nib.load(out / "sub-02" / "func" / "sub-02_task-sim_bold.nii.gz")
    assert img.shape[3] == 30
    truth = load_truth(out)
    assert truth.timecourses.shape == (2, 30, 4)
    assert truth.params["nonlinear"] is False and truth.params["seed"] == 5
    assert truth.params["snr"] == 2.0

    # refused without --force, nothing changed
    before = (out / "participants.tsv").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(out), "--subjects", "2", "--scans", "30"])
    assert exc.value.code != 0
    assert (out / "participants.tsv").stat().st_mtime_ns == before

    # --force replaces it, same seed gives the same data
    rc = main(["simulate", str(out), "--subjects", "2", "--scans", "30", "--components", "4",
               "--seed", "5", "--linear", "--snr", "2", "--force", "--mixing-layers", "0"])
    assert rc == 0
    np.testing.assert_array_equal(load_truth(out).timecourses, truth.timecourses)

    # --force over a user's file: refused, named, kept
    (out / "derivatives" / "my_notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(out), "--subjects", "2", "--scans", "30", "--force"])
    assert exc.value.code == 2 and "derivatives/my_notes.txt" in capsys.readouterr().err
    assert (out / "derivatives" / "my_notes.txt").read_text() == "mine"


def test_simulate_cli_bad_args(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(tmp_path / "x"), "--components", "2", "--scans", "4"])
    assert exc.value.code != 0
    assert not (tmp_path / "x").exists()


def test_simulate_workflow_refuses_without_writing(tmp_path):
    from trends_ivae.simulate import FMRISimParams
    from trends_ivae.workflow import WorkflowError, simulate_to_folder

    out = tmp_path / "sim"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    with pytest.raises(WorkflowError, match="exists"):
        simulate_to_folder(out, FMRISimParams(n_subjects=1, n_volumes=20, n_components=2))
    with pytest.raises(WorkflowError, match="mine.txt"):
        simulate_to_folder(out, FMRISimParams(n_subjects=1, n_volumes=20, n_components=2), force=True)
    with pytest.raises(WorkflowError, match="n_task"):
        simulate_to_folder(tmp_path / "new", FMRISimParams(n_components=2, n_task=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"] and [p.name for p in out.iterdir()] == ["mine.txt"]
