"""The workflow layer called from Python: prepare_to_file -> fit_to_folder on the shipped
sample data, the choices it makes and records, its errors, and the BIDS App stages."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest

from trends_ivae.data.bids import find_bids_runs
from trends_ivae.data.store import read_prepared
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.workflow import (BidsSelection, FitResult, FitSettings, OutputSettings, PrepareRequest,
                                  WorkflowError, fit_to_folder, group_stage, participant_stage,
                                  prepare_to_file)

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bids"
FIT = FitSettings(n_components=3, n_init=1, max_epochs=3, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    runs = find_bids_runs(SAMPLE, participant_label=["01", "02"])
    request = PrepareRequest(runs=runs, settings=PrepareSettings.from_options(aux="task+window", window=20,
                                                                              n_dims=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_to_file(request, tmp_path_factory.mktemp("prep"), arguments={"note": "from python"})


def test_prepare_to_file_writes_the_store_and_the_record(prepared):
    data = read_prepared(prepared.path)
    assert prepared.path.name == "prepared.h5" and data.n_dims == 4 and data.subjects == ["01", "02"]
    assert data.aux["spec"] == "task+window"
    assert json.loads(prepared.config.read_text()) == {"note": "from python"}
    assert "4 dims" in prepared.summary and "2 subject(s)" in prepared.summary


def test_fit_to_folder_from_the_file(prepared, tmp_path):
    out = tmp_path / "fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_to_folder(prepared.path, out, fit=FIT, output=OutputSettings(report=False),
                               arguments={"seed": 0})
    assert isinstance(result, FitResult) and result.out_dir == out and result.n_components == 3
    assert result.report is None and result.report_error is None and not (out / "report.html").exists()
    assert "3 components from 2 subject(s)" in result.summary
    assert nib.load(out / "group" / "desc-ivae_components.nii.gz").shape[-1] == 3
    tsv = pd.read_csv(out / "sub-02" / "func" / "sub-02_task-sim_desc-ivae_timeseries.tsv", sep="\t")
    assert tsv.shape[1] == 3
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["command"] == "fit" and config["arguments"] == {"seed": 0, "n_components": 3}
    assert config["model"]["n_components"] == 3 and (out / "prepared.h5").is_file()


def test_fit_to_folder_from_runs_chooses_u_for_resting_data_and_says_so(tmp_path):
    runs = [r for r in find_bids_runs(SAMPLE, participant_label=["01", "02"])]
    for r in runs:
        r.events = None   # as resting-state data
    notes: list[str] = []
    request = PrepareRequest(runs=runs, settings=PrepareSettings.from_options(aux="task+window", window=20,
                                                                              n_dims=4),
                             choose_aux=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_to_folder(request, tmp_path / "rest", fit=FIT,
                               output=OutputSettings(report=False, keep_prepared=False), notify=notes.append)
    assert result.chosen["aux"]["value"] == "window"
    assert len(notes) == 1 and notes[0].startswith("note: no run has events"), notes
    config = json.loads((tmp_path / "rest" / "model" / "config.json").read_text())
    assert config["aux"]["spec"] == "window" and config["arguments"]["aux"] == "window"
    assert not (tmp_path / "rest" / "prepared.h5").exists()


def test_fit_to_folder_errors_are_workflow_errors_and_write_nothing(prepared, tmp_path):
    out = tmp_path / "too_many"
    with pytest.raises(WorkflowError, match=r"--n-components \(5\) is larger than the reduced dimension"):
        fit_to_folder(prepared.path, out, fit=FitSettings(n_components=5))
    assert not out.exists()
    with pytest.raises(WorkflowError, match="cannot use --prepared"):
        fit_to_folder(tmp_path / "missing.h5", out)
    assert not out.exists()


def test_the_bids_app_stages_from_python(tmp_path):
    selection = BidsSelection(bids_dir=SAMPLE, labels=["01", "02"])
    settings = PrepareSettings.from_options(aux="task+window", window=20, n_dims=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = participant_stage(selection, tmp_path, settings)
        again = participant_stage(selection, tmp_path, settings)
        assert list(first.written) == ["01", "02"] and first.problem() is None
        assert again.kept == ["01", "02"] and not again.written
        desc = json.loads((tmp_path / "dataset_description.json").read_text())
        assert desc["DatasetType"] == "derivative" and desc["SourceDatasets"][0]["URL"] == SAMPLE.as_uri()
        with pytest.raises(WorkflowError, match="other cleaning options"):
            participant_stage(selection, tmp_path, PrepareSettings.from_options(high_pass=0.01))
        result = group_stage(selection, tmp_path, settings, fit=FIT, output=OutputSettings(report=False))
    assert result.out_dir == tmp_path and result.n_components == 3
    assert nib.load(tmp_path / "group" / "desc-ivae_components.nii.gz").shape[-1] == 3
    assert (tmp_path / "sub-01" / "sub-01_desc-ivae_share.h5").is_file()   # the shares stay
    assert json.loads((tmp_path / "model" / "config.json").read_text())["command"] == "bids-app group"
    assert not list(tmp_path.glob(".trends_ivae_group-*"))
    with pytest.raises(WorkflowError, match="group outputs exist"):
        group_stage(selection, tmp_path, settings, fit=FIT)
