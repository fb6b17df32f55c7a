"""The prepare settings: validation naming the option, dict round trips, flat options, fill_doc."""
import pytest

from trends_ivae.data.errors import PrepareError
from trends_ivae.data.settings import (FLAT_OPTIONS, AuxSpec, CleanSettings, ComputeSettings, PrepareSettings,
                                     ReductionSettings, docdict, fill_doc)


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
    assert PrepareSettings.from_options(aux=None) == PrepareSettings()   # None: the default u
    with pytest.raises(TypeError, match="unknown prepare option"):
        PrepareSettings.from_options(detrand=False)
    with pytest.raises(TypeError, match="unknown prepare option"):   # options by their names only, not parts
        PrepareSettings.from_options(clean=CleanSettings())


def test_options_round_trip_through_the_one_mapping():
    s = PrepareSettings(CleanSettings(confounds=["trans_*"], high_pass=0.01, resample=True),
                        AuxSpec("task+window", window=10, step=5, hrf_delay=4.0, combine="product"),
                        ReductionSettings(n_dims=6, whiten=True), ComputeSettings(n_jobs=2))
    options = s.to_options()
    assert set(options) == set(FLAT_OPTIONS)
    assert options["aux"] == "task+window" and options["resample_to_first"] and options["aux_combine"] == "product"
    assert PrepareSettings.from_options(**options) == s
    assert s.to_options(["window", "n_dims"]) == {"window": 10, "n_dims": 6}


def test_from_record_reads_what_ran():
    par = {"aux": "task+window", "window": 10, "step": None, "aux_combine": "product", "n_dims": 6,
           "whiten": True, "n_keep": 100, "subject_dims": None, "resample_to_first": True,
           "clean": CleanSettings(high_pass=0.01, confounds=["a"]).to_dict()}
    aux = {"spec": "task+window", "window": 10, "step": 10, "hrf_delay": 4.0, "min_event_duration": None,
           "combine": "product"}
    s = PrepareSettings.from_record(par, aux)
    assert s.aux == AuxSpec("task+window", window=10, step=None, hrf_delay=4.0, combine="product")
    assert s.clean == CleanSettings(high_pass=0.01, confounds=["a"], resample=True)
    assert s.reduction == ReductionSettings(n_dims=6, whiten=True, n_keep=100)
    assert s.compute == ComputeSettings()
    # an older store: only the u spec and the dimension; the rest defaults
    old = PrepareSettings.from_record({"aux": "subject"}, n_dims=3)
    assert old == PrepareSettings.from_options(aux="subject", n_dims=3)


def test_prepare_functions_take_settings_not_options():
    from trends_ivae.reduction.prepare import prepare

    with pytest.raises(TypeError):
        prepare([], aux="subject")
    with pytest.raises(TypeError, match="from_options"):
        prepare([], {"aux": "subject"})


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


def test_fill_doc_gives_an_option_under_its_field_name():
    doc = AuxSpec.__doc__
    assert "    spec : str\n" in doc and "The prepare option ``aux``." in doc
    assert "    combine : {" in doc and "The prepare option ``aux_combine``." in doc


def test_drop_initial_is_one_cleaning_setting_with_one_spelling():
    import argparse

    from trends_ivae.cli.fit import add_parser
    from trends_ivae.workflow.fit_options import FitOptions

    fit_parser = add_parser(argparse.ArgumentParser().add_subparsers())

    s = PrepareSettings.from_options(drop_initial=3)
    assert s.clean.drop_initial == 3 and s.to_options()["drop_initial"] == 3
    assert FLAT_OPTIONS["drop_initial"] == ("clean", "drop_initial") and "drop_initial" in docdict
    assert CleanSettings.from_dict({"detrend": True}).drop_initial == 0    # older stores: nothing dropped
    for bad in (-1, 1.5, True):
        with pytest.raises(PrepareError, match="drop_initial"):
            CleanSettings(drop_initial=bad)
    assert FitOptions(out="x").drop_initial == 0
    assert fit_parser.parse_args(["--func", "a", "--out", "o", "--drop-initial", "4"]).drop_initial == 4
