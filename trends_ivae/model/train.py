"""Training: device choice, one restart, several restarts, checkpoints.

This module owns the device, the seeds, autocast and the checkpoint
``{model, optimizer, scheduler, config, train_config, step, ...}``, as nanoGPT's
``train.py`` does. The whole dataset lives on the device as one tensor and
mini-batch indices are drawn there with a device generator: no DataLoader.
"""
from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .config import IVAEConfig, TrainConfig
from .ivae import IVAEModel

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
def evaluate_elbo(model: IVAEModel, X, U, idx: torch.Tensor, batch_size: int, seed: int = 0,
                  comm=None) -> float:
    """Mean ELBO per sample over the global rows ``idx`` (one posterior sample, fixed seed).

    With ``comm`` (a distributed fit) ``idx`` holds global row numbers; this rank
    evaluates the ones it holds with the noise a single process would draw for them,
    and the sum is taken over ranks: the same figure as one process on all rows.
    """
    comm = _SingleProcess() if comm is None else comm
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
            xu = _take_rows(X, U, rows)
            total += float(model.elbo(xu[0].to(dev), xu[1].to(dev), eps=eps).double().sum())
    model.train()
    return comm.sum(total) / max(idx.numel(), 1)


def _take_rows(X, U, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows`` of ``X`` and ``U``: tensors are indexed, row sources read (sorted) and reordered."""
    if isinstance(X, torch.Tensor):
        r = rows.to(X.device)
        return X[r], U[r.to(U.device)]
    import numpy as np

    r = rows.cpu().numpy()
    order = np.argsort(r, kind="stable")
    xs = torch.as_tensor(np.asarray(X[r[order]], dtype=np.float32))
    x = torch.empty_like(xs)
    x[torch.as_tensor(order)] = xs
    return x, U[rows.to(U.device)]


class _Progress:
    """Training progress on stderr, off when ``verbose`` is 0 or less.

    On a terminal a tqdm bar (epochs, with the ELBOs); elsewhere (logs) plain lines: the
    last epoch of each restart, every epoch with ``verbose > 1``, and the outcome.
    """

    def __init__(self, verbose: int, desc: str, total: int, offset: float = 0.0) -> None:
        # offset: added to every ELBO shown, so that it reads in the data's units (per volume)
        self.verbose, self.desc, self.total, self.offset = verbose, desc, total, offset
        self.tty = sys.stderr.isatty()
        self.bar = None
        if self.verbose > 0 and self.tty:
            import shutil

            from tqdm import tqdm

            cols, rows = shutil.get_terminal_size()   # 80 x 24 where a terminal reports 0 x 0
            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True,
                            ncols=cols, nrows=rows)

    def update(self, epoch: int, train: float, val: float) -> None:
        if self.verbose <= 0:
            return
        elbo = f"ELBO per volume train {train + self.offset:.3f} val {val + self.offset:.3f}"
        if self.bar is not None:
            self.bar.set_postfix_str(elbo, refresh=False)
            self.bar.update(epoch - self.bar.n)
        elif self.verbose > 1 or epoch == self.total:
            sys.stderr.write(f"{self.desc} epoch {epoch}/{self.total} {elbo}\n")
            sys.stderr.flush()

    def close(self, message: str = "") -> None:
        if self.verbose <= 0:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.close()
        else:
            sys.stderr.write(f"{self.desc} {message}\n")
            sys.stderr.flush()


def _make_adam(model: IVAEModel, tc: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device, else ``foreach``."""
    try:
        return torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, foreach=True)


