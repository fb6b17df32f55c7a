"""Gloo process groups on this machine for the tests: fit ``IVAE`` on several ranks.

Real runs start their ranks with ``torchrun`` (``trends-ivae fit --distributed``); these
helpers start them with ``torch.multiprocessing`` and pass each rank's
:class:`~trends_ivae.estimators.distributed.ProcessGroupComm` to ``IVAE.fit`` explicitly, as the
command line does.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import torch

from trends_ivae.estimators.distributed import ProcessGroupComm, init_from_env, row_share, shutdown


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for MASTER_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fit_share(rank_: int, world: int, port: int, X, u, params: dict, out: str,
               fit_kwargs: dict | None = None) -> None:
    """One rank of :func:`fit_on_ranks`: join the group, fit on its rows, rank 0 saves the model."""
    from trends_ivae.estimators.ivae import IVAE

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank_),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank_))
    torch.set_num_threads(1)
    init_from_env("cpu")
    try:
        comm = ProcessGroupComm()
        share = row_share(len(X), comm.rank, comm.world)
        u_share = u.iloc[share] if hasattr(u, "iloc") else np.asarray(u)[share]   # a DataFrame of factors
        est = IVAE(**params).fit(np.asarray(X)[share], u_share, comm=comm, **(fit_kwargs or {}))
        if rank_ == 0:
            est.save(out)
    finally:
        shutdown()


def fit_on_ranks(X, u, params: dict, world: int, out: str, start_method: str = "fork",
                 fit_kwargs: dict | None = None) -> None:
    """Fit ``IVAE(**params)`` on ``X, u`` with ``world`` Gloo processes; rank 0 saves it to ``out``.

    Each process takes its share of the rows (:func:`~trends_ivae.estimators.distributed.row_share`);
    ``fit_kwargs`` go to :meth:`IVAE.fit` on every rank (e.g. ``checkpoint_dir``).
    """
    import torch.multiprocessing as mp

    mp.start_processes(_fit_share, args=(world, free_port(), X, u, params, out, fit_kwargs), nprocs=world,
                       join=True, start_method=start_method)
