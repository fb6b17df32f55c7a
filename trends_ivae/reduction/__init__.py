"""Reduction: cleaned runs to one group basis, the model order, and the prepare stage.

``migp`` (MIGP: one spatial basis shared by all subjects, streamed subject by subject),
``order`` (the model order), ``stages`` (the steps that both prepare paths share),
``prepare`` (:func:`prepare`: runs in, a :class:`~trends_ivae.data.store.PreparedData`
out) and ``participant`` (the BIDS App's per-subject share and the group gather). Never
imports torch.

The prepare stage in one call::

    from trends_ivae.data import PrepareSettings, find_bids_runs, write_prepared
    from trends_ivae.reduction import prepare
    runs = find_bids_runs("ds/", task="faces")
    data = prepare(runs, PrepareSettings.from_options(aux="task+subject", n_dims=30), tr=2.0)
    write_prepared("out/prepared.h5", data)
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MIGP": "migp", "pca_basis": "migp", "project": "migp", "reconstruct": "migp",
    "subspace_distance": "migp",
    "estimate_order": "order", "OrderEstimate": "order",
    "prepare": "prepare", "transform_runs": "prepare", "DEFAULT_N_DIMS": "prepare",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
