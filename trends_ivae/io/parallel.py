"""Run per-subject tasks on joblib (one machine) or Dask (a cluster), failures collected by name.

The prepare stage's heavy work is one independent task per subject (mask statistics,
cleaning, the subject-level factorisation); :func:`run_tasks` runs such tasks and
yields their outcomes **in submission order**, so that whatever consumes them (MIGP)
gives the same result whatever the scheduler and the number of workers.

Schedulers
----------
``"joblib"`` (default)
    ``joblib.Parallel(n_jobs)`` with loky worker processes; ``n_jobs=1`` runs in this
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
named by the task's name (``sub-01``). :func:`raise_failures` turns the collected
failures into one :class:`TaskFailures` error that lists every failed subject.

numpy / joblib / dask only (never torch).
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .images import PrepareError

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULERS", "Outcome", "TaskFailures", "run_tasks", "raise_failures", "dask_available"]

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


def _check(scheduler: str, n_jobs: int) -> None:
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
    _check(scheduler, n_jobs)
    tasks = list(tasks)
    if not tasks:
        return
    if scheduler == "dask":
        yield from _run_dask(fn, tasks, n_jobs, dask_address)
        return
    if dask_address is not None:
        raise ValueError("dask_address goes with scheduler='dask'")
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_guarded)(fn, args, kwargs) for _, args, kwargs in tasks)
    done = 0
    try:
        for ok, value, tb in results:
            name = tasks[done][0]
            done += 1
            yield Outcome(name, ok, value if ok else None, None if ok else value, tb)
    except Exception as exc:  # noqa: BLE001 - a worker process died (killed, out of memory)
        msg = f"worker died ({type(exc).__name__}: {exc})"
        for name, _, _ in tasks[done:]:   # joblib cannot tell which one; none of these finished
            yield Outcome(name, False, None, msg)


def _run_dask(fn: Callable, tasks: list, n_jobs: int, address: str | None) -> Iterator[Outcome]:
    import uuid

    from dask.distributed import Client, LocalCluster

    cluster = None
    if address is None:
        n = n_jobs if n_jobs > 0 else None
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        logger.info("dask: local cluster with %d worker(s)", len(client.scheduler_info()["workers"]))
    else:
        client = Client(address)
        logger.info("dask: connected to %s", address)
    tag = uuid.uuid4().hex[:8]
    try:
        futures = [client.submit(_guarded, fn, args, kwargs, key=f"trends-ivae-{name}-{tag}", pure=False)
                   for name, args, kwargs in tasks]
        for (name, _, _), fut in zip(tasks, futures):
            try:
                ok, value, tb = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection, ...
                ok, value, tb = False, f"{type(exc).__name__}: {exc}", traceback.format_exc()
            fut.release()
            yield Outcome(name, ok, value if ok else None, None if ok else value, tb)
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
