"""What the command line prints: help texts of flags, the fit's summary line, the report's
stability row (no fitting here: the arrays-free parts are called directly)."""
from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest

from trends_ivae.cli.bids_app import main as bids_main
from trends_ivae.cli.fit import summary_line
from trends_ivae.cli.main import main


def _help(capsys, argv, entry=main) -> str:
    with pytest.raises(SystemExit) as exc:
        entry(argv)
    assert exc.value.code == 0
    text = capsys.readouterr().out
    return re.sub(r"\s+", " ", text.split("options:", 1)[1])   # without the usage lines


def _option_help(text: str, option: str) -> str:
    """The help text of ``option`` (up to the next option)."""
    m = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])(.*?)(?= --?[a-z]|$)", text)
    assert m, f"{option} not in the help"
    return m.group(1)


@pytest.mark.parametrize("argv,option", [
    (["fit", "--help"], "--no-keep-prepared"),
    (["fit", "--help"], "--no-report"),
    (["report", "--help"], "--no-viewer"),
    (["fit", "--help"], "--force"),
])
def test_negative_flags_show_no_default_true(capsys, argv, option):
    text = _option_help(_help(capsys, argv), option)
    assert "default" not in text, text


def test_bids_app_flags_show_no_default_true(capsys):
    text = _help(capsys, ["--help"], bids_main)
    assert "default: True" not in _option_help(text, "--no-keep-prepared")


def test_simulate_says_which_response_is_the_default(capsys):
    text = _help(capsys, ["simulate", "--help"])
    assert "(the default)" in _option_help(text, "--nonlinear")
    linear = _option_help(text, "--linear")
    assert "the default" not in linear and "True" not in linear
    assert "(default: True)" in _option_help(_help(capsys, ["fit", "--help"]), "--detrend, --no-detrend")


def _fake(stability: float, n_init: int, elbo: float = -140.123):
    model = SimpleNamespace(estimator_=SimpleNamespace(n_init=n_init), restart_agreement_=stability, elbo_=elbo)
    return model, SimpleNamespace(n_subjects=2, runs=[{}, {}])


def test_summary_line_names_the_elbo_unit_and_why_stability_is_missing():
    line = summary_line(*_fake(math.nan, 1), 3)
    assert "nan" not in line
    assert "stability not computed (it needs two or more restarts" in line
    assert "held-out ELBO per volume -140.12 (data units)" in line
    line = summary_line(*_fake(0.8765, 3), 3)
    assert "stability across 3 restarts 0.88" in line


def test_report_stability_row():
    from trends_ivae.report.build import _stability_text

    assert "needs two or more restarts" in _stability_text(math.nan, 1)
    assert "needs two or more restarts" in _stability_text(None, 1)
    assert _stability_text(0.91234, 3).startswith("0.912")


def test_training_progress_prints_the_elbo_per_volume_in_data_units(capsys):
    """The progress lines and the results (history_, elbo.tsv, the summary) use one scale."""
    import re

    import numpy as np

    from trends_ivae import IVAE
    from trends_ivae.simulate import make_segment_data

    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    X = d.X * 50.0 + 3.0   # far from unit scale: the standardised and the data units differ by ~7.8
    est = IVAE(2, max_epochs=3, batch_size=64, hidden_dim=8, random_state=0, verbose=2, n_init=1).fit(X, d.u)
    err = capsys.readouterr().err
    vals = [float(v) for v in re.findall(r"ELBO per volume train \S+ val (\S+)", err)]
    assert len(vals) == 3
    np.testing.assert_allclose(vals, est.history_["val_elbo"], atol=2e-3)
