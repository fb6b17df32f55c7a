"""Concatenated factors (``--aux task+window``) in prepared.h5: stored as ``u_factors`` only.

The dense one-hot u grows as volumes x levels (window levels are per run), so the store
never writes it (format 2) and ``PreparedData.u`` builds it only when read; fit and the
report use the factors. Format 1 files (with the dense ``u``) still read.
"""
import types
import warnings

import h5py
import numpy as np
import pytest

from _fmri_fixtures import make_bids
from trends_ivae.cli.main import main
from trends_ivae import aux_variable
from trends_ivae.data.auxiliary import RunMeta, build_aux, task_labels, window_labels
from trends_ivae.data.store import (FORMAT_VERSION, read_prepared, read_rows, read_subject,
                                  write_prepared)

WINDOW = 10


@pytest.fixture(scope="module")
def prepared_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("factors")
    bids = make_bids(root / "ds", n_subjects=2, n_runs=2, n_volumes=40)
    out = root / "prep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prepare", "--bids", str(bids), "--out", str(out), "--aux", "task+window",
                     "--window", str(WINDOW), "--n-dims", "4"]) == 0
    return out / "prepared.h5"


def _reference_u(prep):
    """The one-hot columns from the volumes' label strings (task rule, window numbering),
    not from u_factors: a 1 in column ``task=<label>`` and in ``window=<segment name>``."""
    names = {n: j for j, n in enumerate(prep.u_names)}
    ref = np.zeros((prep.n_samples, len(names)), np.float32)
    for r in prep.runs:
        rows = np.arange(r["start"], r["start"] + r["n_volumes"])
        tasks = task_labels(r["events"], r["n_volumes"], r["tr"])
        segs = window_labels(r["n_volumes"], WINDOW)
        for row, t, w in zip(rows, tasks, segs):
            ref[row, names[f"task={t}"]] = 1
            ref[row, names[f"window=sub-{r['subject']}_run-{r['run']}_w{w:03d}"]] = 1
    return ref


def test_no_dense_u_on_disk(prepared_file):
    with h5py.File(prepared_file) as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 2
        assert "u" not in f
        assert f["u_factors"].shape == (160, 2) and f["u_factors"].dtype == np.int64
        assert all(ds.ndim < 2 or ds.shape[1] < 16 for ds in f.values() if ds.shape[:1] == (160,))


def test_dense_u_on_demand_equals_build_aux(prepared_file):
    prep = read_prepared(prepared_file)
    assert prep.u_on_demand and prep.u_kind == "continuous" and prep.aux["combine"] == "concat"
    metas = [RunMeta(name=r["file"], subject=r["subject"], run=r["run"], n_volumes=r["n_volumes"],
                     tr=r["tr"], events=r["events"]) for r in prep.runs]
    aux = build_aux("task+window", metas, window=WINDOW, combine="concat")
    assert aux.kind == prep.u.kind == "factors" and aux.names == prep.u_names
    np.testing.assert_array_equal(aux.factor_codes, prep.u_factors)
    ref = _reference_u(prep)
    assert len(prep.u_names) == 3 + 2 * 2 * (40 // WINDOW)     # rest/face/house + windows of 4 runs
    np.testing.assert_array_equal(aux.dense(), ref)
    np.testing.assert_array_equal(prep.dense_u(), ref)
    assert prep.dense_u().dtype == np.float32
    np.testing.assert_array_equal(prep.dense_u(slice(5, 50, 3)), ref[5:50:3])
    np.testing.assert_array_equal(read_rows(prepared_file, slice(1, None, 2), names=("u", "u_factors"))["u"],
                                  ref[1::2])
    sub = read_subject(prepared_file, "02")
    np.testing.assert_array_equal(sub["u"], ref[80:])
    np.testing.assert_array_equal(sub["u_factors"], prep.u_factors[80:])
    again = write_prepared(prepared_file.parent / "again.h5", prep)   # rewriting keeps the layout
    with h5py.File(again) as f:
        assert "u" not in f


def test_format_1_file_with_dense_u_still_reads(prepared_file, tmp_path):
    prep = read_prepared(prepared_file)
    dense = prep.dense_u()
    old = tmp_path / "v1.h5"
    old.write_bytes(prepared_file.read_bytes())
    with h5py.File(old, "a") as f:             # the previous layout: dense u written, format 1
        f.create_dataset("u", data=dense, chunks=(160, dense.shape[1]), compression="gzip")
        f.attrs["format_version"] = 1
    back = read_prepared(old)
    assert back.u_on_demand                    # the dense u is not loaded, only u_factors
    np.testing.assert_array_equal(back.dense_u(), dense)
    np.testing.assert_array_equal(read_rows(old, slice(0, None, 3), names=("u",))["u"], dense[::3])
    np.testing.assert_array_equal(read_subject(old, 0)["u"], dense[:80])
    with h5py.File(old, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        read_prepared(old)


def test_fit_and_report_never_build_the_dense_u(prepared_file, tmp_path, monkeypatch):
    """fit --prepared (GroupIVAE, prepared.h5 kept, the report) uses u_factors only."""
    from trends_ivae.report.results import load_results

    def refuse(*a, **k):
        raise AssertionError("the dense one-hot u was built")

    monkeypatch.setattr(aux_variable, "onehot_columns", refuse)
    out = tmp_path / "fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--prepared", str(prepared_file), "--out", str(out), "--n-components", "2",
                     "--n-init", "1", "--max-epochs", "2", "--batch-size", "32", "--seed", "0"]) == 0
    assert (out / "report.html").stat().st_size > 0
    with h5py.File(out / "prepared.h5") as f:
        assert "u" not in f
    res = load_results(out)
    assert not [n for n in res.notes if "prior" in n], res.notes
    assert [f["name"] for f in res.prior.by_factor] == ["task"]
    assert res.prior.over_time is not None and np.isfinite(res.prior.over_time["mean"]).all()


