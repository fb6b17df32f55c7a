"""Reliability (issue 8): a fit killed with SIGKILL resumes to the uninterrupted result;
a full disk or an unwritable output gives a clear error and leaves earlier outputs intact."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from trends_ivae.cli.main import main

_FIT_SCRIPT = r"""
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from trends_ivae import IVAE
from trends_ivae.simulate import make_segment_data

d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                      n_draws_for_threshold=50)
est = IVAE(2, n_init=2, max_epochs=int(sys.argv[2]), batch_size=64, hidden_dim=16, random_state=0,
           patience=1000).fit(d.X, d.u, checkpoint_dir=sys.argv[1])
np.save(sys.argv[3], est.transform(d.X, d.u))
"""

EPOCHS = 15


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fit(script: Path, ckpt: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), ckpt, str(EPOCHS), str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_mid_training_resumes_to_the_uninterrupted_result(tmp_path):
    import torch

    script = tmp_path / "fit.py"
    script.write_text(_FIT_SCRIPT)
    ckpt = tmp_path / "ckpt"
    proc = _fit(script, str(ckpt), tmp_path / "killed.npy")
    first = ckpt / "restart00.pt"
    deadline = time.monotonic() + 120
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.npy").exists()
    state = torch.load(first, map_location="cpu", weights_only=True)
    assert 1 <= state["epoch"] < EPOCHS            # really interrupted mid-way
    assert not (ckpt / "restart01.pt").exists()

    # rerun (in this process, one thread as in the child): it resumes from the checkpoint;
    # then the uninterrupted run without checkpoints
    from trends_ivae import IVAE
    from trends_ivae.simulate import make_segment_data

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                              n_draws_for_threshold=50)
        kw = dict(n_init=2, max_epochs=EPOCHS, batch_size=64, hidden_dim=16, random_state=0, patience=1000)
        resumed = IVAE(2, **kw).fit(d.X, d.u, checkpoint_dir=ckpt)
        plain = IVAE(2, **kw).fit(d.X, d.u)
    finally:
        torch.set_num_threads(n_threads)
    assert torch.load(ckpt / "restart01.pt", map_location="cpu", weights_only=True)["epoch"] == EPOCHS
    np.testing.assert_array_equal(resumed.transform(d.X, d.u), plain.transform(d.X, d.u))
    np.testing.assert_array_equal(resumed.restart_elbos_, plain.restart_elbos_)
    assert resumed.history_ == plain.history_


# --------------------------------------------------------------- full disk, unwritable output
FAST = ["--n-components", "2", "--n-dims", "4", "--n-init", "1", "--max-epochs", "2",
        "--batch-size", "32", "--seed", "0", "--no-report"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=2, n_task=1,
                                      shape=(10, 12, 10), seed=3))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def prepared(bids, tmp_path_factory):
    prep = tmp_path_factory.mktemp("prep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prepare", "--bids", str(bids), "--out", str(prep), "--aux", "task",
                     "--n-dims", "4"]) == 0
    return prep / "prepared.h5"


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def old_out(prepared, tmp_path):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--prepared", str(prepared), "--out", str(out), *FAST]) == 0
    return out


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["nibabel", "torch", "rename"])
def test_disk_full_while_writing_keeps_the_old_output(old_out, prepared, monkeypatch, capsys, where):
    import nibabel
    import torch

    before = _snapshot(old_out)
    if where == "nibabel":
        monkeypatch.setattr(nibabel.filebasedimages.FileBasedImage, "to_filename", _disk_full)
    elif where == "torch":
        monkeypatch.setattr(torch, "save", _disk_full)
    else:   # the final move: the old OUT is moved aside, then the new one fails to move in
        real, failed = os.replace, []

        def replace(src, dst):
            if Path(dst) == old_out and not failed:
                failed.append(src)
                _disk_full()
            return real(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", "--prepared", str(prepared), "--out", str(old_out), *FAST, "--seed", "1",
                     "--force"])
    err = capsys.readouterr().err
    assert code == 1
    assert "No space left on device" in err and str(old_out) in err
    assert _snapshot(old_out) == before
    assert sorted(p.name for p in old_out.parent.iterdir()) == ["out"]   # no temp folder left


def test_disk_full_while_checkpointing_is_a_clear_error(prepared, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch, "save", _disk_full)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", "--prepared", str(prepared), "--out", str(out), *FAST,
                     "--checkpoint-dir", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert code == 1
    assert "No space left on device" in err and "checkpoint" in err
    assert not out.exists()


def test_unwritable_output_is_refused_before_any_work(prepared, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"     # under a regular file: no one can create it, not even root
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--prepared", str(prepared), "--out", str(out), *FAST])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and str(blocker) in err
    assert blocker.read_text() == "not a folder"


def test_prepare_unwritable_output_is_refused(prepared, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--func", str(prepared), "--out", str(blocker / "prep")])
    assert exc.value.code == 2
    assert "cannot be written" in capsys.readouterr().err


def test_bids_app_group_force_failing_mid_move_keeps_the_old_results(bids, tmp_path, monkeypatch, capsys):
    from trends_ivae.cli.bids_app import main as bids_main

    out = tmp_path / "app"
    opts = [*FAST, "--aux", "task"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bids_main([str(bids), str(out), "group", *opts]) == 0
    before = _snapshot(out)
    real, failed = os.replace, []

    def replace(src, dst):   # the disk fills up half-way through moving the new results in
        if Path(dst).name.startswith("sub-02") and "timeseries" in Path(dst).name and not failed:
            failed.append(dst)
            _disk_full()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = bids_main([str(bids), str(out), "group", *opts, "--seed", "1", "--force"])
    assert code == 1
    assert "No space left on device" in capsys.readouterr().err
    assert _snapshot(out) == before


# --------------------------------------------------------------- the same with two Gloo ranks
_DDP_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[4])   # tests/, for _distributed_helpers
from _distributed_helpers import fit_on_ranks
from trends_ivae.simulate import make_segment_data

d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                      n_draws_for_threshold=50)
params = dict(n_components=2, n_init=2, max_epochs=int(sys.argv[2]), batch_size=64, hidden_dim=16,
              random_state=0, patience=1000, device="cpu")
fit_on_ranks(d.X, d.u, params, 2, sys.argv[3], fit_kwargs={"checkpoint_dir": sys.argv[1]})
"""


