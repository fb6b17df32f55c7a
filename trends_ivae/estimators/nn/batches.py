"""Mini-batches drawn on the device: one epoch's batches of a restart's training rows.

The whole dataset stays where it is (on the training device as one tensor, or, for
streamed training, in host memory or on disk) and each epoch draws a permutation of
the training rows with the run's generator on the device: no ``Dataset`` or
``DataLoader``. In a distributed fit the permutation is of the global row numbers,
the same on every rank, and each rank keeps the rows of every batch that it holds.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from .comm import SINGLE_PROCESS, Comm

__all__ = ["Batch", "EpochBatches", "take_rows"]


def take_rows(X: Any, U: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows`` of ``X`` and ``U``, in the order given.

    A tensor ``X`` is indexed where it lives; any other row source (an ``h5py.Dataset``,
    a memmap, :class:`~trends_ivae.estimators.disk_rows.DiskRows`) is read in increasing row order
    and the rows put back in the order asked for (on the host).
    """
    if isinstance(X, torch.Tensor):
        r = rows.to(X.device)
        return X[r], U[r.to(U.device)]
    r = rows.cpu().numpy()
    order = np.argsort(r, kind="stable")
    xs = torch.as_tensor(np.asarray(X[r[order]], dtype=np.float32))
    x = torch.empty_like(xs)
    x[torch.as_tensor(order)] = xs
    return x, U[rows.to(U.device)]


class Batch(NamedTuple):
    """One mini-batch: ``x`` (b, d) and ``u`` (b, m) on the device; ``mine`` (batch_size,) bool,
    which rows of the global batch this rank holds (None with one process, where b = batch_size)."""

    x: torch.Tensor
    u: torch.Tensor
    mine: torch.Tensor | None


class EpochBatches:
    """The mini-batches of each epoch over the training rows ``train_idx``.

    Parameters
    ----------
    X, U : tensor or row source
        This rank's rows (all rows with one process). Without ``stream_rows`` both are
        tensors on ``device``.
    train_idx : tensor of int
        Global row numbers of the training split, on ``device``.
    batch_size : int
        Rows per global batch; an epoch is ``len(train_idx) // batch_size`` batches
        (at least one), the remainder of the permutation is left out.
    device : torch.device
        Where batches are drawn and delivered.
    comm : Comm
        The process group (:data:`~trends_ivae.estimators.nn.comm.SINGLE_PROCESS` by default).
    stream_rows : int, optional
        Move rows to ``device`` in chunks of about this many rows (whole batches);
        default: the whole epoch's rows in one gather from one resident ``[X, U]`` tensor.
        The batches are the same either way.
    """

    def __init__(self, X: Any, U: torch.Tensor, train_idx: torch.Tensor, batch_size: int,
                 device: torch.device, comm: Comm = SINGLE_PROCESS, stream_rows: int | None = None) -> None:
        self.X, self.U, self.train_idx, self.device, self.comm = X, U, train_idx, device, comm
        self.batch_size = batch_size
        self.n_train = train_idx.numel()
        self.steps = max(1, self.n_train // batch_size)
        self.streamed = stream_rows is not None
        self.n_features = X.shape[1]
        self._resident = torch.cat([X, U], dim=1) if not self.streamed else None   # one gather per epoch, then views
        self._chunk_steps = self.steps if not self.streamed else max(1, int(stream_rows) // batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        """This epoch's batches. The permutation is drawn from ``generator`` when iteration
        starts, before the caller draws anything else from it for the first batch."""
        steps, bs, comm = self.steps, self.batch_size, self.comm
        perm = self.train_idx[torch.randperm(self.n_train, generator=generator, device=self.device)]
        rows = perm[:steps * bs].view(steps, bs)
        if comm.active:   # this rank's rows of every global batch, in batch order
            mine = comm.owns(rows)
            counts = mine.sum(1).tolist()
            rows = comm.local_rows(rows[mine])
        else:
            mine, counts, rows = None, [bs] * steps, rows.reshape(-1)
        offsets = [0, *itertools.accumulate(counts)]   # where each batch's rows start in ``rows``
        d = self.n_features
        for b in range(steps):
            if b % self._chunk_steps == 0:   # the next chunk of this epoch's rows (resident: the whole epoch)
                chunk = rows[offsets[b]:offsets[min(b + self._chunk_steps, steps)]]
                if self.streamed:
                    xc, uc = take_rows(self.X, self.U, chunk)
                    xu_chunk = torch.cat([xc, uc.to(xc.dtype)], dim=1).to(self.device, non_blocking=True)
                else:
                    xu_chunk = self._resident[chunk]
                b0 = offsets[b]
            xu = xu_chunk[offsets[b] - b0:offsets[b + 1] - b0]
            yield Batch(xu[:, :d], xu[:, d:], None if mine is None else mine[b])
