"""File-level layer: BIDS discovery, images, u, cleaning, group reduction, the store.

Never imports torch. The prepare stage in one call::

    from trends_ivae.io import find_bids_runs, prepare, write_prepared
    runs = find_bids_runs("ds/", task="faces")
    data = prepare(runs, aux="task+subject", n_dims=30, tr=2.0)
    write_prepared("out/prepared.h5", data)

Public names are imported lazily (``nilearn`` is heavy).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # bids
    "RunSpec": "bids", "find_bids_runs": "bids", "runs_from_files": "bids", "parse_entities": "bids",
    # images
    "PrepareError": "errors", "load_4d": "images", "load_mask": "images", "resolve_tr": "images",
    # auxiliary
    "AuxVariable": "auxiliary", "RunMeta": "auxiliary", "build_aux": "auxiliary",
    "task_labels": "auxiliary", "window_labels": "auxiliary", "read_events": "auxiliary",
    # settings
    "CleanSettings": "settings", "AuxSpec": "settings", "ReductionSettings": "settings",
    "ComputeSettings": "settings", "PrepareSettings": "settings",
    # cleaning
    "clean_run": "cleaning", "read_confounds": "cleaning",
    # reduction
    "MIGP": "reduction", "pca_basis": "reduction", "project": "reduction",
    "reconstruct": "reduction", "subspace_distance": "reduction",
    # store
    "PreparedData": "store", "write_prepared": "store", "read_prepared": "store",
    "read_subject": "store", "iter_subjects": "store", "FORMAT_VERSION": "store",
    "read_rows": "store", "n_rows": "store", "read_aux": "store",
    # parallel (joblib / Dask)
    "run_tasks": "parallel", "TaskFailures": "parallel",
    # the model order
    "estimate_order": "order", "OrderEstimate": "order",
    # prepare
    "prepare": "preparation", "transform_runs": "preparation", "DEFAULT_N_DIMS": "preparation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trends_ivae.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"trends_ivae.io.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
