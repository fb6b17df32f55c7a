"""The analysis files of a fit folder: written by ``fit``, rewritten by ``trends-ivae analyze``
(with ``--dfnc``), their columns and sidecars, the ``--force`` rules, and each bad input."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from trends_ivae.cli.main import main
from trends_ivae.export.outputs import read_manifest
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "3", "--batch-size", "32",
        "--seed", "0", "--no-report"]
DFNC = ["--dfnc", "--window", "20", "--n-states", "2"]


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=3, n_task=1, shape=(10, 12, 10),
                                      seed=3))
    bids = write_bids(sim, root / "bids")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(root / "fit"), *FAST]) == 0
    return root / "fit"


def _copy(fit_dir, tmp_path):
    shutil.copytree(fit_dir, tmp_path / "fit")
    return tmp_path / "fit"


def _side(path):
    return json.loads(path.with_name(path.name.replace(".tsv", ".json")).read_text())


def test_fit_writes_static_fnc_spectra_and_the_prior(fit_dir):
    a = fit_dir / "analysis"
    names = ["ic01", "ic02", "ic03"]
    for kind in ("model", "dualreg"):
        for sub in ("01", "02"):
            rel = a / f"sub-{sub}/func/sub-{sub}_desc-{kind}_meas-fisherz_relmat.dense.tsv"
            m = pd.read_csv(rel, sep="\t", header=None, na_values="n/a").to_numpy()
            assert m.shape == (3, 3) and np.isnan(np.diag(m)).all() and np.allclose(m, m.T, equal_nan=True)
            side = _side(rel)
            assert side["NodeNames"] == names and side["TimeCourses"] == kind and side["Runs"] == 1
            assert side["RelationshipMeasure"].startswith("Fisher z") and side["Postprocess"]["low_pass"] == 0.15
            spec = pd.read_csv(a / f"sub-{sub}/func/sub-{sub}_desc-{kind}_spectra.tsv", sep="\t")
            assert list(spec.columns) == ["frequency", *names] and spec["frequency"].iloc[-1] == pytest.approx(0.25)
        for stat in ("mean", "sd"):
            assert _side(a / f"group/desc-{kind}_meas-fisherz_stat-{stat}_relmat.dense.tsv")["Subjects"] == ["01", "02"]
        summary = pd.read_csv(a / f"group/desc-{kind}_spectralsummary.tsv", sep="\t")
        assert list(summary.columns) == ["subject", "component", "dynamic_range", "falff"] and len(summary) == 6
        assert (summary["dynamic_range"] >= 0).all() and (summary["falff"] > 0).all()
        side = _side(a / f"group/desc-{kind}_spectralsummary.tsv")
        assert {"dynamic_range", "falff"} <= set(side) and side["Spectra"]["n_tapers"] == 5
        mean = pd.read_csv(a / f"group/desc-{kind}_stat-mean_spectralsummary.tsv", sep="\t")
        assert list(mean["component"]) == names
    prior = a / "sub-01/func/sub-01_task-sim_desc-prior_timeseries.tsv"
    table = pd.read_csv(prior, sep="\t")
    assert list(table.columns) == [f"{n}_{w}" for n in names for w in ("mean", "var")] and len(table) == 60
    assert (table.filter(like="_var") > 0).all().all()
    assert _side(prior)["RepetitionTime"] == 2.0 and "p(z|u)" in _side(prior)["Description"]
    info = json.loads((a / "analysis.json").read_text())
    assert info["Components"] == names and set(info["TimeCourses"]) == {"model", "dualreg"} and info["DFNC"] is None
    assert "analysis/analysis.json" in read_manifest(fit_dir) and "analysis.json" in read_manifest(a)


def test_analyze_adds_dfnc_only_with_force_and_keeps_a_users_file(fit_dir, tmp_path, capsys):
    fit = _copy(fit_dir, tmp_path)
    assert main(["analyze", str(fit), *DFNC]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["analyze", str(fit), *DFNC, "--force"]) == 0
    a = fit / "analysis"
    for kind in ("model", "dualreg"):
        state = a / f"group/desc-{kind}_state-1_meas-fisherz_relmat.dense.tsv"
        assert state.is_file() and _side(state)["DFNC"]["window"] == 20
        summary = pd.read_csv(a / f"group/desc-{kind}_dfncsummary.tsv", sep="\t")
        assert list(summary.columns) == ["subject", "fraction_state1", "fraction_state2", "dwell_state1",
                                         "dwell_state2", "n_transitions", "alpha"]
        assert np.allclose(summary[["fraction_state1", "fraction_state2"]].sum(axis=1), 1)
        seq = pd.read_csv(a / f"sub-01/func/sub-01_desc-{kind}_dfnc.tsv", sep="\t")
        assert list(seq.columns) == ["run", "window_start", "state"] and len(seq) == 60 - 20 + 1
    assert "analysis/group/desc-model_dfncsummary.tsv" in read_manifest(fit)   # a refit --force may replace it
    (a / "mine.txt").write_text("mine")
    assert main(["analyze", str(fit), "--force"]) == 1
    assert "mine.txt" in capsys.readouterr().err and (a / "mine.txt").read_text() == "mine"


def _bad_tsv(fit):
    return sorted(fit.glob("sub-01/func/*_desc-ivae_timeseries.tsv"))[0]


@pytest.mark.parametrize("problem", ["nan", "no_tr", "short", "not_a_fit"])
def test_bad_input_names_the_file_and_writes_nothing(fit_dir, tmp_path, capsys, problem):
    fit = _copy(fit_dir, tmp_path)
    out = tmp_path / "out"
    args = ["analyze", str(fit), "--out", str(out)]
    tsv = _bad_tsv(fit)
    if problem == "nan":
        table = pd.read_csv(tsv, sep="\t")
        table.iloc[5, 1] = np.nan
        table.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
        expect = [tsv.name, "NaN"]
    elif problem == "no_tr":
        (fit / "prepared.h5").unlink()
        side = json.loads(tsv.with_suffix(".json").read_text())
        side.pop("RepetitionTime")
        tsv.with_suffix(".json").write_text(json.dumps(side))
        expect = [tsv.name, "repetition time"]
    elif problem == "short":
        args += ["--dfnc", "--window", "80"]
        expect = ["shorter than the dFNC window"]
    else:
        shutil.rmtree(fit / "group")
        expect = ["not an output folder", "GIFT-layout folder is not supported"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert all(e in err for e in expect), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_analyze_model_in_memory(fit_dir):
    from trends_ivae import GroupIVAE
    from trends_ivae.data.store import read_prepared
    from trends_ivae.workflow.analyze import WorkflowError, analyze_model

    with pytest.raises(WorkflowError, match="analyse the folder instead"):
        analyze_model(GroupIVAE.load(fit_dir, device="cpu"))
    model = GroupIVAE(n_components=3, n_init=1, estimator_params={"max_epochs": 2, "batch_size": 32}, random_state=0,
                      device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit_prepared(read_prepared(fit_dir / "prepared.h5"))
    res = analyze_model(model)
    assert set(res.fnc) == {"model", "dualreg"} and res.fnc["model"].z.shape == (2, 3, 3)
    assert res.spectra["dualreg"].power.shape[0] == 2 and not res.dfnc
    assert res.prior is not None and res.prior.mean[0].shape == (60, 3) and np.all(res.prior.var[1] > 0)


def test_the_report_section_reads_the_analysis_files(fit_dir, tmp_path):
    from trends_ivae.report.connectivity import connectivity_section

    seen = []

    def tag(png, alt, dpi=None):
        seen.append(alt)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        return f"<img alt='{alt}'>"

    nav, body = connectivity_section(fit_dir, 40, tag)
    assert "#connectivity" in nav and "fALFF (dualreg)" in body and seen == ["group static FNC"]
    assert connectivity_section(tmp_path, 40, tag) is None


def test_analyze_does_not_import_torch(fit_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, warnings\nwarnings.simplefilter('ignore')\nfrom trends_ivae.cli.main import main\n"
            f"assert main(['analyze', {str(fit_dir)!r}, '--out', {str(tmp_path / 'a')!r}]) == 0\n"
            "print('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