def test_sigkill_of_a_distributed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    """Two Gloo ranks killed (the whole process group) after a checkpoint: the rerun resumes, and
    ends where an uninterrupted two-rank run ends."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with Gloo is not available")
    from _distributed_helpers import fit_on_ranks
    from trends_ivae import IVAE
    from trends_ivae.simulate import make_segment_data

    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(EPOCHS), str(tmp_path / "killed.pt"),
                             str(Path(__file__).resolve().parent)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    first = ckpt / "restart00.pt"
    deadline = time.monotonic() + 180
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)          # the launcher and both ranks
    proc.wait()
    assert not (tmp_path / "killed.pt").exists()
    assert 1 <= torch.load(first, map_location="cpu", weights_only=True)["epoch"] < EPOCHS

    d = make_segment_data(n_sources=2, n_segments=6, n_per_segment=100, n_layers=2, random_state=0,
                          n_draws_for_threshold=50)
    params = dict(n_components=2, n_init=2, max_epochs=EPOCHS, batch_size=64, hidden_dim=16,
                  random_state=0, patience=1000, device="cpu")
    fit_on_ranks(d.X, d.u, params, 2, str(tmp_path / "resumed.pt"), fit_kwargs={"checkpoint_dir": str(ckpt)})
    fit_on_ranks(d.X, d.u, params, 2, str(tmp_path / "plain.pt"))
    resumed = IVAE.load(tmp_path / "resumed.pt", device="cpu")
    plain = IVAE.load(tmp_path / "plain.pt", device="cpu")
    assert torch.load(ckpt / "restart01.pt", map_location="cpu", weights_only=True)["epoch"] == EPOCHS
    np.testing.assert_array_equal(resumed.transform(d.X, d.u), plain.transform(d.X, d.u))
    np.testing.assert_array_equal(resumed.restart_elbos_, plain.restart_elbos_)
