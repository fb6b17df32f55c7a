"""The array-level estimator a :class:`~trends_ivae.GroupIVAE` trains, sized to the study.

fMRI studies are small next to the iVAE paper's 40k samples: a few hundred volumes give a
handful of optimiser steps per epoch. Unless the caller's parameters set them, the batch
is capped at a quarter of the training split and the epochs are raised (at most 400) to
reach about :data:`MIN_STEPS` optimiser steps per restart for the VAE, and
:data:`FLOW_MIN_STEPS` for the flow. With several restarts the VAE's restarts race for
the first eighth of the schedule (``IVAE(init_epochs=...)``). From more dimensions than
components the VAE divides x by one scale (``standardize="global"``) instead of
standardising each dimension, which would make the noise dimensions as loud as the signal
(issue 24; figures in ``docs/benchmarks.md``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..estimators.base import train_rows
from ..estimators.ivae import IVAE
from ..estimators.flow import IFlow

__all__ = ["GROUP_IVAE_DEFAULTS", "GROUP_FLOW_DEFAULTS", "MIN_STEPS", "FLOW_MIN_STEPS", "ESTIMATORS",
           "default_restarts", "make_estimator"]

#: IVAE settings that differ from the array-level defaults for fMRI: an encoder q(z|x)
#: (new subjects need no u), a learned observation-noise variance (fMRI is noisy), the
#: plain ELBO without a variance anneal, and the first restart started at the linear ICA
#: solution of the reduced data (``init="ica"``); docs/benchmarks.md has the figures.
GROUP_IVAE_DEFAULTS = {"encoder_uses_aux": False, "decoder_var": None, "n_iwae": 1,
                       "decoder_var_start": None, "init": "ica"}

#: optimiser steps per restart that small studies are trained for
MIN_STEPS = 3000

#: optimiser steps the flow is trained for at least
FLOW_MIN_STEPS = 600

#: the flow's training on fMRI rows: the budget its fMRI figures were measured with
#: (``IFlow``'s own defaults are tuned on the paper's noiseless square arrays)
GROUP_FLOW_DEFAULTS = {"batch_size": 2048, "lr": 5e-3, "max_epochs": 20, "transforms": 3}

#: the estimators ``GroupIVAE(estimator=...)`` builds
ESTIMATORS = {"vae": IVAE, "flow": IFlow}


def default_restarts(estimator: str, ica: str) -> int:
    """Restarts when ``n_init`` is None: 1 for the flow and for the spatial mode, else 3.

    The flow starts from linear ICA, and its restarts tripled the fit on fMRI; in the
    spatial mode random restarts won the ELBO race with worse maps (docs/benchmarks.md).
    """
    return 1 if estimator == "flow" or ica == "spatial" else 3


def _train_rows(n_samples: int, params: dict, defaults: dict) -> int:
    return train_rows(n_samples, params.get("val_frac", defaults["val_frac"]))


def make_estimator(estimator: str, n_components: int, n_samples: int, *, prior: str = "gauss",
                   n_init: int = 3, params: dict | None = None, device: str = "auto",
                   random_state: Any = None, verbose: int = 0, n_features: int | None = None) -> IVAE | IFlow:
    """The unfitted estimator for ``n_samples`` rows, its training length fitted to them.

    Parameters
    ----------
    estimator : {"vae", "flow"}
    n_components, prior, n_init, device, random_state, verbose
        As for :class:`~trends_ivae.GroupIVAE`.
    n_samples : int
        Rows it will be fitted on.
    params : dict, optional
        Further estimator parameters (``GroupIVAE.estimator_params``); they win over the
        sizes chosen here and over :data:`GROUP_IVAE_DEFAULTS`.
    n_features : int, optional
        Dimensions of the rows; more than ``n_components`` gives the VAE
        ``standardize="global"`` (unless ``params`` set it).

    Returns
    -------
    IVAE or IFlow
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    common = dict(prior=prior, n_init=n_init, device=device, random_state=random_state, verbose=verbose)
    if estimator == "flow":
        if prior == "normal":
            raise ValueError("estimator='flow' needs an identifiable prior ('gauss' or 'laplace'); "
                             "prior='normal' is the vanilla VAE baseline")
        params = dict(params or {})
        defaults = {**IFlow().get_params(), **GROUP_FLOW_DEFAULTS}
        params.setdefault("lr", defaults["lr"])
        params.setdefault("transforms", defaults["transforms"])
        n_train = _train_rows(n_samples, params, defaults)
        if "batch_size" not in params:
            params["batch_size"] = int(max(16, min(defaults["batch_size"], n_train // 4)))
        if "max_epochs" not in params:
            steps_per_epoch = max(1, n_train // params["batch_size"])
            params["max_epochs"] = int(min(400, max(defaults["max_epochs"],
                                                    np.ceil(FLOW_MIN_STEPS / steps_per_epoch))))
        return IFlow(n_components, **common, **params)
    params = {**GROUP_IVAE_DEFAULTS, **(params or {})}
    if n_features is not None and n_features > n_components:
        params.setdefault("standardize", "global")
    defaults = IVAE().get_params()
    n_train = _train_rows(n_samples, params, defaults)
    if "batch_size" not in params:
        params["batch_size"] = int(max(16, min(defaults["batch_size"], n_train // 4)))
    if "max_epochs" not in params:
        steps_per_epoch = max(1, n_train // params["batch_size"])
        epochs = int(np.ceil(MIN_STEPS / steps_per_epoch))
        if epochs > defaults["max_epochs"]:
            params["max_epochs"] = min(400, epochs)
            params.setdefault("patience", max(defaults["patience"], params["max_epochs"] // 6))
    if "init_epochs" not in params and n_init > 1:   # the restarts race for 1/8 of the schedule
        params["init_epochs"] = max(5, params.get("max_epochs", defaults["max_epochs"]) // 8)
    return IVAE(n_components, **common, **params)
