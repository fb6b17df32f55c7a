"""Run per-subject tasks on joblib (one machine) or Dask (a cluster), failures collected by name.

The prepare stage's heavy work is one independent task per subject (mask statistics,
cleaning, the subject-level factorisation); :func:`run_tasks` runs such tasks and
yields their outcomes **in submission order**, so that whatever consumes them (MIGP)
gives the same result whatever the scheduler and the number of workers.

Schedulers
----------
``"joblib"`` (default)
    ``n_jobs`` loky worker processes (joblib's), each its own single-process executor so
    that a worker's death is charged to the task it ran; ``n_jobs=1`` runs in this
    process.
``"dask"``
    ``dask.distributed``: the scheduler at ``dask_address`` (e.g. one started by
    dask-jobqueue on SLURM, see ``docs/scale.md``), else a ``LocalCluster`` of
    ``n_jobs`` single-threaded worker processes started here and closed at the end.
    Needs the ``trends-ivae[dask]`` extra. Workers on other machines must see the
    input files and the output folder at the same paths (a shared file system).

Failures
--------
A task that raises, or whose worker dies (Dask's ``KilledWorker``, loky's
``TerminatedWorkerError``), does not stop the others: its outcome carries the error,
named by the task's name (``sub-01``), and the other tasks run to the end (a dead
worker is replaced). A joblib worker holds one task at a time, and so does a worker of
the local Dask cluster (``worker-saturation`` 1.0, when Dask queues the tasks: more
than twice as many as worker threads), so a death is charged to the task that was
running there, not to tasks waiting behind it. :func:`raise_failures` turns the
collected failures into one :class:`TaskFailures` error that lists every failed subject.

numpy / joblib / dask only (never torch).
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .images import PrepareError

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULERS", "Outcome", "TaskFailures", "run_tasks", "raise_failures", "dask_available",
           "check_scheduler"]

#: accepted values of ``scheduler``
SCHEDULERS = ("joblib", "dask")


@dataclass
class Outcome:
    """One task's outcome: ``result`` when ``ok``, else ``error`` (a one-line message)."""

    name: str
    ok: bool
    result: Any = None
    error: str | None = None
    details: str | None = None

    @classmethod
    def of(cls, name: str, ok: bool, value: Any, details: str | None) -> "Outcome":
        """From :func:`_guarded`'s ``(ok, result or message, traceback)``."""
        return cls(name, ok, value if ok else None, None if ok else value, details)


class TaskFailures(PrepareError):
    """Some subjects failed; ``failures`` maps each name to its error message."""

    def __init__(self, failures: dict[str, str], what: str = "subject(s)") -> None:
        self.failures = dict(failures)
        lines = "; ".join(f"{name}: {msg}" for name, msg in self.failures.items())
        super().__init__(f"{len(self.failures)} {what} failed: {lines}")


def dask_available() -> bool:
    """True when ``dask.distributed`` can be imported."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _guarded(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any, str | None]:
    """Run ``fn`` and return ``(ok, result or message, traceback)``: errors travel as values."""
    try:
        return True, fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - reported by name by the caller
        return False, f"{type(exc).__name__}: {exc}", traceback.format_exc()


def check_scheduler(scheduler: str, n_jobs: int) -> None:
    """Refuse an unknown ``scheduler``, Dask when it is not installed, and ``n_jobs=0``.

    Raises
    ------
    ValueError
        An unknown scheduler, or ``n_jobs=0``.
    ImportError
        ``scheduler="dask"`` without ``dask.distributed``.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    if scheduler == "dask" and not dask_available():
        raise ImportError("scheduler='dask' needs dask.distributed: pip install 'trends-ivae[dask]'")
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")


def run_tasks(fn: Callable, tasks: Sequence[tuple[str, tuple, dict]], *, scheduler: str = "joblib",
              n_jobs: int = 1, dask_address: str | None = None) -> Iterator[Outcome]:
    """Run ``fn(*args, **kwargs)`` for each ``(name, args, kwargs)``; yield outcomes in order.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled to the workers).
    tasks : list of (name, args, kwargs)
        ``name`` identifies the task in errors (``sub-01``).
    scheduler : {'joblib', 'dask'}, default='joblib'
    n_jobs : int, default=1
        joblib workers, or the size of the local Dask cluster (ignored with ``dask_address``).
    dask_address : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); only with ``scheduler='dask'``.

    Yields
    ------
    Outcome
        One per task, in the order of ``tasks``; a failed task yields ``ok=False``
        with the error message instead of raising.
    """
    check_scheduler(scheduler, n_jobs)
    tasks = list(tasks)
    if not tasks:
        return
    if scheduler == "dask":
        yield from _run_dask(fn, tasks, n_jobs, dask_address)
        return
    if dask_address is not None:
        raise ValueError("dask_address goes with scheduler='dask'")
    yield from _run_loky(fn, tasks, n_jobs)


#: thread-pool variables limited in the loky workers (as joblib does): cores // workers
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")

#: the idle loky workers of the last call and their environment, reused by the next call (as
#: joblib reuses its executor: no new processes to start); an idle worker exits after 5 minutes
_KEPT: dict = {"env": None, "workers": []}


