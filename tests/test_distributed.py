"""Distributed training (issue 8): two Gloo processes on one CPU compute the one-process fit;
``trends-ivae fit --distributed`` under torchrun writes from rank 0 only."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from _distributed_helpers import fit_on_ranks, free_port
from trends_ivae import IVAE
from trends_ivae.estimators.distributed import ProcessGroupComm, row_share
from trends_ivae.estimators.nn.comm import SINGLE_PROCESS, Comm
from trends_ivae.metrics import mcc
from trends_ivae.simulate import make_segment_data

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with Gloo is not available")


def test_row_share_covers_every_row_once():
    for n, world in [(10, 3), (7, 2), (2, 4), (100, 1)]:
        rows = np.concatenate([np.arange(n)[row_share(n, r, world)] for r in range(world)])
        assert sorted(rows.tolist()) == list(range(n))
    with pytest.raises(ValueError):
        row_share(10, 2, 2)


def test_the_default_comm_is_one_process():
    group = ProcessGroupComm.__new__(ProcessGroupComm)   # what a rank of two would hold
    group.rank, group.world, group.active = 1, 2, True
    assert isinstance(group, Comm)                        # both implement the protocol
    c = SINGLE_PROCESS
    assert isinstance(c, Comm)
    assert not c.active and c.world == 1 and c.rank == 0
    assert c.sum(2.5) == 2.5 and c.gather("a") == ["a"] and c.any(True) and not c.any(False)
    np.testing.assert_array_equal(c.sum_array(np.arange(3)), np.arange(3.0))


def test_process_group_comm_needs_a_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="process group"):
        ProcessGroupComm()


def test_fit_does_not_look_for_a_process_group(monkeypatch):
    """The estimator takes its communicator as an argument: it never asks torch.distributed."""
    def refuse(*a, **k):
        raise AssertionError("the estimator read the process group")

    for name in ("is_initialized", "get_world_size", "get_rank"):
        monkeypatch.setattr(dist, name, refuse)
    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=40, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    IVAE(2, max_epochs=1, batch_size=64, hidden_dim=8, device="cpu", random_state=0).fit(d.X, d.u)


def test_two_gloo_processes_match_one_process(tmp_path):
    d = make_segment_data(n_sources=2, n_segments=10, n_per_segment=150, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    params = dict(n_components=2, max_epochs=25, batch_size=64, hidden_dim=16, random_state=0, device="cpu",
                  n_init=1)
    scores, z = {}, {}
    for world in (1, 2):
        path = tmp_path / f"w{world}.pt"
        fit_on_ranks(d.X, d.u, params, world, str(path))
        est = IVAE.load(path, device="cpu")
        assert list(est.classes_) == list(range(10))
        z[world] = est.transform(d.X, d.u)
        scores[world] = mcc(z[world], d.S).score
    assert scores[1] > 0.7
    # the same computation (same split, batches and noise), up to the all-reduce's summation order
    assert abs(scores[2] - scores[1]) < 0.005, scores
    np.testing.assert_allclose(z[2], z[1], atol=0.05 * z[1].std())


def test_comm_shares_are_the_row_share(monkeypatch):
    """What ProcessGroupComm.owns / local_rows compute is the strided share that ranks read."""
    import torch

    n, world = 23, 3
    rows = torch.arange(n)
    for r in range(world):
        c = ProcessGroupComm.__new__(ProcessGroupComm)   # the arithmetic only, no group
        c.world, c.rank, c.active = world, r, True
        mine = c.owns(rows)
        assert c.local_rows(rows[mine]).tolist() == list(range(len(range(r, n, world))))
        assert rows[mine].tolist() == np.arange(n)[row_share(n, r, world)].tolist()


def _torchrun() -> list[str] | None:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else None


@pytest.mark.skipif(_torchrun() is None, reason="torchrun is not installed next to this Python")
def test_cli_fit_distributed_under_torchrun(tmp_path):
    from trends_ivae.cli.main import main
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=2, n_task=1,
                                      shape=(10, 12, 10), seed=3))
    bids = write_bids(sim, tmp_path / "bids")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prepare", "--bids", str(bids), "--out", str(tmp_path / "prep"), "--aux", "task",
                     "--n-dims", "4"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"
    cmd = _torchrun() + ["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                         "-m", "trends_ivae.cli.main", "fit", "--prepared", str(tmp_path / "prep" / "prepared.h5"),
                         "--out", str(out), "--distributed", "--n-components", "2", "--n-init", "1",
                         "--max-epochs", "3", "--batch-size", "16", "--no-report",
                         "--checkpoint-dir", str(tmp_path / "ckpt")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("wrote ") == 1                   # rank 0 only
    assert (out / "model" / "estimator.pt").is_file() and (out / "group" / "desc-ivae_components.nii.gz").is_file()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["restart00.pt"]
    import torch

    state = torch.load(tmp_path / "ckpt" / "restart00.pt", map_location="cpu", weights_only=True)
    assert "generator" in state and state["epoch"] == 3   # one generator: every rank draws the same


def test_distributed_needs_a_prepared_file(tmp_path):
    from trends_ivae.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", "--bids", str(tmp_path), "--out", str(tmp_path / "o"), "--distributed"])
    assert exc.value.code == 2


def test_distributed_outside_torchrun_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from trends_ivae.cli.main import main

    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    prep = tmp_path / "p.h5"
    prep.write_bytes(b"")
    assert main(["fit", "--prepared", str(prep), "--out", str(tmp_path / "o"), "--distributed"]) == 1
    assert "torchrun" in capsys.readouterr().err
