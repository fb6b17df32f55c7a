"""CPU threads of a fit: the policy (one thread for a small model) and a scoped setting.

torch's intra-op thread count is process-wide; a fit sets it for its own duration only
(:func:`cpu_threads`) to what :func:`fit_threads` chooses.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["SMALL_MODEL_PARAMS", "cpu_threads", "fit_threads"]

#: models with fewer parameters than this train on one CPU thread by default: their
#: matrix products are too small to gain from a second thread (docs/benchmarks.md)
SMALL_MODEL_PARAMS = 1_000_000


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the caller's setting
    afterwards (``n=None``: leave it as it is)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_threads(n_threads: int | str | None, device: torch.device, model: torch.nn.Module) -> int | None:
    """The intra-op thread count a fit of ``model`` on ``device`` runs with (None: the caller's).

    ``n_threads`` is an estimator's parameter: an int is used as it is, None keeps the
    caller's, ``"auto"`` gives 1 for a model of fewer than :data:`SMALL_MODEL_PARAMS`
    parameters on the CPU and the caller's otherwise.
    """
    if n_threads != "auto":
        return n_threads
    if device.type != "cpu":
        return None
    return 1 if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS else None
