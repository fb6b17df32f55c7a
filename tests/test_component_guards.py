"""Component counts the data cannot support are refused before training, naming --n-components.

Subjects of 20 volumes: more components than a subject's volumes (its time courses span
no more), than the data's rank, or than the volumes altogether, is an error that names
the option the user set, and nothing is written.
"""
from __future__ import annotations

import json
import warnings

import pytest

from trends_ivae.cli.main import main
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-init", "1", "--max-epochs", "2", "--batch-size", "32", "--seed", "0", "-q", "--no-report"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=3, n_volumes=20, n_components=3, n_task=0,
                                      shape=(12, 14, 12), seed=3))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


def _fit(bids, out, *extra) -> tuple[int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(["fit", "--bids", str(bids), "--out", str(out), *FAST, *extra])
        except SystemExit as exc:
            code = exc.code
    return code, ""


# 25 > 20 volumes per subject (< 60 volumes in all); 58 > the cleaned rank (57: each run loses its mean);
# 80 > every volume there is
@pytest.mark.parametrize("n", [25, 58, 80])
def test_more_components_than_the_data_support_is_an_error_naming_the_option(bids, tmp_path, capsys, n):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    code, _ = _fit(bids, out, "--n-components", str(n))
    err = capsys.readouterr().err
    assert code != 0
    assert "--n-components" in err, err
    assert "lower n_dims" not in err
    assert not out.exists()


def test_a_subject_with_fewer_volumes_than_components_is_named(bids, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    code, _ = _fit(bids, out, "--n-components", "25", "--n-dims", "40")
    err = capsys.readouterr().err
    assert code != 0 and "20 volumes" in err and "--n-components 20 or fewer" in err, err
    assert not out.exists()


def test_group_ivae_refuses_more_components_than_a_subjects_volumes(bids):
    pytest.importorskip("torch")
    from trends_ivae import GroupIVAE
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(find_bids_runs(bids), PrepareSettings.from_options(aux="subject", n_dims=30))
    with pytest.raises(ValueError, match=r"n_components \(25\).*20 volumes.*--n-components"):
        GroupIVAE(n_components=25, n_dims=30, aux="subject").fit_prepared(prepared)


def test_auto_is_capped_and_the_cap_is_recorded(bids, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    code, _ = _fit(bids, out, "--n-components", "auto", "--aux", "subject")
    err = capsys.readouterr().err
    assert code == 0, err
    chosen = json.loads((out / "model" / "config.json").read_text())["arguments"]["chosen"]["n_components"]
    assert chosen["method"] == "mdl" and chosen["max_order"] <= 20
    assert chosen["n_components"] <= chosen["max_order"]
    assert "cap" in err and "--n-components auto" in err


def test_group_ivae_fit_refuses_before_preparing(bids, monkeypatch):
    pytest.importorskip("torch")
    from trends_ivae import GroupIVAE
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.group import group_ivae

    def no_prepare(*args, **kwargs):
        raise AssertionError("prepare ran")

    monkeypatch.setattr(group_ivae, "prepare", no_prepare)
    with pytest.raises(ValueError, match=r"n_components \(25\).*20 volumes.*--n-components"):
        GroupIVAE(n_components=25, n_dims=30, aux="subject").fit(find_bids_runs(bids))


def test_the_option_check_refuses_from_the_headers(bids):
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.workflow.checks import OptionError, check_components_fit

    runs = find_bids_runs(bids)
    with pytest.raises(OptionError, match=r"--n-components \(25\) is more than the 20 volumes of sub-01"):
        check_components_fit(25, 30, runs=runs)
    check_components_fit(20, 30, runs=runs)
    check_components_fit("auto", "auto", runs=runs)
