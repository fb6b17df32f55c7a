"""A ``trends-ivae fit`` output folder, from the group layer's side.

Written: :func:`fit_outputs` turns a fitted :class:`~trends_ivae.GroupIVAE` and its prepared
data into the arrays the export writes (:class:`~trends_ivae.export.fit_outputs.FitOutputs`);
:func:`write_model_folder` writes the model beside them (``model/estimator.pt``,
``model/prior.npz``, ``model/config.json``, ``model/elbo.tsv``, and ``prepared.h5``);
:func:`training_record` is what the records say about the training. Read back:
:func:`load_group_ivae` rebuilds the fitted estimator; ``model/prior.npz``
(:func:`write_prior_table`) serves readers without torch.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..atomic import atomic_path
from ..data.store import read_prepared, write_prepared
from ..estimators.base import SourceEstimator
from ..export.fit_outputs import FitOutputs, early_stopping
from ..export.naming import MODEL_FILE, model_file
from .spatial import fitted_u, resolve_ica

__all__ = ["load_group_ivae", "write_prior_table", "PRIOR_TABLE", "TrainingRecord", "training_record",
           "early_stopping_record", "restarts",
           "fit_outputs", "least_squares_unmixing", "fit_log", "write_model_folder"]

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

    Reads ``out_dir/model/estimator.pt`` (the IVAE or IFlow; ``model/ivae.pt`` in a folder
    written before the file had that name), ``out_dir/prepared.h5`` (mask, basis, cleaning
    settings, u) and ``out_dir/model/config.json`` (the parameters), in any ``--layout``.
    The maps and time courses are not recomputed.

    Raises
    ------
    FileNotFoundError
        A required file is missing (the message names it).
    """
    root = Path(out_dir)
    files = {"model": model_file(root), "prepared": root / "prepared.h5",
             "config": root / "model" / "config.json"}
    for what, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {root} is not a complete trends-ivae fit output"
                                    + (" (fit with --keep-prepared)" if what == "prepared" else ""))
    config = json.loads(files["config"].read_text())
    valid = cls().get_params()
    params = {k: v for k, v in config.get("model", {}).items() if k in valid}
    if params.get("ivae_params") is not None and params.get("estimator_params") is None:
        params["estimator_params"] = params.pop("ivae_params")   # folders written before the rename
    params.pop("ivae_params", None)
    params["device"] = device
    model = cls(**params)
    model.prepared_ = read_prepared(files["prepared"])
    model.estimator_ = SourceEstimator.load(files["model"], device=device)
    model.mask_img_ = model.prepared_.mask_img()
    model.runs_ = model.prepared_.runs
    model.n_components_ = model.estimator_.n_components
    model.elbo_ = getattr(model.estimator_, "elbo_", None)
    model.ica_ = config.get("mode", {}).get("ica") or ("temporal" if "ica" not in config.get("model", {})
                                                       else resolve_ica(model.ica, model.prepared_.aux))
    return model


@dataclass(frozen=True)
class TrainingRecord:
    """What a fitted group model's estimator says about its training (for the records).

    Attributes
    ----------
    params : dict
        The estimator's parameters (``get_params()``).
    history : dict of list of float
        ``train_elbo`` and ``val_elbo`` per epoch of the chosen restart (per volume, data units).
    restart_elbos : list of float
        The held-out ELBO of each restart.
    n_epochs : int
        Epochs the chosen restart trained.
    device : str
        The device it trained on.
    elbo : float or None
        The held-out ELBO per volume of the state kept (training keeps the epoch of the
        best held-out ELBO).
    n_dims : int or None
        The reduced dimension the model was fitted on.
    """

    params: dict
    history: dict
    restart_elbos: list
    n_epochs: int
    device: str
    elbo: float | None = None
    n_dims: int | None = None

    def early_stopping(self) -> dict | None:
        """The held-out ELBO's peak epoch, its fall after the peak and the epoch kept
        (:func:`~trends_ivae.export.fit_outputs.early_stopping`), as ``model/config.json``
        records it under ``results.early_stopping``."""
        warm = None   # the VAE's loop keeps every state of its warm-up (the flow's keeps the best throughout)
        if "transforms" not in self.params and self.params.get("warmup_frac") and self.params.get("max_epochs"):
            warm = int(np.ceil(float(self.params["warmup_frac"]) * int(self.params["max_epochs"])))
        return early_stopping(self.history.get("val_elbo", []), self.elbo, self.n_dims, warm)

    def elbo_table(self) -> str:
        """``model/elbo.tsv``: a header, then epoch, train and validation ELBO per line."""
        hist = self.history
        lines = ["epoch\ttrain_elbo\tval_elbo"]
        lines += [f"{i + 1}\t{t:.6g}\t{v:.6g}" for i, (t, v) in enumerate(zip(hist["train_elbo"], hist["val_elbo"]))]
        return "\n".join(lines) + "\n"


