"""The spatial mode of :class:`~trends_ivae.GroupIVAE`: voxels are the samples, maps the sources.

GIFT, MELODIC and CanICA are spatial ICAs: after the group reduction, each voxel's row
of the group basis ``V`` (n_voxels, d) is one sample, and the sources are spatial maps.
That is what works with the few hundred volumes a study has; temporal ICA (the
default mode, samples = volumes) needs far more time points. The iVAE's theory holds
in space as in time: it needs samples, sources conditionally independent given an
observed u, and a u that changes their distributions. Networks are local, so each
map's distribution changes from region to region: u comes from space
(:mod:`trends_ivae.data.spatial_aux`: k-means segments of the coordinates, an atlas,
radial basis functions; Sipilä, Nordhausen & Taskinen 2024).

The steps, in the order :func:`fit_spatial` runs them:

1. x: the basis rows, each column centred and weighted by its singular value
   (:func:`spatial_data`); u: the spatial u of the mask voxels.
2. The array-level estimator on (x, u); the maps S = E[z | x, u] (n_voxels, k), each
   flipped so that its strongest peak is positive.
3. Back-reconstruction as in GIFT: every volume's time course by spatial regression of
   the volume on the (centred) maps (:func:`timecourse_projection`; dual regression's
   first stage, done in the reduced space), then the subject maps, explained variance
   and order by the temporal regression of each subject's data on its time courses
   (:func:`~trends_ivae.group.backprojection.back_project`; dual regression's second
   stage).
4. Group maps: the sources themselves, z-scored (as CanICA and GIFT report them);
   effect maps: for each component the decoder's change when that component is set to
   its mean, along the component's mean decoder direction (for a linear decoder, the
   map itself).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..aux_variable import AuxVariable
from ..data.spatial_aux import SpatialAuxSettings, spatial_aux
from ..data.store import PreparedData
from .backprojection import BackProjection, back_project, peak_signs, zscore_maps

__all__ = ["ICA_MODES", "SPATIAL_ESTIMATOR_DEFAULTS", "SPATIAL_STEPS", "resolve_ica", "check_mode", "SpatialFit", "spatial_data", "spatial_settings", "model_spatial_u",
           "timecourse_projection", "fit_spatial", "subject_totals"]

#: estimator parameters of the spatial mode (``estimator_params`` win): x's singular-value
#: weighting is kept, not undone by the estimator's per-column standardisation; the encoder
#: sees u (every voxel's u is known, and new runs are not encoded but regressed on the maps),
#: so the posterior can follow each segment's prior (coverage 0.171 -> 0.184 on GIFT); the
#: decoder is linear: in space the nonlinear one added nothing to the maps on real data and
#: lost on the simulator (``docs/benchmarks.md``, the table of attempts), so it is an option
#: (``estimator_params={"linear_decoder": False}``), not the default
SPATIAL_ESTIMATOR_DEFAULTS = {"standardize": False, "encoder_uses_aux": True, "linear_decoder": True}
#: optimiser steps a spatial fit trains for (unless ``estimator_params`` set ``max_epochs``):
#: it starts at linear ICA of (x, u), and its maps stay close to that start (the table of
#: attempts in ``docs/benchmarks.md``); the temporal mode's
#: :data:`~trends_ivae.group.training.MIN_STEPS` is for a few hundred volumes
SPATIAL_STEPS = 1000
#: the modes of GroupIVAE(ica=...): "auto" is temporal for data with task events, else spatial
ICA_MODES = ("auto", "temporal", "spatial")


@dataclass
class SpatialFit:
    """What a spatial fit gives back to the estimator (in the final order and sign).

    Attributes
    ----------
    backprojection : BackProjection
        Time courses per subject, subject maps, explained variance, order.
    timecourses : ndarray (n_volumes_total, k)
        Every volume's time course (rows as ``prepared.x``).
    maps : ndarray (k, n_voxels)
        Group z-maps: the spatial sources.
    effects : ndarray (k, n_voxels)
        Decoder-effect z-maps.
    projection : ndarray (d, k)
        Time courses of reduced data: ``(x * scale) @ projection``.
    """

    backprojection: BackProjection
    timecourses: np.ndarray
    maps: np.ndarray
    effects: np.ndarray
    projection: np.ndarray


def spatial_data(prepared: PreparedData) -> np.ndarray:
    """x of the spatial mode: the basis rows, columns centred and weighted by their singular
    values (n_voxels, d).

    Column ``j`` has a standard deviation of ``s_j / s_1``: the group PCA's leading
    directions stay louder than its trailing ones, as they are in the data. Scaling every
    column to unit variance instead (whitening) makes the weakest, noisiest directions as
    loud as the networks', which the iVAE's isotropic noise model cannot discount: on the
    GIFT data it cost 0.02-0.03 of network coverage (``docs/benchmarks.md``, "Real
    networks"). Prepared data without singular values get unit-variance columns.
    """
    basis = np.asarray(prepared.basis, dtype=np.float64)
    basis = basis - basis.mean(axis=0)
    sd = basis.std(axis=0)
    x = basis / np.where(sd > 0, sd, 1.0)
    sv = np.asarray(prepared.singular_values, dtype=np.float64)
    if sv.shape == (x.shape[1],) and np.all(np.isfinite(sv)) and sv.max() > 0:
        x = x * (sv / sv.max())
    return x.astype(np.float32)


def spatial_settings(model: Any) -> SpatialAuxSettings:
    """The spatial u settings of a ``GroupIVAE`` (its ``spatial_aux``, ``n_segments``,
    ``aux_atlas``, ``n_rbf``; the k-means seed is fixed, so u depends on the mask only)."""
    n_segments = model.n_segments if np.isscalar(model.n_segments) else tuple(model.n_segments)
    return SpatialAuxSettings(spec=model.spatial_aux, n_segments=n_segments, atlas=model.aux_atlas,
                              n_rbf=model.n_rbf)


def model_spatial_u(model: Any, prepared: PreparedData) -> AuxVariable:
    """The u the spatial iVAE is fitted with: one row per mask voxel."""
    return spatial_aux(spatial_settings(model), prepared.mask_img())


def timecourse_projection(maps: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The (d, k) matrix giving time courses by spatial regression on the maps.

    A volume ``y = basis @ c`` (c its coordinates in the basis, ``x * scale``) regressed
    on the centred maps ``S`` (n_voxels, k) has coefficients
    ``(S'S)^-1 S' basis c``; the returned matrix is ``(S'S)^-1 S' basis`` transposed.
    """
    s = np.asarray(maps, dtype=np.float64)
    s = s - s.mean(axis=0)
    return np.linalg.lstsq(s, np.asarray(basis, dtype=np.float64), rcond=None)[0].T


def subject_totals(prepared: PreparedData) -> Any:
    """The cleaned data's sums of squares (per subject when recorded): the explained variance's denominators."""
    par = prepared.parameters or {}
    totals = par.get("subject_sums_of_squares") or par.get("total_sum_of_squares")
    if isinstance(totals, (list, tuple)) and len(totals) != prepared.n_subjects:
        totals = par.get("total_sum_of_squares")
    return totals


def _effects(estimator: Any, sources: np.ndarray) -> np.ndarray:
    """Per component, the decoder's change at each voxel when that component is set to
    its mean, along the component's mean decoder direction; z-scored (k, n_voxels)."""
    base = estimator.inverse_transform(sources)
    jac = np.asarray(estimator.decoder_jacobian(sources, batch_size=4096), dtype=np.float64)   # (k, d)
    out = np.empty((sources.shape[1], sources.shape[0]))
    for j in range(sources.shape[1]):
        held = sources.copy()
        held[:, j] = sources[:, j].mean()
        direction = jac[j] / max(float(np.linalg.norm(jac[j])), np.finfo(float).tiny)
        out[j] = (base - estimator.inverse_transform(held)) @ direction
    return zscore_maps(out)


def fit_spatial(model: Any, prepared: PreparedData, checkpoint_dir: Any = None,
                stream_rows: int | None = None) -> tuple[Any, SpatialFit]:
    """Fit ``model``'s estimator in the spatial mode and map back to the brain.

    Parameters
    ----------
    model : GroupIVAE
        Gives the estimator (``build_estimator``) and the spatial u options.
    prepared : PreparedData
    checkpoint_dir, stream_rows
        As for :meth:`GroupIVAE.fit_prepared`.

    Returns
    -------
    estimator : IVAE or IFlow
        Fitted on (x, u), reordered and signed like the maps.
    SpatialFit
    """
    x = spatial_data(prepared)
    u = model_spatial_u(model, prepared)
    n_train = 0.9 * x.shape[0]
    batch = int((model.estimator_params or {}).get("batch_size", max(16, min(256, int(n_train // 4)))))
    epochs = int(np.ceil(SPATIAL_STEPS / max(1.0, n_train / batch)))
    estimator = model.build_estimator(x.shape[0], defaults={**SPATIAL_ESTIMATOR_DEFAULTS, "batch_size": batch,
                                                            "max_epochs": max(epochs, 5)})
    estimator.fit(x, u, checkpoint_dir=checkpoint_dir, stream_rows=stream_rows)
    sources = estimator.transform(x, u).astype(np.float64)               # (n_voxels, k)
    signs = peak_signs(zscore_maps(sources.T))
    sources = sources * signs
    projection = timecourse_projection(sources, prepared.basis)           # (d, k)
    x_units = prepared.x * prepared.scale
    bp = back_project(x_units, x_units @ projection, prepared.basis, subject=prepared.subject,
                      total_sum_of_squares=subject_totals(prepared), fix_signs=False)
    estimator.reorder(bp.order, signs[bp.order])
    sources = sources[:, bp.order]
    projection = projection[:, bp.order]
    fit = SpatialFit(backprojection=bp, timecourses=(x_units @ projection).astype(np.float32),
                     maps=zscore_maps(sources.T), effects=_effects(estimator, sources.astype(np.float32)),
                     projection=projection)
    return estimator, fit


def spatial_projection(model: Any) -> np.ndarray:
    """A fitted spatial ``GroupIVAE``'s (d, k) time-course projection (recomputed from the
    estimator and the prepared data after :meth:`GroupIVAE.load <trends_ivae.GroupIVAE.load>`)."""
    projection = getattr(model, "timecourse_projection_", None)
    if projection is None:
        prepared = model.prepared_
        sources = model.estimator_.transform(spatial_data(prepared), model_spatial_u(model, prepared))
        projection = timecourse_projection(sources, prepared.basis)
        model.timecourse_projection_ = projection
    return projection


def spatial_timecourses(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Time courses of reduced runs ``xs`` (as ``prepared.x``) by spatial regression on the maps."""
    projection = spatial_projection(model)
    scale = model.prepared_.scale
    return [(np.asarray(x) * scale) @ projection for x in xs]


def spatial_reconstruction(model: Any, timecourses: np.ndarray) -> np.ndarray:
    """Reduced data ``x`` (as ``prepared.x``) of time courses: the least-squares inverse of
    :func:`spatial_timecourses` (time courses times the maps, in the reduced space)."""
    projection = spatial_projection(model)
    coords = np.asarray(timecourses, dtype=np.float64) @ np.linalg.pinv(projection)
    return (coords / model.prepared_.scale).astype(np.float32)


def resolve_ica(ica: str, aux: dict | None) -> str:
    """The mode that ``ica`` stands for on prepared data whose u record is ``aux``
    (``prepared.aux``, or a prepared file's ``read_meta(...)["aux"]``): ``"auto"`` is
    temporal when u has a task factor (runs with events: u from the design identifies the
    time courses), else spatial (resting data: see ``docs/benchmarks.md``, "Real networks")."""
    if ica not in ICA_MODES:
        raise ValueError(f"ica={ica!r}: use one of {', '.join(ICA_MODES)}")
    if ica != "auto":
        return ica
    factors = [f.get("name") for f in (aux or {}).get("factors", [])]
    return "temporal" if "task" in factors else "spatial"


def check_mode(model: Any, what: str) -> None:
    """``NotImplementedError`` when ``what`` needs the temporal mode and the fitted ``model``
    ran in the spatial one; ``ValueError`` for an unknown mode."""
    if model.ica not in ICA_MODES:
        raise ValueError(f"ica={model.ica!r}: use one of {', '.join(ICA_MODES)}")
    if what and getattr(model, "ica_", model.ica) == "spatial":
        raise NotImplementedError(f"{what} needs the temporal mode: in the spatial mode (ica='spatial') the "
                                  "model's samples are voxels, not volumes")


def fitted_u(model: Any, prepared: PreparedData) -> AuxVariable:
    """The u a fitted ``model``'s estimator was trained with: the spatial u (one row per
    voxel) in the spatial mode, else the prepared data's u (one row per volume)."""
    if getattr(model, "ica_", "temporal") == "spatial":
        return model_spatial_u(model, prepared)
    return model.model_u(prepared)


def mode_record(model: Any) -> dict:
    """Which mode ran and why, and in the spatial mode its u: for ``model/config.json``,
    the sidecars and the report."""
    mode = model.ica_
    if model.ica == "auto":
        why = ("auto: u has a task factor (runs with events), so the temporal mode" if mode == "temporal" else
               "auto: no task events, so the spatial mode (it finds resting-state networks better than the "
               "temporal mode; docs/benchmarks.md, 'Real networks')")
    else:
        why = f"asked for (ica={model.ica!r})"
    record: dict = {"ica": mode, "why": why}
    if mode == "spatial":
        from ..data.spatial_aux import describe_settings

        u = model_spatial_u(model, model.prepared_)
        record["u"] = describe_settings(spatial_settings(model)) | {"kind": u.kind, "n_levels": u.n_levels,
                                                                    "samples": "voxels"}
    return record


def reduced_timecourses(model: Any, xs: list[np.ndarray], us: list[Any]) -> list[np.ndarray]:
    """Time courses of runs reduced as in the fit (``xs``, with their u ``us`` or Nones), in
    either mode: the encoder's posterior means (temporal), or spatial regression on the maps."""
    if getattr(model, "ica_", "temporal") == "spatial":
        return spatial_timecourses(model, xs)
    return [model.estimator_.transform(x, u) for x, u in zip(xs, us)]


def needs_run_u(model: Any) -> bool:
    """Whether time courses of new runs need their u (temporal mode with an encoder q(z|x, u))."""
    return getattr(model, "ica_", "temporal") == "temporal" and bool(model.estimator_.model_.uses_aux)


