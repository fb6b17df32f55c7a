"""Training of the conditional-prior flow by exact maximum likelihood (nanoGPT style).

One flat loop: the whole dataset on the device, batches drawn there, Adam with a
short warm-up and a cosine decay, the held-out log-likelihood after every epoch and
the best state kept. Two phases:

1. ``linear_epochs``: only the linear layer and the prior learn (the splines stay
   the identity), i.e. maximum-likelihood nonstationary linear ICA from the start;
2. ``max_epochs``: everything learns.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from .config import DictConfig
from .flow import FlowConfig, FlowModel
from .priors import init_lookup_prior
from .progress import Progress
from .schedule import lr_lambda
from .train import make_generator, split_indices

__all__ = ["FlowTrainConfig", "FlowResult", "FlowFit", "train_flow"]


@dataclass
class FlowTrainConfig(DictConfig):
    """How the flow is trained.

    Attributes
    ----------
    max_epochs : int
        Epochs of the full flow (phase 2).
    linear_epochs : int
        Epochs of the linear layer and prior alone (phase 1).
    batch_size : int
    lr : float
        Peak Adam learning rate of phase 2 (phase 1 uses the same).
    warmup_frac : float
        Fraction of each phase's steps with a linear warm-up of the learning rate.
    val_frac : float
        Held-out fraction of the rows: the best held-out log-likelihood is kept.
    grad_clip : float
        Gradient-norm clip.
    weight_decay : float
    """

    max_epochs: int = 20
    linear_epochs: int = 5
    batch_size: int = 2048
    lr: float = 5e-3
    warmup_frac: float = 0.05
    val_frac: float = 0.1
    grad_clip: float = 10.0
    weight_decay: float = 0.0


@dataclass
class FlowResult:
    """One restart: the best held-out state, its held-out log-likelihood per row, the
    per-epoch ``train_elbo`` / ``val_elbo`` (exact log-likelihoods) and bookkeeping."""

    model: FlowModel
    best_val_elbo: float
    history: dict = field(default_factory=dict)
    n_epochs: int = 0
    diverged: bool = False
    seed: int = 0
    seconds: float = 0.0


#: rows per batch of the held-out pass: the memory of one batch (~1 kB a row with the
#: splines), not of the held-out rows, whatever their number
EVAL_ROWS = 4096


@torch.no_grad()
def _mean_loglik(model: FlowModel, X: torch.Tensor, U: torch.Tensor, idx: torch.Tensor, batch: int = EVAL_ROWS,
                 splines: bool = True) -> float:
    """Mean exact log-likelihood of the rows ``idx``, ``batch`` rows at a time."""
    total = 0.0
    for i in range(0, idx.numel(), batch):
        rows = idx[i:i + batch]
        total += float(model.log_prob(X[rows], U[rows], splines=splines).double().sum())
    return total / max(idx.numel(), 1)


@dataclass
class FlowFit:
    """The live state of one flow restart, which both phases advance.

    Attributes
    ----------
    model : FlowModel
    X, U : tensor
        The standardised rows and u's indices, on the model's device.
    train_idx, val_idx : tensor
        The train / validation split.
    generator : torch.Generator
        Draws each epoch's batch order.
    progress : Progress
    deadline : float or None
        ``time.perf_counter()`` value after which no new epoch starts.
    epoch : int
        Epochs run so far, both phases together.
    best : float
        The best held-out log-likelihood per row so far.
    best_state : dict or None
        The model's state at ``best``.
    history : dict
        ``train_elbo`` and ``val_elbo`` per epoch.
    """

    model: FlowModel
    X: torch.Tensor
    U: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    generator: torch.Generator
    progress: Progress
    deadline: float | None = None
    epoch: int = 0
    best: float = -math.inf
    best_state: dict | None = None
    history: dict = field(default_factory=lambda: {"train_elbo": [], "val_elbo": []})


def _phase(fit: FlowFit, params: list, tc: FlowTrainConfig, epochs: int, splines: bool = True) -> bool:
    """Train ``params`` of ``fit.model`` for ``epochs``; keep the best held-out state in ``fit``.
    ``splines=False``: the splines are the identity and stay so (not in ``params``), so
    the model is evaluated without them. Returns False when the loss became non-finite."""
    if epochs <= 0:
        return True
    model, X, U, train_idx, val_idx = fit.model, fit.X, fit.U, fit.train_idx, fit.val_idx
    n_batches = max(1, train_idx.numel() // tc.batch_size)
    total = epochs * n_batches
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, 0.0, max(1, int(tc.warmup_frac * total))))
    for _ in range(epochs):
        model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=fit.generator, device=train_idx.device)]
        run = 0.0
        for b in range(n_batches):
            rows = order[b * tc.batch_size:(b + 1) * tc.batch_size]
            loss = -model.log_prob(X[rows], U[rows], splines=splines).mean()
            if not torch.isfinite(loss):
                return False
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            sched.step()
            run += loss.item()
        fit.epoch += 1
        train_ll = -run / n_batches
        val_ll = _mean_loglik(model.eval(), X, U, val_idx, splines=splines) if val_idx.numel() else train_ll
        fit.history["train_elbo"].append(train_ll)
        fit.history["val_elbo"].append(val_ll)
        fit.progress.update(fit.epoch, train_ll, val_ll)
        if math.isfinite(val_ll) and val_ll > fit.best:
            fit.best, fit.best_state = val_ll, copy.deepcopy(model.state_dict())
        if fit.deadline is not None and time.perf_counter() > fit.deadline:
            break
    return True


def train_flow(config: FlowConfig, tc: FlowTrainConfig, X: torch.Tensor, U: torch.Tensor, *, seed: int,
               split_seed: int | None = None, start: tuple[torch.Tensor, torch.Tensor] | None = None,
               verbose: int = 0, desc: str = "flow", max_seconds: float | None = None,
               ll_offset: float = 0.0) -> FlowResult:
    """Fit one flow to standardised ``X`` (N, n) with u indices ``U`` on one device.

    Parameters
    ----------
    start : (unmixing, offset), optional
        The linear layer's starting point (a linear ICA solution); None starts from
        a random orthogonal matrix.
    split_seed : int, optional
        Seed of the train/validation split (the same for all restarts); ``seed`` by default.
    ll_offset : float
        Added to the log-likelihoods the progress display shows (the data's units).
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    device = X.device
    model = FlowModel(config).to(device)
    if start is not None:
        model.set_linear(*start)
    else:
        q, _ = torch.linalg.qr(torch.randn(config.n_components, config.n_components,
                                           generator=torch.Generator().manual_seed(seed)))
        model.set_linear(q, torch.zeros(config.n_components))
    with torch.no_grad():   # the start's sources, EVAL_ROWS rows at a time
        z0 = torch.cat([model.encode(X[i:i + EVAL_ROWS])[0] for i in range(0, X.shape[0], EVAL_ROWS)])
        init_lookup_prior(model.prior, z0, U)
    train_idx, val_idx = split_indices(X.shape[0], tc.val_frac, seed if split_seed is None else split_seed, device)
    fit = FlowFit(model=model, X=X, U=U, train_idx=train_idx, val_idx=val_idx,
                  generator=make_generator(device, seed + 1),
                  progress=Progress(verbose, desc, tc.linear_epochs + tc.max_epochs, offset=ll_offset),
                  deadline=None if max_seconds is None else t0 + max_seconds)
    linear = [model.unmixing, model.offset, *model.prior.parameters()]
    linear_epochs = tc.linear_epochs + (0 if config.transforms else tc.max_epochs)
    ok = _phase(fit, linear, tc, linear_epochs, splines=False)
    if ok and config.transforms and (fit.deadline is None or time.perf_counter() < fit.deadline):
        ok = _phase(fit, list(model.parameters()), tc, tc.max_epochs)
    if fit.best_state is not None:
        model.load_state_dict(fit.best_state)
    fit.progress.close(f"held-out log-likelihood per volume {fit.best + ll_offset:.3f}")
    return FlowResult(model=model.eval(), best_val_elbo=fit.best, history=fit.history,
                      n_epochs=fit.epoch, diverged=not ok and fit.best_state is None, seed=seed,
                      seconds=time.perf_counter() - t0)
