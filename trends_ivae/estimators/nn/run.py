"""How one training run is controlled: :class:`TrainRun`, passed whole to the trainer.

nanoGPT style: what is trained is the model's configuration
(:class:`~.config.IVAEConfig`), how it learns is the training configuration
(:class:`~.config.TrainConfig`), and everything else about one run (its seeds, its
progress display, where it checkpoints, when it stops, where it runs, how it starts)
is this one dataclass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from .comm import SINGLE_PROCESS, Comm

__all__ = ["TrainRun"]


@dataclass
class TrainRun:
    """The run-control settings of one restart (:func:`~.train.train_model`), or those
    that all restarts share (:func:`~.train.fit_restarts`).

    Attributes
    ----------
    seed : int
        Seeds the initial weights, the mini-batch order and the reparameterisation
        noise. For :func:`~.train.fit_restarts`, the base seed: restart ``i`` (from 0)
        has the seed ``seed + 1000 (i + 1)``.
    split_seed : int, optional
        Seeds the train / validation split (default: ``seed``); restarts share it so
        that their held-out ELBOs are comparable.
    verbose : int
        Progress on stderr (0: none), labelled ``desc``.
    desc : str
        The label of the progress display and of the log messages.
    checkpoint_path : path, optional
        Written atomically after every epoch (:func:`~.checkpoint.save_checkpoint`); when
        it exists at the start, training resumes from it and finishes as an
        uninterrupted run would.
    max_seconds : float, optional
        Stop after this much wall time (the best state so far is kept).
    stop_epoch : int, optional
        Pause after this many epochs (counted from the start of the schedule, which
        still spans ``max_epochs``); the result then carries ``resume_state`` and the
        best state so far.
    resume : dict, optional
        A ``resume_state`` to continue from (a checkpoint file, when it exists, wins).
    stream_rows : int, optional
        Streamed training, for data larger than the device's memory: ``X`` and ``U``
        stay where they are and each epoch's rows go to ``device`` in chunks of about
        this many rows (whole batches). ``X`` may then also be a row source that is not
        in memory at all, e.g. an ``h5py.Dataset`` (each chunk's rows are read in
        increasing order). The batches, and so the results, are the same as without it
        (same device, same seed).
    device : torch.device or str, optional
        Where to train (default: ``X.device``); with ``stream_rows``, the device the
        chunks go to.
    init : callable, optional
        Called with the freshly built model before training, e.g. to start it at a
        linear ICA solution (a checkpoint or ``resume`` state, when present, wins).
        For :func:`~.train.fit_restarts`, the first restart's start (the others start
        at random).
    elbo_offset : float
        Added to the ELBOs the progress display shows (e.g. ``-sum(log scale)`` of a
        standardisation, so that they read in the data's units as the results do).
    comm : Comm
        The process group (:mod:`.comm`; default one process). In a distributed fit
        ``X``, ``U`` are this rank's rows, every ``world``-th row of the data
        (:func:`trends_ivae.estimators.distributed.row_share`). Every rank draws the same
        global split, batch order and noise as one process would (one generator, same
        seed on every rank), computes the objective of the rows of each global batch
        that it holds, scaled so that DDP's averaged gradient is the one-process
        gradient of the whole batch; ELBOs are summed over ranks, and rank 0 alone
        writes the checkpoint. The result is the one-process fit, up to floating-point
        summation order.
    """

    seed: int
    split_seed: int | None = None
    verbose: int = 0
    desc: str = "iVAE"
    checkpoint_path: str | os.PathLike | None = None
    max_seconds: float | None = None
    stop_epoch: int | None = None
    resume: dict | None = None
    stream_rows: int | None = None
    device: str | torch.device | None = None
    init: Callable[[torch.nn.Module], None] | None = None
    elbo_offset: float = 0.0
    comm: Comm = SINGLE_PROCESS