def test_report_prior_of_a_model_fitted_on_dense_columns(prepared_file, tmp_path):
    """A model fitted on the dense columns (before u became factors) is summarised from
    blocks of rebuilt columns."""
    from trends_ivae.estimators.ivae import IVAE
    from trends_ivae.report.results import _load_prior

    prep = read_prepared(prepared_file)
    est = IVAE(2, max_epochs=1, batch_size=32, hidden_dim=8, n_init=1, random_state=0,
               device="cpu").fit(prep.x, prep.dense_u())
    assert est.aux_kind_ == "continuous"
    (tmp_path / "model").mkdir()
    est.save(tmp_path / "model" / "ivae.pt")
    res = types.SimpleNamespace(out_dir=tmp_path, prepared=prep, notes=[], runs=[], subject_run=0,
                                n_components=2)
    prior = _load_prior(res)
    assert prior is not None, res.notes
    mean, _ = est.prior_params(prep.u)   # the factors' one-hot columns, built for this model
    np.testing.assert_array_equal(mean, est.prior_params(prep.dense_u())[0])
    task = prior.by_factor[0]
    assert task["name"] == "task"
    np.testing.assert_allclose(task["mean"][0], mean[prep.u_factors[:, 0] == 0].mean(0), rtol=1e-5)


def test_u_round_trips_through_the_store_as_one_type(prepared_file, tmp_path):
    """The AuxVariable of prepare, written and read back: same kind, names, factors and codes;
    rows read alone (read_aux) are the same rows."""
    from trends_ivae.aux_variable import AuxVariable
    from trends_ivae.data.store import read_aux

    prep = read_prepared(prepared_file)
    assert isinstance(prep.u, AuxVariable) and prep.u.kind == "factors" and prep.u.spec == "task+window"
    back = read_prepared(write_prepared(tmp_path / "again.h5", prep))
    assert (back.u.kind, back.u.names, back.u.factors) == (prep.u.kind, prep.u.names, prep.u.factors)
    np.testing.assert_array_equal(back.u.data, prep.u.data)
    part = read_aux(prepared_file, slice(3, 100, 7))
    assert part.kind == "factors"
    np.testing.assert_array_equal(part.data, prep.u.data[3:100:7])
    taken = prep.u[10:20]
    np.testing.assert_array_equal(taken.dense(), prep.dense_u(slice(10, 20)))
