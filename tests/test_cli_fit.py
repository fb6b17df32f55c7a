"""``trends-ivae fit`` and ``demo`` called as main([...]) on a tiny simulated BIDS set."""
from __future__ import annotations

import json
import warnings

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae import GroupIVAE
from trends_ivae.cli.main import main
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "8",
        "--batch-size", "32", "--seed", "0"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=5))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def fitted_out(bids, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), *FAST]) == 0
    return out


def test_every_output_is_written_with_the_right_shape(fitted_out, bids):
    out = fitted_out
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "trends_ivae"
    bold = nib.load(sorted(bids.glob("sub-01/func/*_bold.nii.gz"))[0])
    group = nib.load(out / "group" / "desc-ivae_components.nii.gz")
    assert group.shape == bold.shape[:3] + (3,)
    assert group.get_data_dtype() == np.float32
    np.testing.assert_allclose(group.affine, bold.affine)
    assert group.header.get_intent()[0] == "z score"
    effects = nib.load(out / "group" / "desc-ivae_effects.nii.gz")
    assert effects.shape == group.shape
    sidecar = json.loads((out / "group" / "desc-ivae_components.json").read_text())
    assert "ic01" in json.dumps(sidecar)
    for sub in ("01", "02"):
        func = out / f"sub-{sub}" / "func"
        tsv = pd.read_csv(func / f"sub-{sub}_task-sim_desc-ivae_timeseries.tsv", sep="\t")
        assert list(tsv.columns) == ["ic01", "ic02", "ic03"]
        assert len(tsv) == 80
        assert nib.load(func / f"sub-{sub}_task-sim_desc-ivae_components.nii.gz").shape == group.shape
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["arguments"]["n_components"] == 3
    assert (out / "model" / "estimator.pt").stat().st_size > 0
    assert (out / "model" / "elbo.tsv").read_text().startswith("epoch\ttrain_elbo\tval_elbo")
    with h5py.File(out / "prepared.h5") as f:
        assert f["x"].shape == (160, 6)


def test_existing_output_is_refused_without_force(fitted_out, bids):
    before = (fitted_out / "model" / "config.json").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--bids", str(bids), "--out", str(fitted_out), *FAST])
    assert exc.value.code == 2
    assert (fitted_out / "model" / "config.json").read_text() == before


def test_python_and_cli_give_the_same_numbers(fitted_out, bids):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GroupIVAE(n_components=3, n_dims=6, n_init=1, random_state=0,
                          estimator_params={"max_epochs": 8, "batch_size": 32}).fit(find_bids_runs(bids))
    tsv = pd.read_csv(fitted_out / "sub-01" / "func" / "sub-01_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(tsv.to_numpy(), model.timecourses_[0], atol=1e-4)


def test_fit_from_a_prepared_file(fitted_out, tmp_path):
    out = tmp_path / "again"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", "--prepared", str(fitted_out / "prepared.h5"), "--out", str(out), *FAST])
    assert code == 0
    a = pd.read_csv(fitted_out / "sub-02" / "func" / "sub-02_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    b = pd.read_csv(out / "sub-02" / "func" / "sub-02_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-4)


@pytest.mark.parametrize("extra, code", [
    (["--n-components", "9"], 2),            # larger than --n-dims 6
    (["--aux", "task+nonsense"], 1),         # unknown aux term
    (["--device", "cuda"], 2),               # no CUDA here
])
def test_bad_options_exit_non_zero_and_write_nothing(bids, tmp_path, extra, code):
    pytest.importorskip("torch")
    import torch

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = main(["fit", "--bids", str(bids), "--out", str(out), *FAST, *extra])
        except SystemExit as exc:
            result = exc.code
    assert result == code
    assert not out.exists()


def test_bad_prepared_files_are_refused(tmp_path, fitted_out):
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f["x"] = np.zeros((4, 2))
    other = tmp_path / "other.h5"
    other.write_bytes((fitted_out / "prepared.h5").read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["format_version"] = 999
    for path in (broken, other):
        out = tmp_path / f"out_{path.stem}"
        assert main(["fit", "--prepared", str(path), "--out", str(out), *FAST]) == 1
        assert not out.exists()


def test_demo_fits_the_sample_data(tmp_path, capsys):
    out = tmp_path / "demo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["demo", "--out", str(out), "--n-init", "1", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "MCC" in printed and str(out) in printed
    assert (out / "group" / "desc-ivae_components.nii.gz").is_file()
    # a second demo replaces its own output; a foreign folder is refused
    assert main(["demo", "--out", str(out), "--n-init", "1", "-q"]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with pytest.raises(SystemExit):
        main(["demo", "--out", str(foreign), "-q"])
    # a user's file in an earlier demo output: refused before any work, and kept
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--out", str(out), "--n-init", "1", "-q"])
    assert exc.value.code == 2 and "my_notes.txt" in capsys.readouterr().err
    assert (out / "my_notes.txt").read_text() == "mine"


def test_n_dims_defaults_to_the_number_of_components(bids, tmp_path, capsys):
    """fit without --n-dims reduces to --n-components dimensions; prepare alone keeps 30, and
    fitting 3 components on those 30 dimensions warns."""
    from trends_ivae.data.store import read_prepared

    fast = ["--n-components", "3", "--n-init", "1", "--max-epochs", "2", "--batch-size", "32", "--no-report"]
    warning = "30 dimensions for 3 components"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(tmp_path / "fit"), *fast]) == 0
        assert read_prepared(tmp_path / "fit" / "prepared.h5").n_dims == 3
        assert "dimensions for 3 components" not in capsys.readouterr().err
        assert main(["prepare", "--bids", str(bids), "--out", str(tmp_path / "prep")]) == 0
        assert read_prepared(tmp_path / "prep" / "prepared.h5").n_dims == 30
        capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--prepared", str(tmp_path / "prep" / "prepared.h5"),
                     "--out", str(tmp_path / "fit30"), *fast]) == 0
    said = capsys.readouterr().err + " ".join(str(w.message) for w in caught)
    assert warning in said


