"""New runs cleaned as the fit's record says (issue 21): the TR, the confounds, the left-out volumes.

At the level of the reduction (no training): the runs of a prepared store, reduced again
by :func:`~trends_ivae.reduction.prepare.reduce_runs` from the store alone, give the
store's rows; a run at another TR is refused; ``drop_initial`` and fMRIPrep's
``non_steady_state_outlier*`` columns drop volumes before cleaning.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from _fmri_fixtures import write_mask, write_run
from trends_ivae.data import PrepareError
from trends_ivae.data.bids import runs_from_files
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.data.store import read_prepared, write_prepared
from trends_ivae.reduction.prepare import prepare, reduce_runs

BAND = dict(high_pass=0.01, low_pass=0.1)


def _runs(tmp_path, n=3, n_volumes=40, header_tr=1.0, **kw):
    return [write_run(tmp_path / f"sub-0{i}_bold.nii.gz", n_volumes=n_volumes, tr=header_tr, seed=i, **kw)
            for i in range(1, n + 1)]


def _prepare(runs, tmp_path, tr=None, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare(runs, PrepareSettings.from_options(aux="subject", n_dims=3, **options),
                    mask=write_mask(tmp_path / "mask.nii.gz"), tr=tr)
    write_prepared(tmp_path / "prepared.h5", p)
    return read_prepared(tmp_path / "prepared.h5")    # what a follow-up reads: the record


def _rows(p, i):
    return p.x[p.run == i]


def test_the_fit_tr_override_is_used_for_new_runs(tmp_path):
    """fit --tr 2 on files whose header says 1 s: the follow-up filters at 2 s, not at the header's."""
    files = _runs(tmp_path)
    p = _prepare(runs_from_files(files), tmp_path, tr=2.0, **BAND)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = reduce_runs(runs_from_files(files), p)
        given = reduce_runs(runs_from_files(files), p, tr=2.0)
    for i in range(len(files)):
        np.testing.assert_allclose(new.xs[i], _rows(p, i), atol=1e-4)
        np.testing.assert_allclose(given.xs[i], _rows(p, i), atol=1e-4)
    assert new.trs == [2.0] * 3


def test_a_run_at_another_tr_is_refused(tmp_path):
    files = _runs(tmp_path, header_tr=2.0)
    p = _prepare(runs_from_files(files), tmp_path, **BAND)       # TR 2 from the headers
    other = write_run(tmp_path / "new" / "sub-09_bold.nii.gz", n_volumes=40, tr=2.5, seed=9)
    with pytest.raises(PrepareError, match=r"sub-09_bold.nii.gz.*TR 2.5 s \(its header\).*TR 2 s.*--tr 2"):
        reduce_runs(runs_from_files([other]), p)
    with pytest.raises(PrepareError, match=r"sub-01_bold.nii.gz.*TR 3 s \(the tr given"):
        reduce_runs(runs_from_files(files[:1]), p, tr=3.0)
    assert reduce_runs(runs_from_files([other]), p, tr=2.0).trs == [2.0]   # its header was wrong: --tr


def test_a_sidecar_that_contradicts_the_fit_tr_is_refused(tmp_path):
    files = _runs(tmp_path)
    p = _prepare(runs_from_files(files), tmp_path, tr=2.0, **BAND)
    run = dataclasses.replace(runs_from_files(files[:1])[0], tr=3.0)   # as a BIDS sidecar gives it
    with pytest.raises(PrepareError, match=r"sub-01_bold.nii.gz.*sidecar says RepetitionTime 3 s.*TR 2 s"):
        reduce_runs([run], p)
    assert reduce_runs([run], p, tr=2.0).trs == [2.0]   # the sidecar is wrong: --tr says so


def test_runs_of_different_trs_are_refused(tmp_path):
    a = write_run(tmp_path / "sub-01_bold.nii.gz", tr=2.0, seed=1)
    b = write_run(tmp_path / "sub-02_bold.nii.gz", tr=2.5, seed=2)
    with pytest.raises(PrepareError, match=r"different TRs \(TR 2 s: .*sub-01_bold.*TR 2.5 s: .*sub-02_bold.*--tr"):
        _prepare(runs_from_files([a, b]), tmp_path)


def test_the_confound_columns_of_the_fit_are_regressed_from_new_runs(tmp_path):
    files = _runs(tmp_path, header_tr=2.0)
    rng = np.random.default_rng(0)
    tables = []
    for i in range(3):
        t = tmp_path / f"conf{i}.tsv"
        pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"]).to_csv(t, sep="\t", index=False)
        tables.append(t)
    p = _prepare(runs_from_files(files, confounds=tables), tmp_path)
    wider = tmp_path / "wider.tsv"   # the same run, its table with one more column: not regressed
    df = pd.read_csv(tables[0], sep="\t")
    df["c"] = rng.normal(size=40)
    df.to_csv(wider, sep="\t", index=False)
    new = reduce_runs(runs_from_files(files[:1], confounds=[wider]), p)
    np.testing.assert_allclose(new.xs[0], _rows(p, 0), atol=1e-4)
    with pytest.raises(PrepareError, match=r"regressed confounds.*a, b.*sub-01_bold.nii.gz.*no confounds"):
        reduce_runs(runs_from_files(files[:1]), p)


def test_drop_initial_drops_volumes_before_cleaning(tmp_path):
    files = _runs(tmp_path, header_tr=2.0)
    p = _prepare(runs_from_files(files), tmp_path, drop_initial=3, **BAND)
    assert p.x.shape[0] == 3 * 37 and [r["n_volumes"] for r in p.runs] == [37] * 3
    assert p.runs[0]["n_volumes_acquired"] == 40 and p.runs[0]["censored"] == [0, 1, 2]
    assert p.clean_settings.drop_initial == 3 and list(p.volume[:2]) == [3, 4]
    new = reduce_runs(runs_from_files(files[1:2]), p)
    assert new.xs[0].shape[0] == 37 and not new.keeps[0][:3].any()
    np.testing.assert_allclose(new.xs[0], _rows(p, 1), atol=1e-4)
    with pytest.raises(PrepareError, match="drop_initial"):
        PrepareSettings.from_options(drop_initial=-1)


def test_non_steady_state_outliers_are_dropped_and_announced_once(tmp_path):
    files = _runs(tmp_path, header_tr=2.0)
    rng = np.random.default_rng(1)
    tables = []
    for i in range(3):
        df = pd.DataFrame(rng.normal(size=(40, 2)), columns=["trans_x", "rot_x"])
        if i == 0:
            df["non_steady_state_outlier00"] = np.eye(40)[0]
        tables.append(tmp_path / f"conf{i}.tsv")
        df.to_csv(tables[-1], sep="\t", index=False)
    with pytest.warns(UserWarning, match=r"non_steady_state_outlier.*sub-01_bold.nii.gz' \(volume\(s\) 0\)") as rec:
        p = prepare(runs_from_files(files, confounds=tables), PrepareSettings.from_options(aux="subject", n_dims=3),
                    mask=write_mask(tmp_path / "mask.nii.gz"))
    assert sum("non_steady_state" in str(w.message) for w in rec) == 1
    assert [r["n_volumes"] for r in p.runs] == [39, 40, 40] and p.runs[0]["censored"] == [0]
    assert p.parameters["confounds_regressed"]["columns"] == ["trans_x", "rot_x"]   # the flag is not regressed
