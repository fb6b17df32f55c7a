"""Streamed training (data kept on the host, moved to the device in chunks) gives the resident result."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trends_ivae import IVAE
from trends_ivae.simulate import make_segment_data


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("stream_rows", [64, 200, 10_000])
def test_streamed_equals_resident(stream_rows):
    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    kw = dict(max_epochs=4, batch_size=64, hidden_dim=16, random_state=0, n_init=2, device="cpu")
    resident = IVAE(2, **kw).fit(d.X, d.u)
    streamed = IVAE(2, **kw).fit(d.X, d.u, stream_rows=stream_rows)
    np.testing.assert_array_equal(streamed.transform(d.X, d.u), resident.transform(d.X, d.u))
    assert streamed.history_ == resident.history_
    np.testing.assert_array_equal(streamed.restart_elbos_, resident.restart_elbos_)


def test_cli_stream_rows_equals_resident(tmp_path):
    import warnings

    import pandas as pd

    from trends_ivae.cli.main import main
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=2, n_task=1,
                                      shape=(10, 12, 10), seed=3))
    bids = write_bids(sim, tmp_path / "bids")
    fast = ["--bids", str(bids), "--aux", "task", "--n-dims", "4", "--n-components", "2", "--n-init", "1",
            "--max-epochs", "3", "--batch-size", "16", "--no-report", "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", *fast, "--out", str(tmp_path / "a")]) == 0
        assert main(["fit", *fast, "--out", str(tmp_path / "b"), "--stream-rows", "32"]) == 0
    name = "sub-01/func/sub-01_task-sim_desc-ivae_timeseries.tsv"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / name, sep="\t"),
                                  pd.read_csv(tmp_path / "b" / name, sep="\t"))
