"""What training asks of a process group: the :class:`Comm` protocol and its one-process default.

The training loop (:func:`~trends_ivae.estimators.nn.train.train_model`), the restarts
(:func:`~trends_ivae.estimators.nn.train.fit_restarts`) and the estimators take the
communicator as an explicit ``comm`` argument; none of them looks for a process group
by itself. :data:`SINGLE_PROCESS` (every collective the identity) is the default;
:class:`trends_ivae.estimators.distributed.ProcessGroupComm` is the implementation over a
``torch.distributed`` group, built by whoever started the group (``trends-ivae fit
--distributed``). This module never imports ``torch.distributed``, so ``model/``
knows nothing of process groups.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["Comm", "SingleProcess", "SINGLE_PROCESS"]


@runtime_checkable
class Comm(Protocol):
    """The collectives of a group of ``world`` processes that train one model together.

    Attributes
    ----------
    rank : int
        This process's index in the group, ``0 <= rank < world``.
    world : int
        Number of processes. Each holds every ``world``-th row of the data, starting at
        row ``rank`` (:func:`trends_ivae.estimators.distributed.row_share`).
    active : bool
        True when ``world > 1``; with False every method below is the identity.
    """

    rank: int
    world: int
    active: bool

    def objective(self, model: nn.Module) -> Callable[..., Any]:
        """``f(method, *args, **kw)`` calling ``model.method``; gradients averaged over ranks."""

    def owns(self, rows: torch.Tensor) -> torch.Tensor:
        """Boolean mask: which of the global row numbers ``rows`` this rank holds."""

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's index of each of its global rows ``rows``."""

    def sum(self, value: float | torch.Tensor) -> float:
        """Sum of a scalar over ranks (float64)."""

    def sum_array(self, value: Any) -> np.ndarray:
        """Elementwise sum of a numpy array over ranks (float64)."""

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on some rank."""

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank (also a barrier)."""


class SingleProcess:
    """The :class:`Comm` of one process: rank 0 of a world of 1, every collective the identity."""

    rank, world, active = 0, 1, False

    def objective(self, model: nn.Module) -> Callable[..., Any]:
        return lambda method, *a, **kw: getattr(model, method)(*a, **kw)

    def owns(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(rows, dtype=torch.bool)

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows

    def sum(self, value: float | torch.Tensor) -> float:
        return float(value)

    def sum_array(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float64)

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def gather(self, obj: Any) -> list:
        return [obj]


#: the default ``comm`` everywhere: one process
SINGLE_PROCESS = SingleProcess()
