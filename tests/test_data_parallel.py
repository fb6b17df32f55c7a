"""The participant stage on joblib or Dask: same results, failures named, reruns pick up where they stopped."""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import warnings

import numpy as np
import pytest

from trends_ivae.cli.bids_app import main as bids_main
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.data.settings import PrepareSettings
from trends_ivae.reduction.prepare import prepare
from trends_ivae.data.images import PrepareError
from trends_ivae.data.parallel import TaskFailures, dask_available, raise_failures, run_tasks
from trends_ivae.reduction.participant import share_paths
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

needs_dask = pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed "
                                "(pip install 'trends-ivae[dask]')")


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=3, n_volumes=40, n_components=2, n_task=1,
                                      shape=(10, 12, 10), seed=2))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def dask_address():
    """An in-process Dask cluster (threads: starts in a fraction of a second)."""
    if not dask_available():
        pytest.skip("dask.distributed is not installed")
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _break(path):
    """Keep the header, lose the data: the run's header reads, its voxels do not."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 352 + 1000]))


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three is bad")
    return x * 10


@pytest.mark.parametrize("scheduler", ["joblib", pytest.param("dask", marks=needs_dask)])
def test_run_tasks_in_order_with_failures_named(scheduler, request):
    kw = {"dask_address": request.getfixturevalue("dask_address")} if scheduler == "dask" else {}
    out = list(run_tasks(_fail_on_three, [(f"sub-{i}", (i,), {}) for i in range(5)], scheduler=scheduler,
                         n_jobs=2, **kw))
    assert [o.name for o in out] == [f"sub-{i}" for i in range(5)]
    assert [o.result for o in out if o.ok] == [0, 10, 20, 40]
    assert [o.name for o in out if not o.ok] == ["sub-3"] and "three is bad" in out[3].error


def _killing(fn, is_victim):
    """``fn``, but the worker process running it for a victim dies first, as under the OOM killer.

    SIGKILL (no Python cleanup); refused in the test process itself. A local function, so
    pickled by value: the workers need not import this test module (seconds each).
    """
    parent = os.getpid()

    def task(*args, **kwargs):
        if is_victim(*args):
            if os.getpid() == parent:
                raise RuntimeError("the task would kill the test process: it must run in a worker")
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)

    return task


def _no_dask_retries(scheduler):
    """Dask reruns a task whose worker died on up to 3 more workers; here its first death fails it.

    With no retry, a task queued on the killer's worker would fail too: so this also checks that
    the death is charged to the killer alone (run_tasks' local cluster: one task per worker).
    """
    if scheduler != "dask":
        return contextlib.nullcontext()
    import dask

    return dask.config.set({"distributed.scheduler.allowed-failures": 0})


@pytest.mark.parametrize("scheduler", ["joblib", pytest.param("dask", marks=needs_dask)])
def test_killed_worker_is_named_and_the_others_finish(scheduler):
    """SIGKILL of the worker running sub-3 (two worker processes): sub-3 alone fails, by name."""
    task = _killing(lambda x: x * 10, lambda x: x == 3)
    with _no_dask_retries(scheduler):       # dask: a local cluster of 2 worker processes, started here
        out = _quiet(list, run_tasks(task, [(f"sub-{i}", (i,), {}) for i in range(6)], scheduler=scheduler,
                                     n_jobs=2))
    assert [o.name for o in out] == [f"sub-{i}" for i in range(6)]
    assert [o.name for o in out if not o.ok] == ["sub-3"]
    assert [o.result for o in out if o.ok] == [0, 10, 20, 40, 50]     # the dead worker was replaced
    assert ("KilledWorker" if scheduler == "dask" else "worker died") in out[3].error
    with pytest.raises(TaskFailures, match=r"^1 subject\(s\) failed: sub-3: "):
        raise_failures(out)


def test_unknown_scheduler_is_refused():
    with pytest.raises(ValueError, match="scheduler"):
        list(run_tasks(_fail_on_three, [("a", (1,), {})], scheduler="ray"))


@needs_dask
def test_prepare_on_dask_equals_joblib(bids, dask_address, tmp_path):
    runs = find_bids_runs(bids)
    kw = dict(aux="task", n_dims=5)
    a = _quiet(prepare, runs, PrepareSettings.from_options(**kw))
    b = _quiet(prepare, runs, PrepareSettings.from_options(scheduler="dask", dask_address=dask_address,
                                                           cache_dir=tmp_path, **kw))
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-5)


def test_prepare_names_every_failed_subject(bids, tmp_path):
    broken = tmp_path / "bids"
    shutil.copytree(bids, broken)
    for s in ("01", "03"):
        _break(next((broken / f"sub-{s}" / "func").glob("*_bold.nii.gz")))
    with pytest.raises(TaskFailures) as exc:      # the first full read (mask pass) fails, per run
        _quiet(prepare, find_bids_runs(broken), PrepareSettings.from_options(aux="task", n_dims=5))
    assert isinstance(exc.value, PrepareError)
    failed = sorted(exc.value.failures)
    assert len(failed) == 2 and "sub-01_task-sim_bold" in failed[0] and "sub-03_task-sim_bold" in failed[1]
    assert "2 run(s) failed" in str(exc.value)


@pytest.mark.parametrize("scheduler", ["joblib", pytest.param("dask", marks=needs_dask)])
def test_participant_failure_named_and_rerun_picks_up(bids, tmp_path, capsys, scheduler, request):
    data = tmp_path / "bids"
    shutil.copytree(bids, data)
    bold = next((data / "sub-02" / "func").glob("*_bold.nii.gz"))
    good = bold.read_bytes()
    _break(bold)
    out = tmp_path / "out"
    opts = ["--n-jobs", "2"]
    if scheduler == "dask":
        opts += ["--scheduler", "dask", "--dask-address", request.getfixturevalue("dask_address")]
    assert _quiet(bids_main, [str(data), str(out), "participant", *opts]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 subject(s) failed" in err and "sub-02" in err
    assert share_paths(out, "01")["share"].is_file() and share_paths(out, "03")["share"].is_file()
    assert not share_paths(out, "02")["share"].exists()
    done = {s: share_paths(out, s)["share"].stat().st_mtime_ns for s in ("01", "03")}

    bold.write_bytes(good)          # fixed: the rerun computes sub-02 only
    assert _quiet(bids_main, [str(data), str(out), "participant", *opts]) == 0
    printed = capsys.readouterr().out
    assert "sub-01: share exists" in printed and "sub-02: 1 run(s) prepared" in printed
    assert {s: share_paths(out, s)["share"].stat().st_mtime_ns for s in ("01", "03")} == done
    assert share_paths(out, "02")["share"].is_file()


def test_participant_killed_worker_named_and_rerun_picks_up(bids, tmp_path, capsys, monkeypatch):
    """The worker of sub-02 is killed (2 loky workers): exit 1 naming sub-02, the others' shares are
    written, none of sub-02; the rerun computes sub-02 only.

    joblib only: with 3 subjects on 2 Dask workers, Dask does not queue the tasks (fewer than
    twice the threads), so a subject waiting on the dying worker may be charged too
    (``test_killed_worker_is_named_and_the_others_finish`` covers Dask's KilledWorker).
    """
    out = tmp_path / "out"

    def run_killing_sub02(fn, tasks, **kw):      # fn: write_participant_share(runs, out_dir, ...)
        return run_tasks(_killing(fn, lambda runs, out_dir: runs[0].subject == "02"), tasks, **kw)

    with monkeypatch.context() as m:
        m.setattr("trends_ivae.data.parallel.run_tasks", run_killing_sub02)
        assert _quiet(bids_main, [str(bids), str(out), "participant", "--n-jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 subject(s) failed: sub-02: worker died" in err and "SIGKILL" in err
    assert share_paths(out, "01")["share"].is_file() and share_paths(out, "03")["share"].is_file()
    assert not share_paths(out, "02")["share"].exists()
    done = {s: share_paths(out, s)["share"].stat().st_mtime_ns for s in ("01", "03")}

    assert _quiet(bids_main, [str(bids), str(out), "participant", "--n-jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "sub-01: share exists" in printed and "sub-03: share exists" in printed
    assert "sub-02: 1 run(s) prepared" in printed
    assert {s: share_paths(out, s)["share"].stat().st_mtime_ns for s in ("01", "03")} == done
    assert share_paths(out, "02")["share"].is_file()


@needs_dask
def test_bids_app_local_dask_cluster(bids, tmp_path):
    """No address: a local cluster of --n-jobs worker processes is started and closed."""
    out = tmp_path / "out"
    assert _quiet(bids_main, [str(bids), str(out), "participant", "--participant-label", "01",
                              "--scheduler", "dask", "--n-jobs", "1"]) == 0
    ref = tmp_path / "ref"
    assert _quiet(bids_main, [str(bids), str(ref), "participant", "--participant-label", "01"]) == 0
    import h5py

    with h5py.File(share_paths(out, "01")["share"]) as a, h5py.File(share_paths(ref, "01")["share"]) as b:
        np.testing.assert_array_equal(a["rows"][()], b["rows"][()])


def test_dask_address_needs_dask_scheduler(bids, tmp_path):
    with pytest.raises(SystemExit) as exc:
        bids_main([str(bids), str(tmp_path / "o"), "participant", "--dask-address", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2
