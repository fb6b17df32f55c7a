"""The prepare settings: validation naming the option, dict round trips, flat options, fill_doc."""
import pytest

from trends_ivae.data.errors import PrepareError
from trends_ivae.data.settings import (AuxSpec, CleanSettings, ComputeSettings, PrepareSettings, ReductionSettings,
                                     docdict, fill_doc)


@pytest.mark.parametrize("cls, kwargs, option", [
    (CleanSettings, {"detrend": "yes"}, "detrend"),
    (CleanSettings, {"high_pass": -0.01}, "high_pass"),
    (CleanSettings, {"low_pass": 0.01, "high_pass": 0.1}, "low_pass"),
    (CleanSettings, {"smoothing_fwhm": -1.0}, "smoothing_fwhm"),
    (CleanSettings, {"denoise": "heavy"}, "denoise"),
    (CleanSettings, {"denoise": "simple", "confounds": ["trans_x"]}, "not both"),
    (CleanSettings, {"standardize": 3}, "standardize"),
    (AuxSpec, {"spec": "task+task"}, "repeats"),
    (AuxSpec, {"window": 0}, "window"),
    (AuxSpec, {"step": 1.5}, "step"),
    (AuxSpec, {"combine": "sum"}, "combine"),
    (AuxSpec, {"min_event_duration": -1}, "min_event_duration"),
    (ReductionSettings, {"n_dims": 0}, "n_dims"),
    (ReductionSettings, {"n_dims": "many"}, "n_dims"),
    (ReductionSettings, {"n_keep": 0}, "n_keep"),
    (ReductionSettings, {"whiten": None}, "whiten"),
    (ComputeSettings, {"n_jobs": 0}, "n_jobs"),
    (ComputeSettings, {"scheduler": "ray"}, "scheduler"),
])
def test_bad_values_are_errors_naming_the_option(cls, kwargs, option):
    with pytest.raises(PrepareError, match=option):
        cls(**kwargs)


def test_dict_round_trips():
    s = PrepareSettings(CleanSettings(confounds=["trans_*"], high_pass=0.01), AuxSpec("task+window", window=10),
                        ReductionSettings(n_dims="AUTO", n_keep=50), ComputeSettings(n_jobs=2, cache_dir="/tmp/x"))
    assert s.reduction.n_dims == "auto"
    assert PrepareSettings.from_dict(s.to_dict()) == s
    for part in (s.clean, s.aux, s.reduction, s.compute):
        assert type(part).from_dict(part.to_dict()) == part
    # what older stores hold: the eight cleaning keys, extra keys ignored, missing ones default
    assert CleanSettings.from_dict({"detrend": False, "unknown": 1}) == CleanSettings(detrend=False)


def test_flat_options_fold_into_the_parts():
    s = PrepareSettings.from_options(aux="task+subject", aux_combine="product", window=5, resample_to_first=True,
                                     n_dims=4, scheduler="joblib", confounds=("a", "b"))
    assert s.aux == AuxSpec("task+subject", window=5, combine="product")
    assert s.clean.resample and s.clean.confounds == ["a", "b"] and s.reduction.n_dims == 4
    base = PrepareSettings(reduction=ReductionSettings(n_dims=7))
    assert PrepareSettings.from_options(base, whiten=True).reduction == ReductionSettings(n_dims=7, whiten=True)
    assert PrepareSettings.from_options(aux=AuxSpec("window", window=3)).aux.window == 3
    with pytest.raises(PrepareError, match="not both"):
        PrepareSettings.from_options(clean=CleanSettings(), detrend=False)
    with pytest.raises(TypeError, match="unknown prepare option"):
        PrepareSettings.from_options(detrand=False)


def test_fill_doc_indents_and_refuses_unknown_entries():
    @fill_doc
    def f():
        """Doc.

        Parameters
        ----------
        %(window)s
        """
    first, second = docdict["window"].splitlines()[:2]
    assert f"        {first}\n        {second}" in f.__doc__

    def g():
        """%(no_such_entry)s"""
    with pytest.raises(KeyError, match="no_such_entry"):
        fill_doc(g)
