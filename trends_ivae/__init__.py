"""trends_ivae: identifiable nonlinear ICA (iVAE) for fMRI.

Public names
------------
IVAE
    Array-level identifiable VAE (scikit-learn conventions).
IFlow
    Array-level exact-likelihood iVAE: a normalizing flow with the conditional prior.
GroupIVAE
    Image-level estimator: fMRI in, component maps and time courses out.
metrics, simulate
    Matching-based evaluation (MCC) and synthetic data with known truth.

Heavy modules (torch, nilearn) are imported on first use of the names that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

__all__ = ["IVAE", "IFlow", "GroupIVAE", "metrics", "simulate", "__version__"]

_LAZY = {
    "IVAE": ("trends_ivae.estimators.ivae", "IVAE"),
    "IFlow": ("trends_ivae.estimators.flow", "IFlow"),
    "GroupIVAE": ("trends_ivae.group.group_ivae", "GroupIVAE"),
    "metrics": ("trends_ivae.metrics", None),
    "simulate": ("trends_ivae.simulate", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trends_ivae' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
