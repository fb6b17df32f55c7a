"""What a fit says about itself: ``model/config.json`` and the one-line summary.

:func:`fit_config` is the record :func:`~trends_ivae.workflow.fit.fit_to_folder` writes as
``model/config.json`` (and the sidecars' parameters come from it); :func:`summary_line` is
the line ``trends-ivae fit`` prints at the end.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["fit_config", "summary_line"]


def summary_line(model, prepared, n_components: int) -> str:
    """The fit's one-line result: the variance all components explain, the held-out ELBO per
    volume of the model kept (data units, as ``model/elbo.tsv`` and the report) and its
    epoch, the stability across restarts, or why there is none (one restart), and when the
    held-out ELBO fell after its peak, a sentence that says so
    (:func:`~trends_ivae.export.fit_outputs.early_stopping_note`)."""
    from ..export.fit_outputs import early_stopping_note
    from ..group.fit_folder import early_stopping_record, restarts

    n_init = restarts(model)
    stability = model.restart_agreement_
    if n_init < 2 or stability is None or not math.isfinite(float(stability)):
        stab = "stability not computed (it needs two or more restarts, --n-init 2 or more)"
    else:
        stab = f"stability across {n_init} restarts {stability:.2f}"
    total = getattr(model, "total_explained_variance_", None)
    explained = (f"together explaining {100 * total:.1f}% of the cleaned data's variance; "
                 if total is not None and math.isfinite(float(total)) else "")
    stopping = early_stopping_record(model)
    epoch = (f", epoch {stopping['kept_epoch']} of {stopping['n_epochs']}"
             if stopping and stopping.get("kept_epoch") else "")
    note = early_stopping_note(stopping)
    return (f"{n_components} components from {prepared.n_subjects} subject(s), {len(prepared.runs)} run(s), "
            f"{getattr(model, 'ica_', 'temporal')} ICA, {explained}held-out ELBO per "
            f"{'voxel' if getattr(model, 'ica_', '') == 'spatial' else 'volume'} {model.elbo_:.2f} (data units{epoch}), {stab}"
            + (f"; {note}" if note else ""))


def fit_config(command: str, arguments: Mapping[str, Any], model: Any, prepared: Any, fit: Any, seconds: float,
               nonlinearity: dict | None) -> dict:
    """``model/config.json``: the command and its arguments, the model's parameters, the
    estimator's, the prepare record, u, the mode that ran (:func:`~trends_ivae.group.spatial.mode_record`)
    and the results (``fit``: the :class:`~trends_ivae.workflow.fit.FitSettings`)."""
    from .. import __version__
    from ..group.fit_folder import training_record
    from ..group.spatial import mode_record

    record = training_record(model)
    return {
        "command": command,
        "arguments": dict(arguments),
        "model": {k: v for k, v in model.get_params().items() if k not in ("mask",)},
        "ivae": record.params,
        "prepare": prepared.parameters,
        "aux": {"spec": prepared.aux.get("spec"), "kind": prepared.u_kind, "n_levels": len(prepared.u_names)},
        "mode": mode_record(model),
        "results": {"elbo": model.elbo_, "elbo_unit": f"per {'voxel' if getattr(model, 'ica_', '') == 'spatial' else 'volume'}, data units (as model/elbo.tsv)",
                    "total_explained_variance": model.total_explained_variance_,
                    "explained_variance_unit": "fraction of the cleaned data's variance (0 to 1)",
                    "estimator": fit.estimator,
                    "stability": model.restart_agreement_,
                    "component_stability": [float(v) for v in model.stability_],
                    "restart_elbos": record.restart_elbos,
                    "n_epochs": record.n_epochs, "device": record.device,
                    "seconds": seconds, "nonlinearity_test": nonlinearity},
        "version": __version__,
        "versions": prepared.versions,
    }