def _died(exc: BaseException) -> str:
    """One line for a task that did not come back: a dead worker (exit codes kept), or else."""
    from concurrent.futures import BrokenExecutor

    if not isinstance(exc, BrokenExecutor):       # e.g. a result that cannot be pickled
        return f"{type(exc).__name__}: {exc}"
    codes = next((line.strip() for line in str(exc).splitlines() if "exit code" in line), "")
    return f"worker died ({type(exc).__name__}{': ' + codes if codes else ''})"


def _run_loky(fn: Callable, tasks: list, n_jobs: int) -> Iterator[Outcome]:
    """joblib's loky worker processes, one executor per worker, outcomes in order.

    One single-process executor per worker (not one pool of ``n_jobs``): when a worker
    dies (killed, out of memory), only the task it was running fails, named, and that
    worker is replaced; a shared pool would fail every task in flight and cannot tell
    which one killed it. Tasks are started at most ``2 * n_jobs`` ahead of the one
    yielded next. The workers are kept for the next call (idle ones exit after 5 minutes).
    """
    import os
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib import cpu_count, effective_n_jobs
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    n = min(effective_n_jobs(n_jobs), len(tasks))
    if effective_n_jobs(n_jobs) == 1:             # in this process
        for name, args, kwargs in tasks:
            ok, value, tb = _guarded(fn, args, kwargs)
            yield Outcome.of(name, ok, value, tb)
        return
    threads = str(max(cpu_count() // n, 1))
    env = {var: os.environ.get(var, threads) for var in _THREAD_VARS}
    kept, _KEPT["workers"] = _KEPT["workers"], []     # taken: a concurrent call starts its own
    if _KEPT["env"] != env:
        for ex in kept:
            ex.shutdown(wait=False, kill_workers=True)
        kept = []
    workers: list = (kept + [None] * n)[:max(n, len(kept))]   # slot -> its executor (None: not started)
    running: dict = {}                            # future -> (task index, slot)
    finished: dict[int, Outcome] = {}
    submitted = emitted = 0
    try:
        while True:
            while emitted in finished:            # before submitting more: a consumer that stops
                yield finished.pop(emitted)       # here never stops a task just submitted
                emitted += 1
            if emitted == len(tasks):
                break
            busy = {slot for _, slot in running.values()}
            for slot in range(n):
                if submitted >= min(len(tasks), emitted + 2 * n):
                    break
                if slot in busy:
                    continue
                _, args, kwargs = tasks[submitted]
                try:
                    fut = workers[slot].submit(_guarded, fn, args, kwargs)
                except Exception:  # noqa: BLE001 - not started, or a kept worker that died while idle
                    if workers[slot] is not None:
                        workers[slot].shutdown(wait=False, kill_workers=True)
                    workers[slot] = ProcessPoolExecutor(max_workers=1, env=env, timeout=300)
                    fut = workers[slot].submit(_guarded, fn, args, kwargs)
                running[fut] = (submitted, slot)
                submitted += 1
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i, slot = running.pop(fut)
                try:
                    ok, value, tb = fut.result()
                except Exception as exc:  # noqa: BLE001 - its worker died (killed, out of memory), ...
                    ok, value, tb = False, _died(exc), traceback.format_exc()
                    workers[slot].shutdown(wait=False, kill_workers=True)
                    workers[slot] = None                  # a fresh worker for the next task
                finished[i] = Outcome.of(tasks[i][0], ok, value, tb)
    finally:
        for _, slot in running.values():          # stopped early: no task is left running
            workers[slot].shutdown(wait=False, kill_workers=True)
            workers[slot] = None
        mine = [ex for ex in workers if ex is not None]
        if _KEPT["workers"] and _KEPT["env"] != env:   # a concurrent call kept its own, other settings
            for ex in mine:
                ex.shutdown(wait=False, kill_workers=True)
        else:
            _KEPT.update(env=env, workers=_KEPT["workers"] + mine)


def _run_dask(fn: Callable, tasks: list, n_jobs: int, address: str | None) -> Iterator[Outcome]:
    import uuid

    import dask
    from dask.distributed import Client, LocalCluster

    cluster = None
    if address is None:
        n = n_jobs if n_jobs > 0 else None
        # worker-saturation 1.0: a worker holds only the task it runs (not one more queued),
        # so that a worker's death is charged to that task alone (KilledWorker names it)
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        logger.info("dask: local cluster with %d worker(s)", len(client.scheduler_info()["workers"]))
    else:
        client = Client(address)
        logger.info("dask: connected to %s", address)
    tag = uuid.uuid4().hex[:8]
    try:
        # one graph (client.map, not one submit per task): the scheduler sees all the tasks
        # at once and queues them, handing each worker one at a time
        futures = client.map(_guarded, [fn] * len(tasks), [a for _, a, _ in tasks], [k for _, _, k in tasks],
                             key=[f"trends-ivae-{name}-{tag}" for name, _, _ in tasks], pure=False)
        for (name, _, _), fut in zip(tasks, futures):
            try:
                ok, value, tb = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection, ...
                ok, value, tb = False, f"{type(exc).__name__}: {exc}", traceback.format_exc()
            fut.release()
            yield Outcome.of(name, ok, value, tb)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def raise_failures(outcomes: Sequence[Outcome], what: str = "subject(s)") -> None:
    """Raise :class:`TaskFailures` listing every failed outcome (nothing when all succeeded)."""
    failed = {o.name: o.error for o in outcomes if not o.ok}
    if failed:
        for o in outcomes:
            if not o.ok and o.details:
                logger.debug("%s failed:\n%s", o.name, o.details)
        raise TaskFailures(failed, what)
