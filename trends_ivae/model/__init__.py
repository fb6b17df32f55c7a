"""The iVAE engine in torch: priors, networks, the model and its training loop.

This package is device-free (no ``.cuda()`` calls; constants are buffers) and
data-format-free (tensors in, tensors out). The numpy-facing estimator lives in
:mod:`trends_ivae.estimator`.
"""
from .config import IVAEConfig, TrainConfig
from .ivae import IVAEModel
from .priors import ConditionalPrior, make_prior
from .train import TrainResult, fit_restarts, resolve_device, train_model

__all__ = [
    "IVAEConfig",
    "TrainConfig",
    "IVAEModel",
    "ConditionalPrior",
    "make_prior",
    "TrainResult",
    "fit_restarts",
    "resolve_device",
    "train_model",
]
