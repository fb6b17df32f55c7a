"""``--denoise STRATEGY``: nilearn's fMRIPrep strategies, with scrubbing's censored volumes
left out of x and u, on a small fake fMRIPrep derivative."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _fmri_fixtures import make_data, write_run
from trends_ivae.cli.bids_app import main as bids_main
from trends_ivae.cli.main import main
from trends_ivae.data.errors import PrepareError
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.reduction.prepare import prepare
from trends_ivae.data.cleaning import DENOISE_STRATEGIES, denoise_confounds

pytestmark = pytest.mark.usefixtures("one_thread")

N_VOLUMES, SPIKE = 60, 30
BOLD = "sub-{s}_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
CONFOUNDS = "sub-{s}_task-rest_desc-confounds_timeseries"
FAST = ["--n-components", "3", "--n-init", "1", "--max-epochs", "3", "--batch-size", "32", "--seed", "0",
        "--no-report", "--aux", "window", "--window", "10"]


@pytest.fixture(scope="module")
def fmriprep(tmp_path_factory):
    """Two subjects' fMRIPrep outputs: a preprocessed run, its confounds TSV (the columns of
    nilearn's own fMRIPrep test table, random small values) and JSON. Volume 0 is a
    non-steady-state volume; volume SPIKE moves 0.9 mm (scrubbing's threshold is 0.5)."""
    fmriprep_data = Path(pytest.importorskip("nilearn.interfaces.fmriprep").__file__).parent / "data"
    template = pd.read_csv(fmriprep_data / "test-v21_desc-confounds_timeseries.tsv", sep="\t")
    root = tmp_path_factory.mktemp("fmriprep") / "derivatives"
    rng = np.random.default_rng(0)
    for s in ("01", "02"):
        func = root / f"sub-{s}" / "func"
        data, _, _ = make_data(n_volumes=N_VOLUMES, seed=0, subject_seed=int(s))
        write_run(func / BOLD.format(s=s), data=data)
        columns = [c for c in template.columns if not c.startswith(("non_steady_state", "motion_outlier"))]
        conf = pd.DataFrame(rng.normal(scale=0.01, size=(N_VOLUMES, len(columns))), columns=columns)
        conf["non_steady_state_outlier00"] = 0.0
        conf.loc[0, "non_steady_state_outlier00"] = 1.0
        conf["framewise_displacement"] = 0.1
        conf.loc[SPIKE, "framewise_displacement"] = 0.9
        conf["std_dvars"] = 1.0
        first_na = [c for c in conf if "derivative1" in c or c in ("framewise_displacement", "std_dvars", "dvars")]
        conf.loc[0, first_na] = np.nan
        conf.to_csv(func / f"{CONFOUNDS.format(s=s)}.tsv", sep="\t", index=False, na_rep="n/a")
        shutil.copy(fmriprep_data / "test-v21_desc-confounds_timeseries.json",
                    func / f"{CONFOUNDS.format(s=s)}.json")
    return root


def test_the_strategies_are_nilearns():
    from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies

    from trends_ivae.cli.prepare import DENOISE_CHOICES

    assert set(DENOISE_STRATEGIES) == set(preset_strategies) == set(DENOISE_CHOICES)


@pytest.mark.parametrize("strategy, censored", [("simple", [0]), ("scrubbing", [0, SPIKE])])
def test_denoise_confounds_give_nilearns_confounds_and_sample_mask(fmriprep, strategy, censored):
    img = fmriprep / "sub-01" / "func" / BOLD.format(s="01")
    conf, keep = denoise_confounds(img, strategy, N_VOLUMES)
    assert conf.shape[0] == N_VOLUMES and conf.shape[1] >= 24   # at least the 24 motion parameters
    assert list(np.flatnonzero(~keep)) == censored


def test_censored_volumes_leave_x_and_u(fmriprep):
    runs = find_bids_runs(fmriprep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = prepare(runs, PrepareSettings.from_options(aux="window", window=10, n_dims=3))
        scrubbed = prepare(runs, PrepareSettings.from_options(aux="window", window=10, n_dims=3,
                                                              denoise="scrubbing"))
    kept = [v for v in range(N_VOLUMES) if v not in (0, SPIKE)]
    assert scrubbed.x.shape == (2 * len(kept), 3)
    assert list(scrubbed.volume[: len(kept)]) == kept and list(scrubbed.volume[len(kept):]) == kept
    both = np.concatenate([np.array(kept), N_VOLUMES + np.array(kept)])
    np.testing.assert_array_equal(scrubbed.u, full.u[both])            # u of the kept volumes only
    run = scrubbed.runs[0]
    assert run["n_volumes"] == len(kept) and run["n_volumes_acquired"] == N_VOLUMES
    assert run["censored"] == [0, SPIKE] and scrubbed.runs[1]["start"] == len(kept)
    assert scrubbed.parameters["clean"]["denoise"] == "scrubbing"
    assert not np.allclose(scrubbed.x[:5], full.x[kept[:5]], atol=1e-3)   # the confounds were regressed


def test_bad_denoise_input_is_a_clear_error(fmriprep, tmp_path):
    runs = find_bids_runs(fmriprep)
    with pytest.raises(PrepareError, match="not both"):
        prepare(runs, PrepareSettings.from_options(aux="window", window=10, n_dims=3, denoise="simple",
                                                   confounds=["trans_*"]))
    lone = tmp_path / "sub-09" / "func" / BOLD.format(s="09")   # no confounds files next to it
    lone.parent.mkdir(parents=True)
    shutil.copy(fmriprep / "sub-01" / "func" / BOLD.format(s="01"), lone)
    with pytest.raises(PrepareError, match=r"sub-09.*cannot be used.*desc-confounds_timeseries"):
        prepare([lone], PrepareSettings.from_options(aux="window", window=10, n_dims=3, denoise="simple"))


def test_fit_and_the_bids_app_denoise_and_record_it(fmriprep, tmp_path, capsys):
    out = tmp_path / "fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(fmriprep), "--out", str(out), "--denoise", "scrubbing", *FAST]) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["prepare"]["clean"]["denoise"] == "scrubbing"
    tsv = pd.read_csv(next((out / "sub-01" / "func").glob("*_timeseries.tsv")), sep="\t")
    assert len(tsv) == N_VOLUMES - 2
    with pytest.raises(SystemExit):
        main(["fit", "--bids", str(fmriprep), "--out", str(tmp_path / "x"), "--denoise", "simple",
              "--confounds", "trans_*", *FAST])
    assert "not both" in capsys.readouterr().err
    derivs = tmp_path / "app"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bids_main([str(fmriprep), str(derivs), "participant", "--denoise", "scrubbing"]) == 0
        assert bids_main([str(fmriprep), str(derivs), "group", "--denoise", "scrubbing", *FAST]) == 0
    config = json.loads((derivs / "model" / "config.json").read_text())
    assert config["prepare"]["clean"]["denoise"] == "scrubbing"
    tsv = pd.read_csv(next((derivs / "sub-01" / "func").glob("*_timeseries.tsv")), sep="\t")
    assert len(tsv) == N_VOLUMES - 2
    # shares made without denoising do not stand for a denoised group run
    assert bids_main([str(fmriprep), str(tmp_path / "app2"), "participant"]) == 0
    assert bids_main([str(fmriprep), str(tmp_path / "app2"), "group", "--denoise", "simple", *FAST]) == 1
    assert "other cleaning options (denoise)" in capsys.readouterr().err
