"""Training: device choice, one restart, several restarts.

This module owns the device, the seeds, autocast and the training loop, as nanoGPT's
``train.py`` does. A restart's live state is one :class:`~.checkpoint.TrainState`
(saved and restored whole, :mod:`.checkpoint`); its mini-batches come from
:class:`~.batches.EpochBatches` (the dataset on the device as one tensor, indices
drawn there with a device generator, or streamed in chunks). The process group, if
any, is the explicit ``comm`` argument (:mod:`.comm`).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .batches import EpochBatches, take_rows
from .checkpoint import CheckpointError, TrainState, load_checkpoint, save_checkpoint
from .comm import SINGLE_PROCESS, Comm
from .config import IVAEConfig, TrainConfig
from .ivae import IVAEModel
from .progress import Progress
from .run import TrainRun
from .schedule import lr_lambda

__all__ = ["resolve_device", "make_generator", "split_indices", "TrainResult", "TrainRun", "evaluate_elbo",
           "train_model", "fit_restarts", "CheckpointError", "load_checkpoint"]

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here "
                         "(use device='auto' or 'cpu')")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was requested but MPS is not available here")
    return dev


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def split_indices(n: int, val_frac: float, seed: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random train / validation index split drawn on ``device``."""
    n_val = int(round(n * val_frac)) if val_frac > 0 else 0
    if n_val and n - n_val < 1:
        n_val = 0
    perm = torch.randperm(n, generator=make_generator(device, seed), device=device)
    return perm[n_val:], perm[:n_val]


@dataclass
class TrainResult:
    """What one restart produced.

    Attributes
    ----------
    model : IVAEModel
        The state with the best held-out ELBO (or the last state without a split).
    best_val_elbo : float
        Mean held-out ELBO per sample of that state (train ELBO without a split).
    history : dict
        ``train_elbo`` and ``val_elbo`` per epoch.
    n_epochs, n_steps : int
    diverged : bool
        True when the loss became non-finite; the model then holds the last finite
        best state and the restart is not selected.
    seed : int
    seconds : float
    resume_state : dict or None
        The live training state (as in a checkpoint) when the run was paused by
        ``stop_epoch``; pass it back as ``resume`` to continue.
    """

    model: IVAEModel
    best_val_elbo: float
    history: dict = field(default_factory=dict)
    n_epochs: int = 0
    n_steps: int = 0
    diverged: bool = False
    seed: int = 0
    seconds: float = 0.0
    resume_state: dict | None = None


@torch.no_grad()
def evaluate_elbo(model: IVAEModel, X: Any, U: torch.Tensor, idx: torch.Tensor, batch_size: int, seed: int = 0,
                  comm: Comm = SINGLE_PROCESS) -> float:
    """Mean ELBO per sample over the global rows ``idx`` (one posterior sample, fixed seed).

    With ``comm`` (a distributed fit) ``idx`` holds global row numbers; this rank
    evaluates the ones it holds with the noise a single process would draw for them,
    and the sum is taken over ranks: the same figure as one process on all rows.
    """
    model.eval()
    dev = next(model.parameters()).device   # X, U may live on the host (streamed training)
    g = make_generator(dev, seed)
    n = model.config.n_components
    total = 0.0
    for start in range(0, idx.numel(), batch_size):
        rows = idx[start:start + batch_size]
        eps = torch.randn((rows.numel(), n), generator=g, device=dev)
        if comm.active:
            mine = comm.owns(rows)
            rows, eps = comm.local_rows(rows[mine]), eps[mine.to(dev)]
        if rows.numel():
            xu = take_rows(X, U, rows)
            total += float(model.elbo(xu[0].to(dev), xu[1].to(dev), eps=eps).double().sum())
    model.train()
    return comm.sum(total) / max(idx.numel(), 1)


