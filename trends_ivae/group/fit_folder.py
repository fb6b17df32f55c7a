"""A ``trends-ivae fit`` output folder: read back into a fitted estimator, and the
learned prior written for readers without torch (``model/prior.npz``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..estimators.base import SourceEstimator
from ..data.store import read_prepared

__all__ = ["load_group_ivae", "write_prior_table", "PRIOR_TABLE"]

#: the learned prior per distinct u, beside the model (read by the report with numpy only)
PRIOR_TABLE = "prior.npz"


def write_prior_table(path: Any, estimator: SourceEstimator, u: Any) -> None:
    """Write p(z|u)'s mean and variance for every distinct row of ``u`` to ``path`` (npz).

    Arrays: ``codes`` (n_samples,) int32, the distinct row of each sample; ``mean`` and
    ``var`` (n_distinct, n_components) float32, in the estimator's component order and
    signs (:meth:`SourceEstimator.prior_params`). ``mean[codes]`` is the prior mean of
    every volume.
    """
    data = np.asarray(u.data)
    flat = data.reshape(len(data), -1)
    _, first, codes = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    mean, var = estimator.prior_params(u.take(first))
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, codes=codes.reshape(-1).astype(np.int32),
                            mean=np.asarray(mean, np.float32), var=np.asarray(var, np.float32))


def load_group_ivae(cls: type, out_dir: Any, device: str = "auto") -> Any:
    """Rebuild a fitted ``cls`` (:class:`~trends_ivae.GroupIVAE`) from a fit output folder.

    Reads ``out_dir/model/ivae.pt`` (the IVAE or IFlow), ``out_dir/prepared.h5`` (mask,
    basis, cleaning settings, u) and ``out_dir/model/config.json`` (the parameters), in
    any ``--layout``. The maps and time courses are not recomputed.

    Raises
    ------
    FileNotFoundError
        A required file is missing (the message names it).
    """
    root = Path(out_dir)
    files = {"model": root / "model" / "ivae.pt", "prepared": root / "prepared.h5",
             "config": root / "model" / "config.json"}
    for what, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {root} is not a complete trends-ivae fit output"
                                    + (" (fit with --keep-prepared)" if what == "prepared" else ""))
    config = json.loads(files["config"].read_text())
    valid = cls().get_params()
    params = {k: v for k, v in config.get("model", {}).items() if k in valid}
    params["device"] = device
    model = cls(**params)
    model.prepared_ = read_prepared(files["prepared"])
    model.ivae_ = SourceEstimator.load(files["model"], device=device)
    model.mask_img_ = model.prepared_.mask_img()
    model.runs_ = model.prepared_.runs
    model.n_components_ = model.ivae_.n_components
    model.elbo_ = getattr(model.ivae_, "elbo_", None)
    return model
