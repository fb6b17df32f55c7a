"""What a fit records about itself: the resolved options that ran (not the defaults) in
``model/config.json``, the group sidecars and the report's summary, including the confounds
that were regressed."""
from __future__ import annotations

import html
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from trends_ivae.cli.main import main
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "4",
        "--batch-size", "32", "--seed", "0"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("prov")
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=3, n_task=1,
                                      shape=(12, 12, 10), seed=3))
    bids = write_bids(sim, root / "bids")
    funcs = sorted(str(f) for f in bids.glob("sub-*/func/*_bold.nii.gz"))
    rng = np.random.default_rng(0)
    confs = []
    for i, f in enumerate(funcs):
        path = root / f"conf{i}.tsv"
        pd.DataFrame(rng.normal(size=(60, 2)), columns=["motion_x", "motion_y"]).to_csv(path, sep="\t", index=False)
        confs.append(str(path))
    out = root / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--func", *funcs, "--confounds-file", *confs, "--aux", "window", "--window", "5",
                     "--tr", "2", "--out", str(out), *FAST]) == 0
    return out


def test_config_and_sidecar_record_the_options_that_ran(fitted):
    config = json.loads((fitted / "model" / "config.json").read_text())
    sidecar = json.loads((fitted / "group" / "desc-ivae_components.json").read_text())
    for params in (config["model"], sidecar["Parameters"]):
        assert params["aux"] == "window"
        assert params["window"] == 5
        assert params["tr"] == 2.0
        assert params["n_dims"] == 6
    regressed = config["prepare"]["confounds_regressed"]
    assert regressed == {"columns": ["motion_x", "motion_y"], "n_runs": 2, "n_runs_total": 2}


def test_report_cleaning_row_names_the_regressed_confounds(fitted):
    page = (fitted / "report.html").read_text(encoding="utf-8")
    row = re.search(r"<th>cleaning</th><td>(.*?)</td>", page)
    assert row, "no cleaning row"
    text = html.unescape(row.group(1))
    assert "confounds regressed: 2 column(s) (motion_x, motion_y) in 2 of 2 run(s)" in text
    assert "confounds –" not in text
    u_row = html.unescape(re.search(r"<th>auxiliary variable u</th><td>(.*?)</td>", page).group(1))
    assert "window 5 volumes" in u_row
