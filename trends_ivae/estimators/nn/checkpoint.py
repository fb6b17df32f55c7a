"""The live state of one training run and its checkpoint file.

:class:`TrainState` is everything a run needs to continue exactly where it stopped:
the model, the optimiser, the learning-rate schedule, the generator of the batch order
and the noise, the history, the counters and the best state so far. A checkpoint is
that state as a dict of tensors and plain containers (nanoGPT's ``{model, optimizer,
config, step, ...}``), written atomically by :func:`save_checkpoint` and read back,
running nothing in it, by :func:`load_checkpoint`; :meth:`TrainState.restore` puts
it back into a freshly built state.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...atomic import atomic_path
from .config import IVAEConfig, TrainConfig

__all__ = ["TrainState", "CheckpointError", "CHECKPOINT_KEYS", "load_checkpoint", "save_checkpoint"]


def _empty_history() -> dict[str, list[float]]:
    return {"train_elbo": [], "val_elbo": []}


@dataclass
class TrainState:
    """One restart's training state, as :func:`~trends_ivae.estimators.nn.train.train_model` advances it.

    Attributes
    ----------
    model : torch.nn.Module
        The model being trained (an :class:`~trends_ivae.estimators.nn.IVAEModel`).
    optimizer : torch.optim.Optimizer
    scheduler : torch.optim.lr_scheduler.LRScheduler
        The learning-rate schedule, stepped once per optimiser step.
    generator : torch.Generator
        On the training device; draws each epoch's batch order and each batch's noise.
    model_config : IVAEConfig
    train_config : TrainConfig
    seed : int
        The restart's seed (recorded in the checkpoint).
    history : dict
        ``train_elbo`` and ``val_elbo``, one value per finished epoch.
    epoch, step : int
        Finished epochs and optimiser steps.
    best_val : float
        Best held-out ELBO so far (``-inf`` before the first epoch).
    bad_epochs : int
        Epochs since ``best_val`` last improved (after the warm-up).
    best_state : dict or None
        ``model.state_dict()`` (a copy) at ``best_val``.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    model_config: IVAEConfig
    train_config: TrainConfig
    seed: int
    history: dict = field(default_factory=_empty_history)
    epoch: int = 0
    step: int = 0
    best_val: float = -math.inf
    bad_epochs: int = 0
    best_state: dict | None = None

    def checkpoint(self) -> dict:
        """The state as a checkpoint dict (live references; :func:`copy.deepcopy` to keep it)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "history": self.history,
            "epoch": self.epoch,
            "step": self.step,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
            "seed": self.seed,
        }

    def restore(self, ckpt: dict, device: torch.device) -> None:
        """Continue from ``ckpt`` (a :meth:`checkpoint` dict): load every part of it into this state."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        g_state = ckpt["generator"]
        self.generator.set_state(g_state.cpu() if device.type == "cpu" else g_state)
        self.history, self.epoch, self.step = ckpt["history"], ckpt["epoch"], ckpt["step"]
        self.best_val, self.bad_epochs = ckpt["best_val"], ckpt["bad_epochs"]
        self.best_state = ckpt["best_state"]


class CheckpointError(ValueError):
    """A file in a checkpoint folder that is not a usable trends-ivae checkpoint."""


#: what every checkpoint written by :func:`save_checkpoint` holds
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "generator", "config", "history", "epoch",
                   "step", "best_val", "bad_epochs", "best_state")


def save_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Write ``state.checkpoint()`` to ``path`` atomically (a temporary file, then a rename)."""
    with atomic_path(path) as tmp:
        torch.save(state.checkpoint(), tmp)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu",
                    model_config: IVAEConfig | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, running nothing in it.

    The file is read with ``weights_only=True``: tensors and plain containers only,
    so a pickle that carries code is refused, never executed.

    Returns
    -------
    dict
        The checkpoint, with every key of :data:`CHECKPOINT_KEYS`, tensors on ``device``.

    Raises
    ------
    CheckpointError
        Naming the file, when it is not a readable checkpoint (truncated, not a torch
        file, holds objects other than tensors), lacks a checkpoint's entries, or was
        written for a model of another shape than ``model_config``.
    """
    import pickle
    import warnings

    path = Path(path)
    advice = "delete it to start this restart afresh, or use another --checkpoint-dir"
    try:
        with warnings.catch_warnings():   # torch's remarks on a foreign pickle's protocol
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{str(path)!r} is not a usable trends-ivae checkpoint (it holds objects "
                              f"other than tensors, and those are never loaded); {advice}") from None
    except Exception as exc:  # noqa: BLE001 - zip, EOF and I/O errors all mean the same here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"it cannot be read, truncated or not a torch file: {first}"
        raise CheckpointError(f"{str(path)!r} is not a usable trends-ivae checkpoint ({reason}); "
                              f"{advice}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a usable trends-ivae checkpoint (it lacks "
                              f"{', '.join(missing)}); {advice}")
    if model_config is not None and isinstance(state["config"], dict):
        want = model_config.to_dict()
        diff = [f"{k} {state['config'].get(k)!r} instead of {want[k]!r}"
                for k in ("n_features", "n_components", "n_aux", "aux_kind", "prior")
                if state["config"].get(k) != want[k]]
        if diff:
            raise CheckpointError(f"{str(path)!r} is a checkpoint of another model ({'; '.join(diff)}); "
                                  f"{advice}")
    return state
