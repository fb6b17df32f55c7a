"""Data: fMRI files in, checked arrays out, and the store that holds them.

BIDS discovery (``bids``), images and headers (``images``), cleaning with nilearn
(``cleaning``), the auxiliary variable u (``auxiliary``), the prepare options
(``settings``), the prepared store ``prepared.h5`` (``store``), participant share files
(``shares``) and per-subject tasks on joblib or Dask (``parallel``). Never imports torch.

Public names are imported lazily (``nilearn`` is heavy)::

    from trends_ivae.data import find_bids_runs, read_prepared
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RunSpec": "bids", "find_bids_runs": "bids", "runs_from_files": "bids", "parse_entities": "bids",
    "PrepareError": "errors", "load_4d": "images", "load_mask": "images", "resolve_tr": "images",
    "RunMeta": "auxiliary", "build_aux": "auxiliary", "task_labels": "auxiliary",
    "window_labels": "auxiliary", "read_events": "auxiliary",
    "CleanSettings": "settings", "AuxSpec": "settings", "ReductionSettings": "settings",
    "ComputeSettings": "settings", "PrepareSettings": "settings",
    "clean_run": "cleaning", "read_confounds": "cleaning",
    "PreparedData": "store", "write_prepared": "store", "read_prepared": "store",
    "read_subject": "store", "iter_subjects": "store", "FORMAT_VERSION": "store",
    "read_rows": "store", "n_rows": "store", "read_aux": "store",
    "run_tasks": "parallel", "TaskFailures": "parallel",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
