"""BIDS-derivatives export: every file, shapes, affine, header, refusal, atomicity."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.export.derivatives import (MANIFEST_NAME, ForeignFilesError, atomic_output_dir, component_names,
                                   derivative_stem, foreign_files, read_manifest, record_outputs,
                                   run_entities, unmask, write_derivative_files, write_derivatives)
from trends_ivae.export.fit_outputs import FitOutputs


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:5, 2:6, 1:4] = 1
    affine = np.array([[3.0, 0, 0, -10], [0, 3, 0, -20], [0, 0, 3.5, 5], [0, 0, 0, 1]])
    mask_img = nib.Nifti1Image(mask, affine)
    mask_img.header.set_qform(affine, code=4)
    mask_img.header.set_sform(affine, code=2)
    n_vox, k = int(mask.sum()), 3
    runs = [{"path": "/data/sub-01/func/sub-01_task-rest_run-1_bold.nii.gz", "tr": 2.0},
            {"path": "/data/sub-01/func/sub-01_task-rest_run-2_bold.nii.gz", "tr": 2.0},
            {"sub": "02", "ses": "pre", "task": "rest"}]
    return dict(
        mask_img=mask_img, mask=mask.astype(bool), affine=affine, k=k, n_vox=n_vox, runs=runs,
        group_maps=rng.standard_normal((k, n_vox)),
        effect_maps=rng.standard_normal((k, n_vox)),
        timecourses=[rng.standard_normal((t, k)) for t in (20, 25, 30)],
        subject_maps=[rng.standard_normal((k, n_vox)) for _ in range(3)],
        params={"n_components": k, "seed": np.int64(3), "aux": ["task", "window"], "lr": np.float32(1e-3)},
    )


#: keywords of the writer itself (the others are fields of FitOutputs)
WRITER_OPTIONS = ("force", "names", "effects_zscored", "space_img")


def _write(out, d, *, extra=None, **kw):
    """``write_derivatives`` of the inputs (``kw`` replaces fields or gives writer options);
    with ``extra``, the same files written into a staged folder (as the fit workflow does)
    and ``extra(stage)`` called before it is committed (the files the workflow adds)."""
    options = {k: kw.pop(k) for k in list(kw) if k in WRITER_OPTIONS}
    fields = {key: d[key] for key in ("mask_img", "group_maps", "effect_maps", "runs",
                                      "timecourses", "subject_maps", "params")}
    outputs = FitOutputs(**{**fields, **kw})
    if extra is None:
        return write_derivatives(out, outputs, **options)
    with atomic_output_dir(out, force=options.pop("force", False)) as stage:
        write_derivative_files(stage, outputs, **options)
        extra(stage)
    return out


EXPECTED = [
    ".trends_ivae_outputs.json",
    "dataset_description.json",
    "group/desc-ivae_components.json",
    "group/desc-ivae_components.nii.gz",
    "group/desc-ivae_effects.json",
    "group/desc-ivae_effects.nii.gz",
    "group/desc-ivae_labels.json",
    "group/desc-ivae_labels.tsv",
    "group/desc-ivae_mask.nii.gz",
    "sub-01/func/sub-01_task-rest_run-1_desc-ivae_components.json",
    "sub-01/func/sub-01_task-rest_run-1_desc-ivae_components.nii.gz",
    "sub-01/func/sub-01_task-rest_run-1_desc-ivae_timeseries.json",
    "sub-01/func/sub-01_task-rest_run-1_desc-ivae_timeseries.tsv",
    "sub-01/func/sub-01_task-rest_run-2_desc-ivae_components.json",
    "sub-01/func/sub-01_task-rest_run-2_desc-ivae_components.nii.gz",
    "sub-01/func/sub-01_task-rest_run-2_desc-ivae_timeseries.json",
    "sub-01/func/sub-01_task-rest_run-2_desc-ivae_timeseries.tsv",
    "sub-02/ses-pre/func/sub-02_ses-pre_task-rest_desc-ivae_components.json",
    "sub-02/ses-pre/func/sub-02_ses-pre_task-rest_desc-ivae_components.nii.gz",
    "sub-02/ses-pre/func/sub-02_ses-pre_task-rest_desc-ivae_timeseries.json",
    "sub-02/ses-pre/func/sub-02_ses-pre_task-rest_desc-ivae_timeseries.tsv",
]


def test_round_trip(tmp_path, inputs):
    d = inputs
    out = _write(tmp_path / "deriv", d, explained_variance=[0.5, 0.3, 0.1])
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == EXPECTED
    assert [p.name for p in tmp_path.iterdir()] == ["deriv"]

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    from trends_ivae._version import __version__
    assert desc["GeneratedBy"][0] == {**desc["GeneratedBy"][0], "Name": "trends_ivae", "Version": __version__}

    img = nib.load(out / "group" / "desc-ivae_components.nii.gz")
    assert img.shape == d["mask"].shape + (d["k"],)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, d["affine"])
    assert int(img.header["qform_code"]) == 4 and int(img.header["sform_code"]) == 2
    assert img.header.get_intent()[0] == "z score"
    data = img.get_fdata()
    np.testing.assert_allclose(data[d["mask"]].T, d["group_maps"], rtol=1e-6, atol=1e-6)
    assert np.all(data[~d["mask"]] == 0)
    assert img.header["cal_min"] == pytest.approx(data.min(), rel=1e-6)
    assert img.header["cal_max"] == pytest.approx(data.max(), rel=1e-6)
    assert b"trends_ivae" in img.header["descrip"].tobytes()

    eff = nib.load(out / "group" / "desc-ivae_effects.nii.gz")
    np.testing.assert_allclose(eff.get_fdata()[d["mask"]].T, d["effect_maps"], atol=1e-6)
    side = json.loads((out / "group" / "desc-ivae_components.json").read_text())
    assert side["Components"] == ["ic01", "ic02", "ic03"]
    assert side["Parameters"]["seed"] == 3 and side["Parameters"]["aux"] == ["task", "window"]
    assert side["ExplainedVariance"] == [0.5, 0.3, 0.1]
    assert "fraction" in side["ExplainedVarianceUnits"] and "relative weights" in side["ExplainedVarianceDefinition"]
    label_side = json.loads((out / "group" / "desc-ivae_labels.json").read_text())
    assert "fraction" in label_side["explained_variance"]["Units"]
    labels = pd.read_csv(out / "group" / "desc-ivae_labels.tsv", sep="\t")
    assert list(labels.columns) == ["index", "name", "explained_variance"]
    assert list(labels["index"]) == [1, 2, 3] and list(labels["name"]) == ["ic01", "ic02", "ic03"]
    mask_back = nib.load(out / "group" / "desc-ivae_mask.nii.gz")
    np.testing.assert_array_equal(mask_back.get_fdata() > 0, d["mask"])

    for run, tc, sm, (folder, stem) in zip(d["runs"], d["timecourses"], d["subject_maps"],
                                           [derivative_stem(r) for r in d["runs"]]):
        ts = pd.read_csv(out / folder / f"{stem}_timeseries.tsv", sep="\t")
        assert list(ts.columns) == ["ic01", "ic02", "ic03"]
        assert ts.shape == tc.shape
        np.testing.assert_allclose(ts.to_numpy(), tc, rtol=1e-5, atol=1e-6)
        simg = nib.load(out / folder / f"{stem}_components.nii.gz")
        assert simg.shape == d["mask"].shape + (3,)
        np.testing.assert_allclose(simg.get_fdata()[d["mask"]].T, sm, atol=1e-6)
    tside = json.loads((out / "sub-01/func/sub-01_task-rest_run-1_desc-ivae_timeseries.json").read_text())
    assert tside["RepetitionTime"] == 2.0 and tside["Columns"] == ["ic01", "ic02", "ic03"]


def test_refuses_existing_and_force(tmp_path, inputs):
    out = tmp_path / "deriv"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        _write(out, inputs)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["deriv"]
    # --force replaces only the tool's own outputs: a folder with a user's file is refused
    with pytest.raises(ForeignFilesError, match="old.txt"):
        _write(out, inputs, force=True)
    assert (out / "old.txt").read_text() == "keep"
    (out / "old.txt").unlink()
    _write(out, inputs, force=True)   # an empty folder
    assert (out / "group" / "desc-ivae_components.nii.gz").exists()
    _write(out, inputs, force=True)   # its own outputs
    assert [p.name for p in tmp_path.iterdir()] == ["deriv"]


def test_force_never_deletes_a_users_file(tmp_path, inputs):
    out = _write(tmp_path / "deriv", inputs)
    manifest = read_manifest(out)
    assert "group/desc-ivae_components.nii.gz" in manifest and MANIFEST_NAME not in manifest
    (out / "group" / "my_notes.txt").write_text("mine")
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(ForeignFilesError) as exc:
        _write(out, inputs, force=True)
    assert exc.value.files == ["group/my_notes.txt"] and "my_notes.txt" in str(exc.value)
    assert sorted(str(p) for p in out.rglob("*")) == before
    assert (out / "group" / "my_notes.txt").read_text() == "mine"
    (out / "group" / "my_notes.txt").unlink()
    # a file added while the outputs are being written (a long fit) is kept too
    def add_notes(root):
        (out / "late_notes.txt").write_text("mine too")
    with pytest.raises(ForeignFilesError, match="late_notes.txt"):
        _write(out, inputs, force=True, extra=add_notes)
    assert (out / "late_notes.txt").read_text() == "mine too"
    assert (out / "group" / "desc-ivae_components.nii.gz").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["deriv"]
    # the report (written after the move) is recorded as the tool's own
    record_outputs(out, [out / "report.html"])
    assert "report.html" in read_manifest(out)
    assert foreign_files(out) == ["late_notes.txt"]


def test_nothing_partial_on_failure(tmp_path, inputs):
    out = tmp_path / "deriv"

    def boom(root):
        assert (root / "group" / "desc-ivae_components.nii.gz").exists()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _write(out, inputs, extra=boom)
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a failed forced rewrite
    _write(out, inputs)
    with pytest.raises(RuntimeError):
        _write(out, inputs, extra=boom, force=True)
    assert (out / "dataset_description.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["deriv"]


def test_extra_files_and_optional_outputs(tmp_path, inputs):
    def add_model(root):
        (root / "model").mkdir()
        (root / "model" / "config.json").write_text("{}")

    out = _write(tmp_path / "d", inputs, effect_maps=None, subject_maps=None, extra=add_model)
    assert (out / "model" / "config.json").exists()
    assert not (out / "group" / "desc-ivae_effects.nii.gz").exists()
    assert not list(out.glob("sub-*/**/*_components.nii.gz"))  # no subject maps
    assert (out / "sub-01/func/sub-01_task-rest_run-1_desc-ivae_timeseries.tsv").exists()


def test_validation_before_writing(tmp_path, inputs):
    out = tmp_path / "d"
    with pytest.raises(ValueError, match="group_maps"):
        _write(out, inputs, group_maps=inputs["group_maps"][:, :-1])
    with pytest.raises(ValueError, match="time-course"):
        _write(out, inputs, timecourses=inputs["timecourses"][:2])
    with pytest.raises(ValueError, match="timecourses\\[0\\]"):
        _write(out, inputs, timecourses=[t[:, :2] for t in inputs["timecourses"]])
    with pytest.raises(ValueError, match="same output name"):
        _write(out, inputs, runs=[{"sub": "01"}] * 3)
    with pytest.raises(ValueError, match="subject label"):
        _write(out, inputs, runs=[{"path": "bold.nii.gz"}] * 3)
    assert list(tmp_path.iterdir()) == []


def test_entities_and_names():
    assert run_entities({"path": "sub-01_ses-a_task-rest_acq-mb_run-02_space-MNI_desc-preproc_bold.nii.gz"}) == \
        {"sub": "01", "ses": "a", "task": "rest", "acq": "mb", "run": "02", "space": "MNI"}
    assert run_entities({"stem": "sub-01_task-x_bold", "run": 3}) == {"sub": "01", "task": "x", "run": "3"}
    assert run_entities({"sub": "sub-07"}) == {"sub": "07"}
    folder, stem = derivative_stem({"sub": "01", "ses": "2", "task": "rest"})
    assert str(folder) == "sub-01/ses-2/func" and stem == "sub-01_ses-2_task-rest_desc-ivae"
    with pytest.raises(ValueError, match="alphanumeric"):
        run_entities({"sub": "a_b"})
    assert component_names(3) == ["ic01", "ic02", "ic03"]
    assert component_names(120)[0] == "ic001"


def test_unmask_matches_nilearn(inputs):
    nilearn_masking = pytest.importorskip("nilearn.masking")
    d = inputs
    ours = unmask(d["group_maps"], d["mask_img"])
    theirs = nilearn_masking.unmask(d["group_maps"], d["mask_img"])
    np.testing.assert_allclose(ours.get_fdata(), theirs.get_fdata(), atol=1e-6)
    one = unmask(d["group_maps"][0], d["mask_img"])
    assert one.shape == d["mask"].shape
    with pytest.raises(ValueError, match="n_voxels"):
        unmask(d["group_maps"][:, :5], d["mask_img"])


def test_atomic_output_dir(tmp_path):
    out = tmp_path / "x"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_output_dir(out):
            pass


def test_explained_variance_must_be_bounded_fractions(tmp_path, inputs):
    with pytest.raises(ValueError, match="fractions"):
        _write(tmp_path / "a", inputs, explained_variance=[32.1, 19.4, 12.5])   # percent, or unbounded
    with pytest.raises(ValueError, match="at most 0.5"):
        _write(tmp_path / "b", inputs, explained_variance=[0.3, 0.2, 0.1], total_explained_variance=0.5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    out = _write(tmp_path / "c", inputs, explained_variance=[0.3, 0.2, 0.1], total_explained_variance=0.6)
    side = json.loads((out / "group" / "desc-ivae_components.json").read_text())
    assert side["TotalExplainedVariance"] == 0.6


def test_stability_goes_into_the_labels_and_sidecars(tmp_path, inputs):
    out = _write(tmp_path / "s", inputs, explained_variance=[0.3, 0.2, 0.1], stability=[0.95, 0.4, float("nan")])
    labels = pd.read_csv(out / "group" / "desc-ivae_labels.tsv", sep="\t", keep_default_na=False)
    assert list(labels["stability"]) == ["0.95", "0.4", "n/a"]
    side = json.loads((out / "group" / "desc-ivae_components.json").read_text())
    assert side["Stability"] == [0.95, 0.4, None] and "restart" in side["StabilityDefinition"]
    label_side = json.loads((out / "group" / "desc-ivae_labels.json").read_text())
    assert "ICASSO" in label_side["stability"]["Description"]
    with pytest.raises(ValueError, match="stability must have 3 values"):
        _write(tmp_path / "t", inputs, stability=[0.9, 0.8])
    assert not (tmp_path / "t").exists()
