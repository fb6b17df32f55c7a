"""The model file of an array-level estimator: one state description, written and read back.

:data:`SAVED` lists every learned attribute that a model file holds besides the
model's own state (``SourceEstimator._model_state``), each with its conversion to and
from the plain containers that ``torch.load(..., weights_only=True)`` accepts.
:func:`save_estimator` writes it atomically; :func:`read_model_file` reads a file
without running anything in it; :func:`restore_estimator` rebuilds an estimator of a
given class from it, including files written before this description (their older
key names) and files with parameters that no longer exist (ignored).

The format registry :data:`FORMATS` maps the ``format`` a file records to the estimator
class that writes it. Each concrete estimator registers itself when its class is
defined (``SourceEstimator.__init_subclass__`` calls :func:`register_format`), so that
loading through the base class needs no import of the subclasses;
``trends_ivae.estimators`` imports every concrete estimator, so their formats are known
whenever the package is used.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._version import __version__
from ..atomic import atomic_path
from .nn import resolve_device

__all__ = ["SAVED", "FORMATS", "register_format", "format_class", "save_estimator", "read_model_file",
           "restore_estimator"]

#: model-file format (an estimator class's ``_FORMAT``) -> the class that writes and reads it
FORMATS: dict[str, type] = {}


def register_format(kind: type) -> None:
    """Record ``kind`` as the reader of the files whose ``format`` is ``kind._FORMAT``.

    Only a class that sets ``_FORMAT`` itself registers: a subclass that inherits its
    parent's format (a test's spy, say) leaves the parent as the format's reader.
    """
    fmt = kind.__dict__.get("_FORMAT")
    if fmt:
        FORMATS[fmt] = kind


def format_class(state: dict, path: str | os.PathLike, base: type) -> type:
    """The registered class of the model file ``path`` (read into ``state``), a subclass of ``base``.

    Raises
    ------
    ValueError
        Naming the file, when its format is unknown or belongs to an estimator that is
        not ``base`` or a subclass of it.
    """
    fmt = state.get("format")
    kind = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if kind is None or not issubclass(kind, base):
        what = "no format" if fmt is None else f"format {fmt!r}"
        raise ValueError(f"{str(path)!r} is not a trends_ivae {base.__name__} file ({what}; known: "
                         f"{', '.join(sorted(f for f, k in FORMATS.items() if issubclass(k, base))) or 'none'})")
    return kind


def _array_to_file(a: Any) -> Any:
    return None if a is None else np.asarray(a).tolist()


def _array_from_file(v: Any) -> Any:
    return None if v is None else np.asarray(v)


#: learned attribute -> (to file, from file); the model's own fields come from the estimator
SAVED: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "classes_": (_array_to_file, _array_from_file),
    "n_aux_": (int, int),
    "x_mean_": (torch.as_tensor, lambda t: t.numpy()),
    "x_scale_": (torch.as_tensor, lambda t: t.numpy()),
    "component_order_": (lambda a: a.tolist(), lambda v: np.asarray(v, dtype=int)),
    "component_signs_": (lambda a: a.tolist(), lambda v: np.asarray(v, dtype=float)),
    "history_": (dict, dict),
    "elbo_": (float, float),
    "restart_elbos_": (lambda a: [float(v) for v in a], np.asarray),
    "diverged_": (lambda a: [bool(v) for v in a], lambda v: np.asarray(v, dtype=bool)),
    "stability_": (_array_to_file, _array_from_file),
    "restart_agreement_": (float, float),
    "n_iter_": (int, int),
    "n_features_in_": (int, int),
}

#: key names of files written before :data:`SAVED` -> the attribute they hold
_LEGACY = {"classes": "classes_", "n_aux": "n_aux_", "x_mean": "x_mean_", "x_scale": "x_scale_",
           "order": "component_order_", "signs": "component_signs_", "history": "history_",
           "elbo": "elbo_", "restart_elbos": "restart_elbos_", "diverged": "diverged_",
           "n_iter": "n_iter_"}


def save_estimator(est: Any, path: str | os.PathLike) -> None:
    """Write the fitted estimator ``est`` to ``path`` atomically.

    The file holds ``format`` (the class's ``_FORMAT``), the package version, the
    constructor parameters, u's factor coding, every :data:`SAVED` attribute and
    ``est._model_state()`` (configurations and weights), as tensors and plain containers.
    """
    state = {"format": est._FORMAT, "version": __version__, "params": dict(est.get_params()),
             "factors": None if est.aux_kind_ != "factors" else {
                 "names": list(est.factor_names_), "classes": [c.tolist() for c in est.factor_classes_]},
             **{name: dump(getattr(est, name)) for name, (dump, _) in SAVED.items()},
             **est._model_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_model_file(path: str | os.PathLike) -> dict:
    """The dict in a model file, read with ``weights_only=True`` (nothing in it runs).

    Raises
    ------
    ValueError
        Naming the file, when it is truncated, not a torch file, or carries objects other
        than tensors and plain containers.
    """
    try:   # tensors and plain containers only: a pickle carrying code is refused, never run
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable trends_ivae model file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'truncated'}); refit, or use the "
                         "model/estimator.pt of a complete fit output") from None
    return state if isinstance(state, dict) else {}


def restore_estimator(kind: type, state: dict, device: str = "auto") -> Any:
    """An estimator of class ``kind`` rebuilt from a model file's ``state``, its model on ``device``.

    Parameters of the file that ``kind`` no longer has are ignored (e.g. ``kl_start``
    and ``entropy_start``, removed as inactive).
    """
    params = {k: v for k, v in state["params"].items() if k in kind._get_param_names()}
    est = kind(**{**params, "device": device})
    est.device_ = resolve_device(device)
    for name, (_, undump) in SAVED.items():
        if name in state:
            setattr(est, name, undump(state[name]))
    for old, name in _LEGACY.items():   # files written before the state description
        if old in state and name not in state:
            setattr(est, name, SAVED[name][1](state[old]))
    if "n_features_in_" not in state:
        est.n_features_in_ = int(state["config"]["n_features"])
    if "stability_" not in state:
        old = state.get("stability")
        est.stability_ = np.full(est.n_components, np.nan if old is None else float(old))
        est.restart_agreement_ = float("nan") if old is None else float(old)
    est.factor_names_ = est.factor_classes_ = est.factor_offsets_ = None
    if state.get("factors") is not None:
        est._set_factors(list(state["factors"]["names"]), [np.asarray(c) for c in state["factors"]["classes"]])
    est._restore_model(state)
    est.aux_kind_ = est.model_.config.aux_kind
    est.model_.to(est.device_).eval()
    est.loss_curve_ = [-v for v in est.history_["train_elbo"]]
    return est