def _lr_lambda(total_steps: int, final_ratio: float, warm: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


class _SingleProcess:
    """The collectives of a one-process group (identities): the default ``comm``.

    A distributed fit passes :class:`trends_ivae.distributed.Comm` instead (same
    methods); this module never imports ``torch.distributed`` itself.
    """

    rank, world, active = 0, 1, False

    def objective(self, model):
        return lambda method, *a, **kw: getattr(model, method)(*a, **kw)

    def sum(self, value) -> float:
        return float(value)

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def gather(self, obj) -> list:
        return [obj]

    def owns(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(rows, dtype=torch.bool)

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows


def train_model(model_config: IVAEConfig, train_config: TrainConfig, X: torch.Tensor,
                U: torch.Tensor, *, seed: int, split_seed: int | None = None,
                verbose: int = 0, desc: str = "iVAE",
                checkpoint_path: str | os.PathLike | None = None,
                max_seconds: float | None = None, stop_epoch: int | None = None,
                resume: dict | None = None, comm=None, stream_rows: int | None = None,
                device: str | torch.device | None = None,
                init: Callable[[IVAEModel], None] | None = None, elbo_offset: float = 0.0) -> TrainResult:
    """Train one restart on device-resident ``X`` (N, d) and ``U`` (N, m).

    Parameters
    ----------
    seed : int
        Seeds the initial weights, the mini-batch order and the reparameterisation noise.
    split_seed : int, optional
        Seeds the train / validation split (default: ``seed``); restarts share it so
        that their held-out ELBOs are comparable.
    checkpoint_path : path, optional
        Written atomically after every epoch; when it exists at the start, training
        resumes from it and finishes as an uninterrupted run would.
    max_seconds : float, optional
        Stop after this much wall time (the best state so far is kept).
    stop_epoch : int, optional
        Pause after this many epochs (counted from the start of the schedule, which
        still spans ``max_epochs``); the result then carries ``resume_state`` and the
        best state so far.
    resume : dict, optional
        A ``resume_state`` to continue from (a checkpoint file, when it exists, wins).
    comm : trends_ivae.distributed.Comm, optional
        The process group of a distributed fit. ``X``, ``U`` are then this rank's rows,
        every ``world``-th row of the data (:func:`trends_ivae.distributed.row_share`).
        Every rank draws the same global split, batch order and noise as one process
        would (one generator, same seed on every rank), computes the objective of the
        rows of each global batch that it holds, scaled so that DDP's averaged
        gradient is the one-process gradient of the whole batch; ELBOs are summed over
        ranks, and rank 0 alone writes the checkpoint. The result is the one-process
        fit, up to floating-point summation order. Default: one process.
    stream_rows : int, optional
        Streamed training, for data larger than the device's memory: ``X`` and ``U``
        stay where they are and each epoch's rows go to ``device`` in chunks of about
        this many rows (whole batches). ``X`` may then also be a row source that is not
        in memory at all, e.g. an ``h5py.Dataset`` (each chunk's rows are read in
        increasing order). Default: one gather per epoch on the device holding ``X``.
        The batches, and so the results, are the same either way (same device, same
        seed).
    device : torch.device, optional
        Where to train (default: ``X.device``); with ``stream_rows``, the device the
        chunks go to.
    init : callable, optional
        Called with the freshly built model before training, e.g. to start it at a
        linear ICA solution (a checkpoint or ``resume`` state, when present, wins).
    elbo_offset : float
        Added to the ELBOs the progress display shows (e.g. ``-sum(log scale)`` of a
        standardisation, so that they read in the data's units as the results do).
    """
    comm = _SingleProcess() if comm is None else comm
    tc = train_config
    device = X.device if device is None and isinstance(X, torch.Tensor) else torch.device(device or "cpu")
    if not isinstance(X, torch.Tensor) and stream_rows is None:
        raise ValueError("X must be a tensor unless stream_rows is given (streamed from a row source)")
    t0 = time.perf_counter()
    n_local = int(X.shape[0])
    n_all = int(round(comm.sum(n_local)))
    if comm.active and n_local != len(range(comm.rank, n_all, comm.world)):
        raise ValueError(f"rank {comm.rank} holds {n_local} rows; a distributed fit needs every "
                         f"{comm.world}th row of the {n_all} (trends_ivae.distributed.row_share)")
    # the split, the batches and the noise are drawn over all rows, identically on every rank
    train_idx, val_idx = split_indices(n_all, tc.val_frac,
                                       seed if split_seed is None else split_seed, device)
    n_train = train_idx.numel()
    batch_size = min(tc.batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch_size)
    total_steps = tc.max_epochs * steps_per_epoch
    warm_steps = int(tc.warmup_frac * total_steps)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = IVAEModel(model_config).to(device)
    if init is not None:
        init(model)
    opt = _make_adam(model, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(total_steps, tc.lr_final_ratio, min(200, max(1, total_steps // 50))))
    gen = make_generator(device, seed + 1)
    target_logvar = model.decoder_logvar.detach().clone()
    start_logvar = None
    if tc.decoder_var_start is not None and model_config.decoder_var is not None:
        start_logvar = torch.full_like(target_logvar, math.log(tc.decoder_var_start))

    history: dict[str, list[float]] = {"train_elbo": [], "val_elbo": []}
    best_val, best_state, bad_epochs, epoch, step = -math.inf, None, 0, 0, 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    state = None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, device, model_config)
    elif resume is not None:
        state = resume
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        g_state = state["generator"]
        gen.set_state(g_state.cpu() if device.type == "cpu" else g_state)
        history, epoch, step = state["history"], state["epoch"], state["step"]
        best_val, bad_epochs = state["best_val"], state["bad_epochs"]
        best_state = state["best_state"]
        logger.info("resumed %s from %s at epoch %d", desc, ckpt or "memory", epoch)

    use_amp = tc.amp and device.type == "cuda"
    progress = _Progress(verbose, desc, tc.max_epochs, offset=elbo_offset)
    diverged = False
    model.train()
    objective = comm.objective(model)   # model.<method>(...), through DDP when distributed
    d = X.shape[1]
    n_latent = model_config.n_components
    streamed = stream_rows is not None
    XU = torch.cat([X, U], dim=1) if not streamed else None   # one gather per epoch, then views
    chunk_steps = steps_per_epoch if not streamed else max(1, int(stream_rows) // batch_size)
    eps_shape = ((tc.n_iwae,) if tc.n_iwae > 1 else ()) + (batch_size, n_latent)
    scale = comm.world / batch_size   # DDP averages over ranks: the gradient of the global batch mean
    params = [p for p in model.parameters() if p.requires_grad]
    end_epoch = tc.max_epochs if stop_epoch is None else min(tc.max_epochs, stop_epoch)
    while epoch < end_epoch and bad_epochs < tc.patience:
        perm = train_idx[torch.randperm(n_train, generator=gen, device=device)]
        rows = perm[:steps_per_epoch * batch_size].view(steps_per_epoch, batch_size)
        if comm.active:   # this rank's rows of every global batch, in batch order
            mine = comm.owns(rows)
            counts = mine.sum(1).tolist()
            rows = comm.local_rows(rows[mine])
        else:
            mine, counts, rows = None, [batch_size] * steps_per_epoch, rows.reshape(-1)
        offsets = [0, *itertools.accumulate(counts)]   # where each batch's rows start in ``rows``
        epoch_sum = torch.zeros((), device=device, dtype=torch.float64)
        annealed = warm_steps > 0 and step < warm_steps
        for b in range(steps_per_epoch):
            if b % chunk_steps == 0:   # the next chunk of this epoch's rows (resident: the whole epoch)
                chunk = rows[offsets[b]:offsets[min(b + chunk_steps, steps_per_epoch)]]
                if streamed:
                    xc, uc = _take_rows(X, U, chunk)
                    XUp = torch.cat([xc, uc.to(xc.dtype)], dim=1).to(device, non_blocking=True)
                else:
                    XUp = XU[chunk]
                b0 = offsets[b]
            xu = XUp[offsets[b] - b0:offsets[b + 1] - b0]
            xb, ub = xu[:, :d], xu[:, d:]
            eps = torch.randn(eps_shape, generator=gen, device=device)
            if mine is not None:
                eps = eps[..., mine[b], :]
            kl_w, ent_w, dec_logvar = 1.0, 1.0, None
            if annealed:
                frac = min(1.0, step / warm_steps)
                kl_w = tc.kl_start + (1.0 - tc.kl_start) * frac
                ent_w = tc.entropy_start + (1.0 - tc.entropy_start) * frac
            if start_logvar is not None:
                frac = min(1.0, step / warm_steps) if warm_steps > 0 else 1.0
                dec_logvar = start_logvar + (target_logvar - start_logvar) * frac
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                if tc.n_iwae > 1:
                    bound = objective("iwae", xb, ub, tc.n_iwae, eps=eps, decoder_logvar=dec_logvar)
                    loss = -bound.sum() * scale
                else:
                    log_px, kl = objective("elbo_terms", xb, ub, eps=eps, decoder_logvar=dec_logvar,
                                           entropy_weight=ent_w)
                    bound = (log_px - kl).detach()
                    loss = -(log_px - kl_w * kl).sum() * scale
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip, foreach=True)
            opt.step()
            sched.step()
            step += 1
            epoch_sum += bound.detach().sum().double()
        train_elbo = comm.sum(epoch_sum) / (steps_per_epoch * batch_size)
        epoch += 1
        if not math.isfinite(train_elbo):
            diverged = True
            logger.warning("%s diverged (non-finite ELBO) at epoch %d", desc, epoch)
            break
        if val_idx.numel():
            val_elbo = evaluate_elbo(model, X, U, val_idx, tc.eval_batch_size, seed=seed + 2, comm=comm)
        else:
            val_elbo = train_elbo
        if not math.isfinite(val_elbo):
            diverged = True
            logger.warning("%s diverged (non-finite held-out ELBO) at epoch %d", desc, epoch)
            break
        history["train_elbo"].append(train_elbo)
        history["val_elbo"].append(val_elbo)
        progress.update(epoch, train_elbo, val_elbo)
        annealing = warm_steps > 0 and step < warm_steps
        if val_elbo > best_val or annealing:
            best_val, bad_epochs = val_elbo, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if ckpt is not None and comm.rank == 0:   # every rank's generator is in the same state
            _save_checkpoint(ckpt, model, opt, sched, gen, model_config, tc, history,
                             epoch, step, best_val, bad_epochs, best_state, seed)
        if bad_epochs >= tc.patience:
            break
        if max_seconds is not None and comm.any(time.perf_counter() - t0 > max_seconds):
            break
    paused = (not diverged and end_epoch <= epoch < tc.max_epochs and bad_epochs < tc.patience)
    resume_state = (copy.deepcopy(_checkpoint_state(model, opt, sched, gen, model_config, tc, history,
                                                    epoch, step, best_val, bad_epochs, best_state, seed))
                    if paused else None)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    seconds = time.perf_counter() - t0
    progress.close("diverged" if diverged else
                   f"done: best held-out ELBO per volume {best_val + elbo_offset:.3f} ({seconds:.1f} s)")
    if best_state is None:
        best_val = -math.inf
    return TrainResult(model=model, best_val_elbo=best_val, history=history, n_epochs=epoch,
                       n_steps=step, diverged=diverged, seed=seed, seconds=seconds,
                       resume_state=resume_state)


class CheckpointError(ValueError):
    """A file in a checkpoint folder that is not a usable trends-ivae checkpoint."""


#: what every checkpoint written by :func:`_save_checkpoint` holds
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "generator", "config", "history", "epoch",
                   "step", "best_val", "bad_epochs", "best_state")


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu",
                    model_config: IVAEConfig | None = None) -> dict:
    """Read a checkpoint written by :func:`train_model`, running nothing in it.

    The file is read with ``weights_only=True``: tensors and plain containers only,
    so a pickle that carries code is refused, never executed.

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


def _save_checkpoint(path: Path, model, opt, sched, gen, model_config, tc, history, epoch, step,
                     best_val, bad_epochs, best_state, seed) -> None:
    state = _checkpoint_state(model, opt, sched, gen, model_config, tc, history, epoch, step,
                              best_val, bad_epochs, best_state, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _checkpoint_state(model, opt, sched, gen, model_config, tc, history, epoch, step, best_val,
                      bad_epochs, best_state, seed) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "config": model_config.to_dict(),
        "train_config": tc.to_dict(),
        "history": history,
        "epoch": epoch,
        "step": step,
        "best_val": best_val,
        "bad_epochs": bad_epochs,
        "best_state": best_state,
        "seed": seed,
    }


def fit_restarts(model_config: IVAEConfig, train_config: TrainConfig, X: torch.Tensor,
                 U: torch.Tensor, *, n_init: int, seed: int, verbose: int = 0,
                 checkpoint_dir: str | os.PathLike | None = None,
                 max_seconds: float | None = None, init_epochs: int | None = None,
                 comm=None, stream_rows: int | None = None,
                 device: str | torch.device | None = None,
                 init_first: Callable[[IVAEModel], None] | None = None,
                 elbo_offset: float = 0.0) -> list[TrainResult]:
    """Train ``n_init`` restarts with seeds derived from ``seed``; all results, in order.

    ``init_first`` starts the first restart (e.g. at a linear ICA solution); the
    others start at random. ``elbo_offset`` is passed to :func:`train_model`.

    With ``init_epochs`` (and ``n_init > 1``) the restarts race: each runs its first
    ``init_epochs`` epochs (of a schedule that spans ``max_epochs``), and only the one
    with the best held-out ELBO so far is trained on to ``max_epochs`` (successive
    halving down to one). The others are returned as they stood after the race.

    A diverged restart is retried once with a quarter of the learning rate and a new
    seed before it is reported as diverged. With ``checkpoint_dir`` every restart
    checkpoints to ``restartNN.pt`` and a rerun resumes each phase from there.
    """
    race = init_epochs is not None and n_init > 1 and init_epochs < train_config.max_epochs
    stop = init_epochs if race else None
    results, ckpts, tcs = [], [], []
    split_seed = seed
    for i in range(n_init):
        restart_seed = seed + 1000 * (i + 1)
        ckpt = Path(checkpoint_dir) / f"restart{i:02d}.pt" if checkpoint_dir is not None else None
        desc = f"iVAE restart {i + 1}/{n_init}"
        tc = train_config
        res = train_model(model_config, tc, X, U, seed=restart_seed, split_seed=split_seed,
                          verbose=verbose, desc=desc, checkpoint_path=ckpt, max_seconds=max_seconds,
                          stop_epoch=stop, init=init_first if i == 0 else None,
                          comm=comm, stream_rows=stream_rows, device=device, elbo_offset=elbo_offset)
        if res.diverged:
            tc = TrainConfig.from_dict({**train_config.to_dict(), "lr": train_config.lr / 4})
            logger.warning("%s diverged; retrying with lr=%g", desc, tc.lr)
            if ckpt is not None and ckpt.exists() and (comm is None or comm.rank == 0):
                ckpt.unlink()
            if comm is not None:
                comm.gather(None)   # every rank past the unlink before anyone resumes
            res = train_model(model_config, tc, X, U, seed=restart_seed + 7, split_seed=split_seed,
                              verbose=verbose, desc=desc + " (retry)", checkpoint_path=ckpt,
                              max_seconds=max_seconds, stop_epoch=stop,
                              comm=comm, stream_rows=stream_rows, device=device, elbo_offset=elbo_offset)
        results.append(res)
        ckpts.append(ckpt)
        tcs.append(tc)
    if race:
        scores = [r.best_val_elbo if not r.diverged else -math.inf for r in results]
        best = max(range(n_init), key=lambda i: scores[i])
        r = results[best]
        if math.isfinite(scores[best]) and r.resume_state is not None:
            cont = train_model(model_config, tcs[best], X, U, seed=r.seed, split_seed=split_seed,
                               verbose=verbose, desc=f"iVAE restart {best + 1}/{n_init} (continued)",
                               checkpoint_path=ckpts[best], max_seconds=max_seconds,
                               resume=r.resume_state,
                               comm=comm, stream_rows=stream_rows, device=device, elbo_offset=elbo_offset)
            cont.seconds += r.seconds
            results[best] = cont
        for res in results:
            res.resume_state = None
    return results