def training_record(model: Any) -> TrainingRecord:
    """The :class:`TrainingRecord` of a fitted :class:`~trends_ivae.GroupIVAE`."""
    est = model.estimator_
    n_dims = getattr(est, "n_features_in_", None)
    return TrainingRecord(params=est.get_params(), history=est.history_,
                          restart_elbos=[float(v) for v in est.restart_elbos_], n_epochs=est.n_iter_,
                          device=str(est.device_), elbo=float(est.elbo_) if est.elbo_ is not None else None,
                          n_dims=None if n_dims is None else int(n_dims))


def early_stopping_record(model: Any) -> dict | None:
    """:meth:`TrainingRecord.early_stopping` of a fitted group model; None when its
    estimator keeps no history."""
    if getattr(getattr(model, "estimator_", None), "history_", None) is None:
        return None
    return training_record(model).early_stopping()


def restarts(model: Any) -> int:
    """The restarts a fitted group model's estimator ran (its ``n_init``; 0 when unknown)."""
    return int(getattr(model.estimator_, "n_init", 0) or 0)


class _RunMaps(Sequence):
    """Each run's subject maps, made when indexed (the writer then holds one at a time)."""

    def __init__(self, subject_maps: Any, subject_of_run: list[int]) -> None:
        self._maps, self._subject = subject_maps, subject_of_run

    def __len__(self) -> int:
        return len(self._subject)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._maps[self._subject[i]]


def fit_outputs(model: Any, prepared: Any, *, params: Mapping[str, Any] | None = None, source: str | None = None,
                nonlinearity_test: Mapping[str, Any] | None = None) -> FitOutputs:
    """A fitted :class:`~trends_ivae.GroupIVAE`'s maps and time courses as the export takes them.

    Parameters
    ----------
    model : GroupIVAE
        Fitted on ``prepared``.
    prepared : PreparedData
        Its runs give the run descriptions (BIDS entities, subject, file when it is one,
        TR) and each run's subject.
    params : mapping, optional
        The parameters recorded in the maps' sidecars.
    source : str, optional
        The input dataset.
    nonlinearity_test : mapping, optional
        The held-out nonlinearity test (``NonlinearityTest.to_dict()``).

    Returns
    -------
    FitOutputs
        The subject maps are made one run at a time as the writer reads them.
    """
    runs = [{**r.get("entities", {}), "sub": r["subject"], "path": r.get("file"), "tr": r.get("tr")}
            for r in prepared.runs]
    for r in runs:
        if not r["path"] or str(r["path"]).startswith("<"):
            r.pop("path")
    x = np.concatenate([np.asarray(prepared.x)[np.asarray(prepared.run) == i] for i in range(len(prepared.runs))])
    unmixing = least_squares_unmixing(x, model.timecourses_)
    variance = np.asarray(prepared.explained_variance_ratio, float)
    if not np.all(np.isfinite(variance)):   # no total recorded: the share of the reduced data's variance
        s2 = np.asarray(prepared.singular_values, float) ** 2
        variance = s2 / s2.sum() if np.all(np.isfinite(s2)) and s2.sum() > 0 else None
    return FitOutputs(mask_img=model.mask_img_, group_maps=model.components_, timecourses=model.timecourses_,
                      runs=runs, subject_maps=_RunMaps(model.subject_maps_, [r["subject_index"] for r in prepared.runs]),
                      effect_maps=model.effects_, params=params, explained_variance=model.explained_variance_,
                      total_explained_variance=model.total_explained_variance_, stability=model.stability_,
                      nonlinearity_test=nonlinearity_test, source=source, unmixing=unmixing, reduced_data=x,
                      pca_maps=np.asarray(prepared.basis).T, pca_variance=variance,
                      log=fit_log(model, prepared, nonlinearity_test))