def _make_adam(model: IVAEModel, tc: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device, else ``foreach``."""
    try:
        return torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, foreach=True)


def _new_state(model_config: IVAEConfig, tc: TrainConfig, seed: int, device: torch.device,
               total_steps: int, init: Callable[[IVAEModel], None] | None) -> TrainState:
    """A fresh restart: weights from ``seed``, optimiser, schedule and the batch generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = IVAEModel(model_config).to(device)
    if init is not None:
        init(model)
    opt = _make_adam(model, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(total_steps, tc.lr_final_ratio, min(200, max(1, total_steps // 50))))
    return TrainState(model=model, optimizer=opt, scheduler=sched, generator=make_generator(device, seed + 1),
                      model_config=model_config, train_config=tc, seed=seed)


class _DecoderVarianceAnneal:
    """The decoder's log-variance at each step: linear in the step from ``log(decoder_var_start)``
    to the model's fixed value over the ``warm_steps`` warm-up steps; None (the model's own)
    when there is nothing to anneal (no start value, or a learned variance)."""

    def __init__(self, model: IVAEModel, tc: TrainConfig, warm_steps: int) -> None:
        self.target = model.decoder_logvar.detach().clone()   # the fresh model's: a fixed variance is a buffer
        self.start = None
        if tc.decoder_var_start is not None and model.config.decoder_var is not None:
            self.start = torch.full_like(self.target, math.log(tc.decoder_var_start))
        self.warm_steps = warm_steps

    def __call__(self, step: int) -> torch.Tensor | None:
        if self.start is None:
            return None
        frac = min(1.0, step / self.warm_steps) if self.warm_steps > 0 else 1.0
        return self.start + (self.target - self.start) * frac


def _train_epoch(state: TrainState, batches: EpochBatches, objective: Callable[..., Any],
                 anneal: _DecoderVarianceAnneal, scale: float, device: torch.device) -> torch.Tensor:
    """One pass over the training batches: an optimiser step per batch; the summed bound (float64)."""
    tc, model, opt, gen = state.train_config, state.model, state.optimizer, state.generator
    use_amp = tc.amp and device.type == "cuda"
    eps_shape = ((tc.n_iwae,) if tc.n_iwae > 1 else ()) + (batches.batch_size, state.model_config.n_components)
    params = [p for p in model.parameters() if p.requires_grad]
    epoch_sum = torch.zeros((), device=device, dtype=torch.float64)
    for batch in batches.epoch(gen):   # the epoch's permutation comes first from ``gen``, then each batch's noise
        eps = torch.randn(eps_shape, generator=gen, device=device)
        if batch.mine is not None:
            eps = eps[..., batch.mine, :]
        dec_logvar = anneal(state.step)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            if tc.n_iwae > 1:
                bound = objective("iwae", batch.x, batch.u, tc.n_iwae, eps=eps, decoder_logvar=dec_logvar)
                loss = -bound.sum() * scale
            else:
                log_px, kl = objective("elbo_terms", batch.x, batch.u, eps=eps, decoder_logvar=dec_logvar)
                elbo = log_px - kl
                bound = elbo.detach()
                loss = -elbo.sum() * scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip, foreach=True)
        opt.step()
        state.scheduler.step()
        state.step += 1
        epoch_sum += bound.detach().sum().double()
    return epoch_sum


def train_model(model_config: IVAEConfig, train_config: TrainConfig, X: Any, U: torch.Tensor,
                run: TrainRun) -> TrainResult:
    """Train one restart on ``X`` (N, d) and ``U`` (N, m), by default resident on the device.

    Parameters
    ----------
    model_config, train_config : IVAEConfig, TrainConfig
        The model to build and how to train it.
    X, U : tensor
        The (standardised) rows and u's layout (level indices or continuous columns).
    run : TrainRun
        How this run goes (:class:`~.run.TrainRun`): seeds, progress, checkpoint,
        stopping, streaming, device, start and process group.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        ``X`` is not a tensor without ``run.stream_rows``, or a rank's rows are not its share.
    CheckpointError
        ``run.checkpoint_path`` exists but is not a checkpoint of this model.
    """
    comm, seed, desc, stream_rows = run.comm, run.seed, run.desc, run.stream_rows
    tc = train_config
    device = (X.device if run.device is None and isinstance(X, torch.Tensor)
              else torch.device(run.device or "cpu"))
    if not isinstance(X, torch.Tensor) and stream_rows is None:
        raise ValueError("X must be a tensor unless stream_rows is given (streamed from a row source)")
    t0 = time.perf_counter()
    n_local = int(X.shape[0])
    n_all = int(round(comm.sum(n_local)))
    if comm.active and n_local != len(range(comm.rank, n_all, comm.world)):
        raise ValueError(f"rank {comm.rank} holds {n_local} rows; a distributed fit needs every "
                         f"{comm.world}th row of the {n_all} (trends_ivae.estimators.distributed.row_share)")
    # the split, the batches and the noise are drawn over all rows, identically on every rank
    train_idx, val_idx = split_indices(n_all, tc.val_frac,
                                       seed if run.split_seed is None else run.split_seed, device)
    batches = EpochBatches(X, U, train_idx, min(tc.batch_size, train_idx.numel()), device, comm=comm,
                           stream_rows=stream_rows)
    total_steps = tc.max_epochs * batches.steps
    warm_steps = int(tc.warmup_frac * total_steps)

    state = _new_state(model_config, tc, seed, device, total_steps, run.init)
    anneal = _DecoderVarianceAnneal(state.model, tc, warm_steps)
    ckpt = Path(run.checkpoint_path) if run.checkpoint_path is not None else None
    saved = load_checkpoint(ckpt, device, model_config) if ckpt is not None and ckpt.exists() else run.resume
    if saved is not None:
        state.restore(saved, device)
        logger.info("resumed %s from %s at epoch %d", desc, ckpt or "memory", state.epoch)

    model = state.model
    progress = Progress(run.verbose, desc, tc.max_epochs, offset=run.elbo_offset)
    diverged = False
    model.train()
    objective = comm.objective(model)   # model.<method>(...), through DDP when distributed
    scale = comm.world / batches.batch_size   # DDP averages over ranks: the gradient of the global batch mean
    end_epoch = tc.max_epochs if run.stop_epoch is None else min(tc.max_epochs, run.stop_epoch)
    while state.epoch < end_epoch and state.bad_epochs < tc.patience:
        epoch_sum = _train_epoch(state, batches, objective, anneal, scale, device)
        train_elbo = comm.sum(epoch_sum) / (batches.steps * batches.batch_size)
        state.epoch += 1
        if not math.isfinite(train_elbo):
            diverged = True
            logger.warning("%s diverged (non-finite ELBO) at epoch %d", desc, state.epoch)
            break
        if val_idx.numel():
            val_elbo = evaluate_elbo(model, X, U, val_idx, tc.eval_batch_size, seed=seed + 2, comm=comm)
        else:
            val_elbo = train_elbo
        if not math.isfinite(val_elbo):
            diverged = True
            logger.warning("%s diverged (non-finite held-out ELBO) at epoch %d", desc, state.epoch)
            break
        state.history["train_elbo"].append(train_elbo)
        state.history["val_elbo"].append(val_elbo)
        progress.update(state.epoch, train_elbo, val_elbo)
        annealing = anneal.start is not None and warm_steps > 0 and state.step < warm_steps   # the objective moves
        if val_elbo > state.best_val or annealing:
            state.best_val, state.bad_epochs = val_elbo, 0
            state.best_state = copy.deepcopy(model.state_dict())
        else:
            state.bad_epochs += 1
        if ckpt is not None and comm.rank == 0:   # every rank's generator is in the same state
            save_checkpoint(ckpt, state)
        if state.bad_epochs >= tc.patience:
            break
        if run.max_seconds is not None and comm.any(time.perf_counter() - t0 > run.max_seconds):
            break
    paused = (not diverged and end_epoch <= state.epoch < tc.max_epochs and state.bad_epochs < tc.patience)
    resume_state = copy.deepcopy(state.checkpoint()) if paused else None
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    seconds = time.perf_counter() - t0
    best_val = state.best_val
    progress.close("diverged" if diverged else
                   f"done: best held-out ELBO per volume {best_val + run.elbo_offset:.3f} ({seconds:.1f} s)")
    if state.best_state is None:
        best_val = -math.inf
    return TrainResult(model=model, best_val_elbo=best_val, history=state.history, n_epochs=state.epoch,
                       n_steps=state.step, diverged=diverged, seed=seed, seconds=seconds,
                       resume_state=resume_state)

def fit_restarts(model_config: IVAEConfig, train_config: TrainConfig, X: Any, U: torch.Tensor,
                 run: TrainRun, *, n_init: int = 1, init_epochs: int | None = None,
                 checkpoint_dir: str | os.PathLike | None = None) -> list[TrainResult]:
    """Train ``n_init`` restarts with seeds derived from ``run.seed``; all results, in order.

    Restart ``i`` (from 0) has the seed ``run.seed + 1000 (i + 1)``; all share the split
    seed ``run.seed`` (or ``run.split_seed``). ``run.init`` starts the first restart
    (e.g. at a linear ICA solution); the others start at random. The rest of ``run``
    (``verbose``, ``max_seconds``, ``comm``, ``stream_rows``, ``device``,
    ``elbo_offset``) is every restart's, passed to :func:`train_model`; each restart's
    ``desc``, ``checkpoint_path``, ``stop_epoch`` and ``resume`` are set here.

    With ``init_epochs`` (and ``n_init > 1``) the restarts race: every restart trains
    for its first ``init_epochs`` epochs (of a schedule that spans ``max_epochs``), and
    only the one with the best held-out ELBO so far continues to ``max_epochs``. The
    others are returned as they stood after ``init_epochs``.

    A diverged restart is retried once with a quarter of the learning rate and the
    seed plus 7 before it is reported as diverged. With ``checkpoint_dir`` every
    restart checkpoints to ``restartNN.pt`` and a rerun resumes each phase from there.
    """
    race = init_epochs is not None and n_init > 1 and init_epochs < train_config.max_epochs
    comm = run.comm
    shared = dataclasses.replace(run, split_seed=run.seed if run.split_seed is None else run.split_seed,
                                 stop_epoch=init_epochs if race else None, resume=None, init=None)
    train = functools.partial(train_model, model_config, X=X, U=U)
    results, ckpts, tcs = [], [], []
    for i in range(n_init):
        restart_seed = run.seed + 1000 * (i + 1)
        ckpt = Path(checkpoint_dir) / f"restart{i:02d}.pt" if checkpoint_dir is not None else None
        desc = f"iVAE restart {i + 1}/{n_init}"
        tc = train_config
        res = train(tc, run=dataclasses.replace(shared, seed=restart_seed, desc=desc, checkpoint_path=ckpt,
                                                init=run.init if i == 0 else None))
        if res.diverged:
            tc = TrainConfig.from_dict({**train_config.to_dict(), "lr": train_config.lr / 4})
            logger.warning("%s diverged; retrying with lr=%g", desc, tc.lr)
            if ckpt is not None and ckpt.exists() and comm.rank == 0:
                ckpt.unlink()
            comm.gather(None)   # every rank past the unlink before anyone resumes
            res = train(tc, run=dataclasses.replace(shared, seed=restart_seed + 7, desc=desc + " (retry)",
                                                    checkpoint_path=ckpt))
        results.append(res)
        ckpts.append(ckpt)
        tcs.append(tc)
    if race:
        scores = [r.best_val_elbo if not r.diverged else -math.inf for r in results]
        best = max(range(n_init), key=lambda i: scores[i])
        r = results[best]
        if math.isfinite(scores[best]) and r.resume_state is not None:
            cont = train(tcs[best], run=dataclasses.replace(
                shared, seed=r.seed, desc=f"iVAE restart {best + 1}/{n_init} (continued)",
                checkpoint_path=ckpts[best], stop_epoch=None, resume=r.resume_state))
            cont.seconds += r.seconds
            results[best] = cont
        for res in results:
            res.resume_state = None
    return results
