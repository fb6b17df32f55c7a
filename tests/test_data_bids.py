"""BIDS discovery and explicit file lists."""
import json

import pytest

from _fmri_fixtures import make_bids, write_run
from trends_ivae.data.bids import find_bids_runs, parse_entities, runs_from_files
from trends_ivae.data.images import PrepareError


def test_parse_entities():
    ent = parse_entities("sub-01_ses-a_task-faces_run-02_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz")
    assert ent == {"sub": "01", "ses": "a", "task": "faces", "run": "02",
                   "space": "MNI152NLin2009cAsym", "desc": "preproc"}


def test_parse_entities_of_names_that_are_not_plain_bids():
    assert parse_entities("a.nii.gz") == {} and parse_entities("my_func.nii.gz") == {}
    assert parse_entities("sub-01.nii.gz") == {"sub": "01"}                  # no suffix
    assert parse_entities("/x/sub-02_echo_bold.nii") == {"sub": "02"}      # a part without a value


def test_runs_outside_their_subject_folder_are_skipped(tmp_path):
    root = tmp_path / "ds"
    write_run(root / "sub-01" / "func" / "sub-01_task-x_bold.nii.gz", n_volumes=8)
    write_run(root / "sub-01" / "func" / "sub-02_task-x_bold.nii.gz", n_volumes=8)   # misfiled
    write_run(root / "derivatives" / "sub-03" / "func" / "sub-03_task-x_bold.nii.gz", n_volumes=8)
    assert [r.subject for r in find_bids_runs(root)] == ["01"]


def test_find_bids_runs_and_filters(tmp_path):
    root = make_bids(tmp_path / "ds", n_subjects=3, n_runs=2, n_volumes=12, sessions=["a", "b"])
    runs = find_bids_runs(root)
    assert len(runs) == 12
    r = runs[0]
    assert r.entities == {"sub": "01", "ses": "a", "task": "faces", "run": "1"}
    assert r.tr == 2.0 and r.events.name.endswith("_events.tsv")
    assert r.participant == {"group": "patient", "site": "A"}
    assert len(find_bids_runs(root, participant_label=["sub-02", "03"])) == 8
    assert len(find_bids_runs(root, session="b", run=["01"])) == 3
    assert len(find_bids_runs(root, task="faces")) == 12
    with pytest.raises(PrepareError, match="no BOLD run.*task"):
        find_bids_runs(root, task="rest")
    with pytest.raises(PrepareError, match="does not exist"):
        find_bids_runs(tmp_path / "nope")


def test_inherited_sidecar_and_events(tmp_path):
    root = tmp_path / "ds"
    write_run(root / "sub-01" / "func" / "sub-01_task-x_bold.nii.gz", n_volumes=8, header_tr=False)
    (root / "task-x_bold.json").write_text(json.dumps({"RepetitionTime": 1.5}))
    (root / "task-x_events.tsv").write_text("onset\tduration\ttrial_type\n0\t3\ta\n")
    (r,) = find_bids_runs(root)
    assert r.tr == 1.5 and r.events == root / "task-x_events.tsv" and r.participant == {}


def test_runs_from_files(tmp_path):
    f1 = write_run(tmp_path / "a.nii.gz", n_volumes=8)
    f2 = write_run(tmp_path / "sub-07_run-3_bold.nii.gz", n_volumes=8)
    runs = runs_from_files([f1, f2])
    assert [r.subject for r in runs] == ["01", "07"]
    assert [r.entities["run"] for r in runs] == ["1", "3"]
    runs = runs_from_files([f1, f1], subjects=["sub-x", "x"])
    assert [r.subject for r in runs] == ["x", "x"] and [r.entities["run"] for r in runs] == ["1", "2"]
    with pytest.raises(PrepareError, match="1 events entries for 2"):
        runs_from_files([f1, f2], events=[None])