def test_explained_variance_is_a_fraction_of_the_cleaned_data(fitted_out):
    from trends_ivae.data.store import read_prepared

    side = json.loads((fitted_out / "group" / "desc-ivae_components.json").read_text())
    shares = np.asarray(side["ExplainedVariance"])
    total = side["TotalExplainedVariance"]
    assert np.all(shares >= 0) and np.all(np.diff(shares) <= 0)
    assert shares.sum() == pytest.approx(total, rel=1e-6) and 0 < total <= 1
    assert "fraction of the cleaned data" in side["ExplainedVarianceUnits"]
    labels = pd.read_csv(fitted_out / "group" / "desc-ivae_labels.tsv", sep="\t")
    np.testing.assert_allclose(labels["explained_variance"], shares, rtol=1e-5)
    # of the cleaned data, not of the reduced data: at most what the basis kept
    kept = read_prepared(fitted_out / "prepared.h5").explained_variance_ratio.sum()
    assert total <= kept + 1e-6
    config = json.loads((fitted_out / "model" / "config.json").read_text())
    assert config["results"]["total_explained_variance"] == pytest.approx(total)


def test_force_keeps_a_users_file_and_replaces_only_the_tools_outputs(fitted_out, bids, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fitted_out, out)
    (out / "my_notes.txt").write_text("my notes")
    config = (out / "model" / "config.json").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--bids", str(bids), "--out", str(out), "--force", *FAST])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "my_notes.txt" in err and "did not write" in err
    assert (out / "my_notes.txt").read_text() == "my notes"
    assert (out / "model" / "config.json").read_text() == config   # nothing replaced
    (out / "my_notes.txt").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), "--force", *FAST]) == 0
    assert (out / "report.html").is_file()
    assert not [f for f in tmp_path.iterdir() if f.name != "out"]   # no folder left aside


def test_fit_with_the_flow_estimator_writes_a_loadable_iflow(bids, tmp_path):
    from trends_ivae import IFlow
    from trends_ivae.estimators.base import SourceEstimator

    out = tmp_path / "flow"
    args = ["fit", "--bids", str(bids), "--out", str(out), "--estimator", "flow", "--n-components", "3",
            "--n-dims", "3", "--n-init", "2", "--max-epochs", "3", "--batch-size", "32", "--seed", "0",
            "--no-report"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["results"]["estimator"] == "flow"
    assert len(config["results"]["component_stability"]) == 3
    model = SourceEstimator.load(out / "model" / "estimator.pt", device="cpu")
    assert isinstance(model, IFlow) and model.n_components == 3
    labels = pd.read_csv(out / "group" / "desc-ivae_labels.tsv", sep="\t")
    assert labels["stability"].between(0, 1).all()
    back = GroupIVAE.load(out, device="cpu")   # transform new data with the flow, no u needed
    tcs = back.transform(sorted(str(p) for p in bids.glob("sub-01/func/*_bold.nii.gz")))
    assert tcs[0].shape == (80, 3) and np.isfinite(tcs[0]).all()


def test_fit_options_have_the_commands_defaults_and_checks(bids, tmp_path):
    """FitOptions (the pipelines' and the Nipype node's way to say a fit) means what the command means."""
    from trends_ivae.cli.fit import fit_options, options_given
    from trends_ivae.cli.main import build_parser
    from trends_ivae.workflow import FitOptions, OptionError

    parser, _ = build_parser()
    assert fit_options(parser.parse_args(["fit", "--out", "x"])) == FitOptions(out="x")
    assert options_given(["--prior", "laplace", "--n-dims", "auto", "--no-report"]) == \
        {"prior": "laplace", "n_dims": "auto", "report": False}
    options = FitOptions.from_values(out=str(tmp_path / "o"), bids=str(bids), n_components="3", tr=2)
    assert options.n_components == 3 and isinstance(options.tr, float) and options.check() == 3
    for values, message in [({"n_init": 0}, "--n-init must be >= 1"), ({"prior": "cauchy"}, "--prior 'cauchy'"),
                            ({"n_components": "many"}, "--n-components"),
                            ({"func": [str(tmp_path / "none.nii")], "bids": None}, "does not exist")]:
        with pytest.raises(OptionError, match=message):
            FitOptions.from_values(out=str(tmp_path / "o"), **{"bids": str(bids), **values}).check()
    assert not (tmp_path / "o").exists()
