"""The iVAE engine in torch: priors, networks, the model and its training loop.

Training takes its process group as an explicit ``comm`` (:mod:`.comm`), keeps a
restart's state in one :class:`~.checkpoint.TrainState` (its checkpoint), its run
control in one :class:`~.run.TrainRun`, and draws
its mini-batches on the device (:mod:`.batches`). This package is device-free (no
``.cuda()`` calls; constants are buffers) and data-format-free (tensors in, tensors
out). The numpy-facing estimator lives in
:mod:`trends_ivae.estimators.ivae`.
"""
from .checkpoint import CheckpointError, TrainState, load_checkpoint
from .comm import SINGLE_PROCESS, Comm
from .config import IVAEConfig, TrainConfig
from .ivae import IVAEModel
from .priors import ConditionalPrior, make_prior
from .run import TrainRun
from .train import TrainResult, fit_restarts, resolve_device, train_model

__all__ = [
    "CheckpointError",
    "Comm",
    "SINGLE_PROCESS",
    "TrainState",
    "load_checkpoint",
    "IVAEConfig",
    "TrainConfig",
    "IVAEModel",
    "ConditionalPrior",
    "make_prior",
    "TrainResult",
    "TrainRun",
    "fit_restarts",
    "resolve_device",
    "train_model",
]
