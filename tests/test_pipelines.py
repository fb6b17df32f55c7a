"""pipelines/: the TOML-driven group analysis, dual regression and the Nipype interface."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "bids"
CONFIGS = ROOT / "pipelines" / "configs"
FAST = ["--set", "model.n_components=3", "--set", "reduction.n_dims=6", "--set", "model.n_init=1",
        "--set", "model.max_epochs=6", "--set", "model.batch_size=64", "--set", "output.report=false"]


def _script(name):
    spec = importlib.util.spec_from_file_location(f"pipelines_{name}", ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


group_ivae = _script("group_ivae")
dual_regression = _script("dual_regression")


def _run(module, argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.main(argv)


@pytest.fixture(scope="module")
def task_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("task") / "out"
    assert _run(group_ivae, [str(CONFIGS / "task_study.toml"), "--out", str(out), *FAST]) == 0
    return out


def test_task_study(task_fit):
    assert nib.load(task_fit / "group" / "desc-ivae_components.nii.gz").shape == (24, 28, 24, 3)
    tsv = pd.read_csv(task_fit / "sub-04" / "func" / "sub-04_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    assert tsv.shape == (150, 3)
    import json

    config = json.loads((task_fit / "model" / "config.json").read_text())
    assert config["prepare"]["aux"] == "task" and config["prepare"]["hrf_delay"] == 4.0


@pytest.mark.parametrize("name, check", [("rest_study", "melodic_IC.nii.gz"),
                                         ("multisite_study", "trends_ivae_sub004_timecourses_ica_s1_.nii")])
def test_rest_and_multisite_studies(name, check, tmp_path):
    out = tmp_path / "out"
    assert _run(group_ivae, [str(CONFIGS / f"{name}.toml"), "--out", str(out), *FAST]) == 0
    assert (out / check).is_file()
    if name == "multisite_study":
        from trends_ivae.data.store import read_prepared

        p = read_prepared(out / "prepared.h5")
        assert p.u_kind == "continuous" and "site=A" in p.u_names


def test_unknown_key_names_the_nearest(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[input]\nbids = "x"\n[model]\nn_component = 4\n[output]\ndir = "o"\n')
    with pytest.raises(SystemExit) as exc:
        group_ivae.main([str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.n_component" in err and "n_components" in err
    cfg.write_text('[modle]\nn_components = 4\n')
    with pytest.raises(SystemExit):
        group_ivae.main([str(cfg)])
    assert "'model'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dry_run_resolves_paths(capsys):
    assert group_ivae.main([str(CONFIGS / "rest_study.toml"), "--dry-run", "--out", "x"]) == 0
    cmd = capsys.readouterr().out
    assert "--aux window --window 30" in cmd and str(SAMPLE.resolve()) in str(Path(cmd.split("--bids ")[1].split()[0]).resolve())


def test_dual_regression_reproduces_the_fit(task_fit, tmp_path):
    out = tmp_path / "dr"
    assert _run(dual_regression, [str(task_fit), "--bids", str(SAMPLE), "--participant-label", "02",
                                  "--out", str(out)]) == 0
    got = pd.read_csv(out / "sub-02" / "func" / "sub-02_task-sim_desc-dualreg_timeseries.tsv", sep="\t")
    ref = pd.read_csv(task_fit / "sub-02" / "func" / "sub-02_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-3, atol=1e-3)
    a = nib.load(out / "sub-02" / "func" / "sub-02_desc-dualreg_components.nii.gz").get_fdata()
    b = nib.load(task_fit / "sub-02" / "func" / "sub-02_task-sim_desc-ivae_components.nii.gz").get_fdata()
    for k in range(3):
        assert np.corrcoef(a[..., k].ravel(), b[..., k].ravel())[0, 1] > 0.99
    with pytest.raises(SystemExit):
        dual_regression.main([str(tmp_path), "--bids", str(SAMPLE), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_nipype_interface(tmp_path):
    pytest.importorskip("nipype")
    from trends_ivae.interfaces.nipype import GroupIVAEFit

    node = GroupIVAEFit(bids_dir=str(SAMPLE), n_components=3, n_dims=6, n_init=1, max_epochs=4,
                        batch_size=64, layout="melodic", out_dir=str(tmp_path / "n.ica"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = node.run()
    assert Path(res.outputs.group_maps).is_file() and Path(res.outputs.mix).is_file()
    assert nib.load(res.outputs.group_maps).shape[-1] == 3
    assert np.loadtxt(res.outputs.mix).shape[1] == 3        # melodic_mix: volumes x components


def test_nipype_workflow_node_feeds_the_next_node(tmp_path, monkeypatch):
    """As a Node in a Workflow: outputs connect, a connected out_dir keeps the whole fit, and a
    relative bids_dir still works although Nipype runs the node in its own folder."""
    pytest.importorskip("nipype")
    from nipype import Function, Node, Workflow

    from trends_ivae.interfaces.nipype import GroupIVAEFit

    def count_volumes(group_maps, out_dir):
        import os

        import nibabel as nib
        return nib.load(group_maps).shape[-1], os.path.join(out_dir, "model", "estimator.pt")

    monkeypatch.chdir(SAMPLE.parent)
    fit = Node(GroupIVAEFit(bids_dir=SAMPLE.name, n_components=2, n_dims=4, n_init=1, max_epochs=3,
                            batch_size=64), name="ivae")
    count = Node(Function(input_names=["group_maps", "out_dir"], output_names=["n", "model"],
                          function=count_volumes), name="count")
    wf = Workflow(name="wf", base_dir=str(tmp_path))
    wf.connect([(fit, count, [("group_maps", "group_maps"), ("out_dir", "out_dir")])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = wf.run()
    result = {n.name: n for n in graph.nodes()}["count"].result.outputs
    assert result.n == 2
    # the default out_dir is in the node's working folder; connected, nipype keeps all of it
    assert Path(result.model).is_file() and Path(result.model).is_relative_to(tmp_path / "wf" / "ivae")


def _record_fit_calls(monkeypatch):
    """Replace workflow.fit_to_folder by a recorder (no fit runs)."""
    import trends_ivae.workflow as workflow

    calls = []

    def fake(data, out, **kwargs):
        calls.append((data, out, kwargs))
        return workflow.FitResult(out_dir=out, n_components=kwargs["fit"].n_components, summary="(recorded)",
                                  seconds=0.0)

    monkeypatch.setattr(workflow, "fit_to_folder", fake)
    return calls


def test_the_pipeline_and_the_nipype_node_call_the_fit_workflow(tmp_path, monkeypatch):
    from trends_ivae.workflow import PrepareRequest

    calls = _record_fit_calls(monkeypatch)
    assert _run(group_ivae, [str(CONFIGS / "rest_study.toml"), "--out", str(tmp_path / "o"), *FAST]) == 0
    (data, out, kwargs), = calls
    assert isinstance(data, PrepareRequest) and out == tmp_path / "o"
    assert data.settings.aux.spec == "window" and data.settings.aux.window == 30
    assert data.settings.clean.high_pass == 0.01 and data.settings.reduction.n_dims == 6
    assert kwargs["fit"].n_components == 3 and kwargs["output"].layout == "melodic"
    assert kwargs["output"].report is False
    pytest.importorskip("nipype")
    from trends_ivae.interfaces.nipype import GroupIVAEFit

    node = GroupIVAEFit(bids_dir=str(SAMPLE), n_components=2, n_dims=4, out_dir=str(tmp_path / "n"))
    node._run_interface(None)
    data, out, kwargs = calls[-1]
    assert isinstance(data, PrepareRequest) and out == tmp_path / "n"
    assert kwargs["fit"].n_components == 2 and data.settings.reduction.n_dims == 4


def test_dual_regression_calls_its_workflow(task_fit, tmp_path, monkeypatch):
    import trends_ivae.workflow as workflow

    calls = []

    def fake(fit_dir, runs, out, **kwargs):
        calls.append((fit_dir, runs, out, kwargs))
        return workflow.DualRegressionResult(out_dir=out, n_runs=len(runs), n_subjects=1, n_components=3)

    monkeypatch.setattr(workflow, "dual_regression_to_folder", fake)
    assert _run(dual_regression, [str(task_fit), "--bids", str(SAMPLE), "--participant-label", "03",
                                  "--out", str(tmp_path / "dr")]) == 0
    (fit_dir, runs, out, kwargs), = calls
    assert fit_dir == task_fit and [r.subject for r in runs] == ["03"] and out == tmp_path / "dr"
    assert kwargs["device"] == "cpu" and kwargs["force"] is False


# ---- dual regression reads the fit's record (issue 21) ---------------------------------------
@pytest.fixture(scope="module")
def band_fit(tmp_path_factory):
    """``fit --tr 2 --high-pass 0.01 --low-pass 0.1`` on runs whose headers say 1 s (no sidecars)."""
    from trends_ivae.cli.main import main

    root = tmp_path_factory.mktemp("band")
    files = []
    for s in ("01", "02", "03"):
        img = nib.load(SAMPLE / f"sub-{s}" / "func" / f"sub-{s}_task-sim_bold.nii.gz")
        img = nib.Nifti1Image(np.asarray(img.dataobj)[..., :80], img.affine, img.header)
        img.header.set_zooms(img.header.get_zooms()[:3] + (1.0,))
        files.append(root / f"sub-{s}_bold.nii.gz")
        nib.save(img, files[-1])
    out = root / "fit"
    argv = ["fit", "--func", *map(str, files), "--tr", "2", "--high-pass", "0.01", "--low-pass", "0.1",
            "--aux", "window", "--window", "20", "--n-components", "3", "--n-init", "1", "--max-epochs", "3",
            "--no-report", "-q", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    return out, files


def test_dual_regression_of_a_band_passed_fit_reproduces_its_time_courses(band_fit, tmp_path):
    fit, files = band_fit
    ref = pd.read_csv(fit / "sub-02" / "func" / "sub-02_run-1_desc-ivae_timeseries.tsv", sep="\t").to_numpy()
    for extra in ([], ["--tr", "2"]):   # the fit's --tr by default; the same given
        out = tmp_path / f"dr{len(extra)}"
        assert _run(dual_regression, [str(fit), "--func", str(files[1]), "--out", str(out), *extra]) == 0
        got = pd.read_csv(out / "sub-02" / "func" / "sub-02_run-1_desc-dualreg_timeseries.tsv", sep="\t")
        assert np.abs(got.to_numpy() - ref).max() < 1e-4


def test_dual_regression_refuses_a_run_at_another_tr(band_fit, tmp_path, capsys):
    fit, files = band_fit
    out = tmp_path / "dr"
    assert _run(dual_regression, [str(fit), "--func", str(files[0]), "--tr", "2.5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "sub-01_bold.nii.gz" in err and "TR 2.5 s" in err and "TR 2 s" in err and "--tr 2" in err
    assert not out.exists()
    with pytest.raises(SystemExit):   # a bad --tr is refused by the parser
        dual_regression.main([str(fit), "--func", str(files[0]), "--tr", "0", "--out", str(out)])
    assert not out.exists()


def test_dual_regression_confounds_follow_the_fit(band_fit, tmp_path):
    """The fit regressed no confounds: a new run's table is not regressed (the fit is reproduced);
    --confounds-file needs one file per --func."""
    fit, files = band_fit
    table = tmp_path / "conf.tsv"
    pd.DataFrame(np.random.default_rng(0).normal(size=(80, 2)), columns=["a", "b"]).to_csv(table, sep="\t",
                                                                                          index=False)
    out = tmp_path / "dr"
    assert _run(dual_regression, [str(fit), "--func", str(files[1]), "--confounds-file", str(table),
                                  "--out", str(out)]) == 0
    got = pd.read_csv(out / "sub-02" / "func" / "sub-02_run-1_desc-dualreg_timeseries.tsv", sep="\t").to_numpy()
    ref = pd.read_csv(fit / "sub-02" / "func" / "sub-02_run-1_desc-ivae_timeseries.tsv", sep="\t").to_numpy()
    assert np.abs(got - ref).max() < 1e-4
    with pytest.raises(SystemExit):
        dual_regression.main([str(fit), "--func", *map(str, files[:2]), "--confounds-file", str(table),
                              "--out", str(tmp_path / "x")])