def least_squares_unmixing(x: np.ndarray, timecourses: Sequence[np.ndarray]) -> np.ndarray:
    """The linear map W (n_components, d) that best gives the time courses from the reduced
    data: ``concat(timecourses) ~= x @ W.T`` in least squares (MELODIC's ``melodic_unmix``).

    Parameters
    ----------
    x : ndarray of shape (n_volumes_total, d)
        The reduced data, rows in the order of the concatenated time courses.
    timecourses : sequence of ndarray of shape (n_volumes, n_components)

    Returns
    -------
    ndarray of shape (n_components, d)
    """
    z = np.concatenate([np.asarray(t, np.float64) for t in timecourses], axis=0)
    w, *_ = np.linalg.lstsq(np.asarray(x, np.float64), z, rcond=None)
    return w.T


def fit_log(model: Any, prepared: Any, nonlinearity_test: Mapping[str, Any] | None = None) -> str:
    """What ran, in words (the MELODIC layout's ``log.txt``): the process, the version, the
    data, the reduction, the model, the training and the nonlinearity test."""
    import sys
    from datetime import datetime, timezone

    from .. import __version__
    from ..export.fit_outputs import early_stopping_note

    par = prepared.parameters
    est = model.estimator_
    record = training_record(model) if getattr(est, "history_", None) is not None else None
    stopping = record.early_stopping() if record is not None else None
    lines = [f"trends-ivae {__version__}, written {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             "process: " + " ".join(sys.argv),
             f"data: {prepared.n_subjects} subject(s), {len(prepared.runs)} run(s), {prepared.n_samples} volumes, "
             f"u {prepared.aux.get('spec')!r} ({prepared.u_kind}, {len(prepared.u_names)} levels)",
             f"cleaning: {json.dumps(par.get('clean', {}), default=str)}",
             f"reduction: {par.get('reduction', 'migp')} to {prepared.n_dims} dimensions",
             f"model: {type(est).__name__}, {model.n_components_} components, prior {model.prior!r}, "
             f"{restarts(model)} restart(s), seed {model.random_state}"]
    if record is not None:
        lines.append(f"training: {record.n_epochs} epochs on {record.device}; held-out ELBO per volume of the model "
                     f"kept {record.elbo:.4f}" + (f" (epoch {stopping['kept_epoch']}, peak at epoch "
                                                  f"{stopping['peak_epoch']})" if stopping else ""))
        note = early_stopping_note(stopping)
        if note:
            lines.append("overfitting: " + note)
    total = getattr(model, "total_explained_variance_", None)
    if total is not None:
        lines.append(f"explained variance: {100 * float(total):.1f}% of the cleaned data's variance")
    if nonlinearity_test:
        lines.append("nonlinearity test: " + str(nonlinearity_test.get("summary", nonlinearity_test.get("verdict"))))
    return "\n".join(lines) + "\n"


def write_model_folder(root: Any, model: Any, prepared: Any, config: Mapping[str, Any], *,
                       keep_prepared: bool = True) -> list[Path]:
    """Write a fitted group model's files into the output folder ``root`` (being staged).

    ``root/model/estimator.pt`` (the estimator, :meth:`SourceEstimator.save`),
    ``root/model/prior.npz`` (:func:`write_prior_table` on the u the estimator was fitted with:
    per volume, or per voxel in the spatial mode),
    ``root/model/config.json`` (``config``, with ``results.early_stopping``:
    :meth:`TrainingRecord.early_stopping`) and ``root/model/elbo.tsv``
    (:meth:`TrainingRecord.elbo_table`); with ``keep_prepared``, ``root/prepared.h5``.

    Returns
    -------
    list of Path
        The files written.
    """
    root = Path(root)
    mdir = root / "model"
    mdir.mkdir(parents=True, exist_ok=True)
    written = [root / MODEL_FILE, mdir / PRIOR_TABLE, mdir / "config.json", mdir / "elbo.tsv"]
    model.estimator_.save(written[0])
    write_prior_table(written[1], model.estimator_, fitted_u(model, prepared))
    record = training_record(model)
    config = {**config, "results": {**(config.get("results") or {}), "early_stopping": record.early_stopping()}}
    written[2].write_text(json.dumps(config, indent=2, default=str))
    written[3].write_text(record.elbo_table())
    if keep_prepared:
        written.append(write_prepared(root / "prepared.h5", prepared))
    return written
