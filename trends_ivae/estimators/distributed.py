"""Multi-process training with PyTorch DistributedDataParallel (launched by ``torchrun``).

One process per device ("rank"): Gloo on CPUs, NCCL on GPUs. Each rank holds only its
share of the rows (every ``world``-th row, :func:`row_share`) and computes what one
process would compute on all rows:

* the weights start equal (same seed; DDP also broadcasts rank 0's at wrapping);
* every rank draws the same train / held-out split, the same batch order and the same
  reparameterisation noise over the global row numbers (one generator, one seed); of
  each global batch of ``batch_size`` rows a rank evaluates the rows it holds, with
  their noise, and scales its objective so that DDP's averaged gradient is the
  gradient of the whole batch's mean;
* the train and held-out ELBOs are summed over ranks, so early stopping and the
  choice of the best restart are the same decision on every rank;
* the checkpoint is written by rank 0 only; every rank resumes from it.

So a fit on ``W`` ranks is the one-process fit, up to the order of floating-point
sums (the all-reduce), which can make long runs drift apart slowly.

:class:`ProcessGroupComm` implements :class:`trends_ivae.estimators.nn.comm.Comm`, what the
estimators and the training loop ask of the group. It is an explicit argument
(``IVAE.fit(X, u, comm=...)``, passed down to
:func:`~trends_ivae.estimators.nn.train.fit_restarts` and
:func:`~trends_ivae.estimators.nn.train.train_model`): nothing in the estimators or in
``model/`` looks for a process group by itself, and without ``comm`` a fit is the
one-process fit (:data:`trends_ivae.estimators.nn.comm.SINGLE_PROCESS`) whatever groups exist.
Whoever starts the group builds the communicator::

    device = init_from_env("auto")
    comm = ProcessGroupComm()
    share = row_share(n_rows, comm.rank, comm.world)
    IVAE(...).fit(X[share], u[share], comm=comm)

Launch (see ``docs/scale.md``)::

    trends-ivae prepare --bids ds/ --out prep/ ...
    torchrun --nproc-per-node 2 -m trends_ivae.cli.main fit --prepared prep/prepared.h5 \
        --out results/ --distributed [--checkpoint-dir ckpt/]

``benchmarks/scale.py ddp`` fits the paper's synthetic data with one process and with
two Gloo processes; ``tests/_distributed_helpers.py`` starts Gloo groups for the tests.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .nn.comm import SINGLE_PROCESS, Comm, SingleProcess

__all__ = ["Comm", "ProcessGroupComm", "SingleProcess", "SINGLE_PROCESS", "rank", "world_size",
           "row_share", "init_from_env", "shutdown", "group_was_used"]


_GROUP_USED = False


def group_was_used() -> bool:
    """True once :func:`init_from_env` has created a process group in this process."""
    return _GROUP_USED


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def row_share(n_rows: int, rank_: int | None = None, world: int | None = None) -> slice:
    """The rows of ``n_rows`` that rank ``rank_`` holds: ``slice(rank, n_rows, world)``.

    Strided rather than contiguous: a prepared file is ordered subject by subject (and
    a segment-labelled data set segment by segment), so contiguous blocks would give
    each rank its own subjects and its own u labels, and each rank's updates would pull
    towards its half of the data. Every ``world``-th row gives every rank every subject
    and label (``docs/benchmarks.md`` compares the two). h5py reads a strided selection
    chunk by chunk. ``rank_`` and ``world`` default to this process's in the current
    process group (rank 0 of 1 without one).
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if not 0 <= r < w:
        raise ValueError(f"rank {r} outside a world of {w}")
    return slice(r, n_rows, w)


def init_from_env(device: str = "auto", timeout_s: float = 3600.0) -> torch.device:
    """Join the process group described by torchrun's environment; this rank's device.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
    (set by ``torchrun``). The backend is NCCL when the device is CUDA (each rank then
    uses ``cuda:LOCAL_RANK``), else Gloo. ``timeout_s`` bounds every collective, including
    the other ranks' wait at :func:`shutdown` while rank 0 writes the outputs.

    Raises
    ------
    RuntimeError
        The variables are missing (not started by torchrun).
    """
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"distributed training needs torchrun's environment ({', '.join(missing)} unset): "
                           "launch with 'torchrun --nproc-per-node N -m trends_ivae.cli.main fit ... "
                           "--distributed' (see docs/scale.md)")
    local = int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or str(device).startswith("cuda")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
        global _GROUP_USED
        _GROUP_USED = True
    return dev


def shutdown() -> None:
    """Leave the process group (no-op without one), all ranks together.

    Every rank waits at a barrier first, so no rank leaves while rank 0 is still
    writing the outputs (the wait is bounded by the group's timeout,
    :func:`init_from_env`). The command line then ends each rank with ``os._exit``
    (:func:`trends_ivae.cli.main._exit_if_distributed`), because the interpreter's
    teardown after a Gloo group sometimes aborted.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if dist.get_world_size() > 1:
                dist.barrier()
        finally:
            dist.destroy_process_group()


class _Objective(nn.Module):
    """DDP wraps a module's ``forward``: this one calls a named method of the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str, *args: Any, **kwargs: Any):  # noqa: D102
        return getattr(self.model, method)(*args, **kwargs)


class ProcessGroupComm:
    """:class:`~trends_ivae.estimators.nn.comm.Comm` over the initialised ``torch.distributed`` group.

    Built by the caller that started the group (:func:`init_from_env`), once, and passed
    to ``fit`` as ``comm``; ``rank`` and ``world`` are read from the group then. With a
    group of one process every operation is the identity.

    Raises
    ------
    RuntimeError
        No process group is initialised.
    """

    def __init__(self) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ProcessGroupComm needs an initialised process group "
                               "(trends_ivae.estimators.distributed.init_from_env under torchrun)")
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.active = self.world > 1

    def objective(self, model: nn.Module) -> Callable[..., Any]:
        """``f(method, *args, **kw)`` calling ``model.method``; through DDP when distributed."""
        if not self.active:
            return lambda method, *a, **kw: getattr(model, method)(*a, **kw)
        dev = next(model.parameters()).device
        ddp = nn.parallel.DistributedDataParallel(
            _Objective(model), device_ids=[dev] if dev.type == "cuda" else None,
            find_unused_parameters=True)
        return ddp

    def owns(self, rows: torch.Tensor) -> torch.Tensor:
        """Which of the global row numbers ``rows`` this rank holds (a boolean mask)."""
        return rows % self.world == self.rank

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's index of each of its global rows ``rows`` (see :func:`row_share`)."""
        return torch.div(rows, self.world, rounding_mode="floor")

    def sum(self, value: float | torch.Tensor) -> float:
        """Sum over ranks (float64)."""
        if not self.active:
            return float(value)
        t = torch.as_tensor(value, dtype=torch.float64).reshape(1).clone()
        t = t.to(self._device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def sum_array(self, value: Any) -> np.ndarray:
        """Elementwise sum over ranks of a numpy array (float64)."""
        arr = np.asarray(value, dtype=np.float64)
        if not self.active:
            return arr
        t = torch.from_numpy(arr.reshape(-1).copy()).to(self._device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy().reshape(arr.shape)

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on some rank."""
        return self.sum(1.0 if flag else 0.0) > 0 if self.active else bool(flag)

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (a list in rank order) on every rank."""
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @staticmethod
    def _device() -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
