"""Streamed training (data kept on the host or on disk, moved to the device in chunks) gives the
resident result."""
from __future__ import annotations

import numpy as np
import pytest

from trends_ivae import IVAE
from trends_ivae.simulate import make_segment_data


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


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


@pytest.mark.parametrize("store", ["h5py", "memmap"])
def test_streamed_from_disk_equals_resident(tmp_path, store, monkeypatch):
    """X never loaded whole: an h5py dataset (or memmap) read in blocks gives the resident model."""
    import h5py

    from trends_ivae.estimators.disk_rows import DiskRows

    monkeypatch.setattr(DiskRows, "block", 50)   # many blocks on a small file
    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    kw = dict(max_epochs=4, batch_size=64, hidden_dim=16, random_state=0, n_init=2, device="cpu")
    resident = IVAE(2, **kw).fit(d.X, d.u)
    if store == "h5py":
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f.create_dataset("x", data=d.X.astype(np.float32), chunks=(32, d.X.shape[1]))
        fh = h5py.File(tmp_path / "x.h5", "r")
        X = fh["x"]
    else:
        X = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=d.X.shape)
        X[:] = d.X
        X.flush()
        X = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="r", shape=d.X.shape)
    reads = []
    getitem = DiskRows.__getitem__
    monkeypatch.setattr(DiskRows, "__getitem__", lambda self, r: reads.append(len(r)) or getitem(self, r))
    streamed = IVAE(2, **kw).fit(X, d.u, stream_rows=128)
    # read in chunks of at most stream_rows, but for the linear-ICA start (a sample of at most
    # 200 000 rows) and for the restarts' agreement (stability_, a sample of min(5000, n) rows)
    assert reads and max(r for r in reads if r != min(5000, len(d.X))) <= 128 < len(d.X)
    assert reads.count(len(d.X)) == 2
    np.testing.assert_array_equal(streamed.x_mean_, resident.x_mean_)
    np.testing.assert_array_equal(streamed.transform(X, d.u), resident.transform(d.X, d.u))
    assert streamed.history_ == resident.history_
    if store == "h5py":
        fh.close()


def test_disk_X_with_nan_is_refused(tmp_path):
    import h5py

    X = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    X[123, 1] = np.nan
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f, pytest.raises(ValueError, match="NaN or inf values .in 1 of 300"):
        IVAE(2, batch_size=32).fit(f["x"], np.repeat(np.arange(6), 50), stream_rows=64)


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
