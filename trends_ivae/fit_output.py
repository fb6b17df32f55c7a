"""A ``trends-ivae fit`` output folder read back into a fitted estimator."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .estimator_base import SourceEstimator
from .io.store import read_prepared

__all__ = ["load_group_ivae"]


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
