"""A fit's results as arrays: what every layout writer takes (:class:`FitOutputs`).

The workflow builds one from a fitted ``GroupIVAE`` and its prepared data
(:func:`trends_ivae.group.fit_folder.fit_outputs`); the writers of
:mod:`~trends_ivae.export.derivatives` and :mod:`~trends_ivae.export.layouts` read it.
Plain numpy, images and dicts: nothing here imports torch, and nothing is checked until a
writer checks it against the mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["FitOutputs", "OVERFIT_MARGIN", "early_stopping", "early_stopping_note"]

#: the held-out ELBO fell "after its peak" when its last epoch is below the peak by more than
#: this many nats per volume and reduced dimension (the held-out test's negligible margin)
OVERFIT_MARGIN = 0.01


@dataclass(frozen=True)
class FitOutputs:
    """The maps, time courses and numbers of one fit, as the export writes them.

    Component ``i`` is the same component, with the same sign, in every array.

    Attributes
    ----------
    mask_img : nibabel image or path
        3-D mask (voxels > 0) on the input grid; every map lives in its voxels.
    group_maps : ndarray of shape (n_components, n_voxels)
        Group z-maps (``GroupIVAE.components_``).
    timecourses : sequence of ndarray of shape (n_volumes, n_components), default=()
        One per run, in the order of ``runs`` (``GroupIVAE.timecourses_``).
    runs : sequence of dict, default=()
        One per input run: the input's file (``path`` or ``stem``, a BIDS name whose
        entities are kept) and/or entities (``sub`` required, ``ses``, ``task``, ``acq``,
        ``run``, ``space`` ...), and optionally ``tr`` (seconds).
    subject_maps : sequence of ndarray of shape (n_components, n_voxels) or None, default=None
        One per run (a subject's maps repeat for each of its runs; a lazy sequence is read
        one map at a time); None, or None entries: no subject maps.
    effect_maps : ndarray of shape (n_components, n_voxels), optional
        Decoder-effect maps (``GroupIVAE.effects_``).
    params : mapping, optional
        The fit's parameters, stored in the group sidecars (JSON-serialisable; numpy values
        are converted).
    explained_variance : sequence of float, optional
        Each component's share of the cleaned data's variance (fractions in [0, 1],
        ``GroupIVAE.explained_variance_``).
    total_explained_variance : float, optional
        The fraction all components explain together (R^2).
    stability : sequence of float, optional
        Each component's stability index across restarts (``GroupIVAE.stability_``; NaN
        with one restart).
    nonlinearity_test : mapping, optional
        The held-out nonlinearity test (``NonlinearityTest.to_dict()``).
    source : str, optional
        The input dataset (``SourceDatasets`` of ``dataset_description.json``).
    unmixing : ndarray of shape (n_components, d), optional
        The least-squares linear map from the reduced data to the time courses
        (``melodic_unmix``): ``concat(timecourses) ~= reduced_data @ unmixing.T``.
    reduced_data : ndarray of shape (n_volumes_total, d), optional
        The reduced data (the MIGP scores), rows in the order of the concatenated time
        courses (for the unmixing's R^2 in ``log.txt``).
    pca_maps : ndarray of shape (d, n_voxels), optional
        The group PCA maps (the MIGP basis; ``melodic_pca``).
    pca_variance : sequence of float, optional
        Each PCA dimension's fraction of the cleaned data's variance (``eigenvalues_percent``).
    log : str, optional
        What ran, in words (``log.txt`` of the MELODIC layout).
    """

    mask_img: Any
    group_maps: np.ndarray
    timecourses: Sequence[np.ndarray] = ()
    runs: Sequence[Mapping[str, Any]] = ()
    subject_maps: Sequence[np.ndarray | None] | None = None
    effect_maps: np.ndarray | None = None
    params: Mapping[str, Any] | None = None
    explained_variance: Sequence[float] | None = None
    total_explained_variance: float | None = None
    stability: Sequence[float] | None = None
    nonlinearity_test: Mapping[str, Any] | None = None
    source: str | None = None
    unmixing: np.ndarray | None = None
    reduced_data: np.ndarray | None = None
    pca_maps: np.ndarray | None = None
    pca_variance: Sequence[float] | None = None
    log: str | None = None

    @property
    def tr(self) -> float | None:
        """The first run's repetition time (seconds), if it has one."""
        return float(self.runs[0]["tr"]) if self.runs and self.runs[0].get("tr") else None

    @property
    def paths(self) -> list:
        """The runs' input files (those that have one), in order."""
        return [r.get("path") for r in self.runs if r.get("path")]


def early_stopping(val_elbo: Sequence[float], kept: float | None = None, n_dims: int | None = None,
                   warmup_epochs: int | None = None) -> dict | None:
    """What the held-out ELBO curve says about stopping: its peak, its fall, the state kept.

    Parameters
    ----------
    val_elbo : sequence of float
        Held-out ELBO per volume per epoch (``model/elbo.tsv``'s ``val_elbo``).
    kept : float, optional
        The held-out ELBO of the state the fit kept (``results.elbo``); its epoch is the
        last epoch with that value.
    n_dims : int, optional
        The reduced dimension (the margin is ``OVERFIT_MARGIN * n_dims``; 0 without it).
    warmup_epochs : int, optional
        The epochs of the training's warm-up (``warmup_frac`` of its steps), during which
        the training keeps every epoch's state, better or not; recorded, and named in the
        note when the state kept is the warm-up's last rather than the peak.

    Returns
    -------
    dict or None
        ``n_epochs``, ``peak_epoch`` (1-based) and ``peak_val_elbo``, ``last_val_elbo``,
        ``fall_after_peak`` (peak minus last, >= 0), ``noise`` (the curve's epoch-to-epoch
        noise: a robust standard deviation of its steps over sqrt 2), ``margin`` (the
        larger of ``OVERFIT_MARGIN * n_dims`` and 3 ``noise``), ``fell_after_peak`` (the
        mean of the last tenth of the epochs, at least 3, lies below the peak by more
        than the margin: the model overfits the training volumes after the peak; a
        curve that only wanders within its noise after the peak, as every fit stopped
        by ``patience`` does, does not count), ``kept_epoch`` (None when unknown) and
        ``kept_val_elbo``; None without a finite value.
    """
    v = np.asarray(list(val_elbo), dtype=float)
    finite = np.flatnonzero(np.isfinite(v))
    if finite.size == 0:
        return None
    peak = int(np.nanargmax(np.where(np.isfinite(v), v, -np.inf)))
    last = float(v[finite[-1]])
    fall = max(0.0, float(v[peak]) - last)
    tail = v[finite[-max(3, finite.size // 10):]]
    steps = np.diff(v[finite])
    noise = float(1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2)) if steps.size > 2 else 0.0
    margin = max(OVERFIT_MARGIN * int(n_dims) if n_dims else 0.0, 3.0 * noise)
    sustained = float(v[peak]) - float(np.mean(tail))
    kept_epoch = None
    if kept is not None and np.isfinite(kept):
        hits = np.flatnonzero(np.isclose(v, float(kept), rtol=1e-6, atol=1e-9))
        kept_epoch = int(hits[-1]) + 1 if hits.size else None
    return {"n_epochs": int(v.size), "peak_epoch": peak + 1, "peak_val_elbo": float(v[peak]),
            "last_val_elbo": last, "fall_after_peak": fall, "noise": noise, "margin": margin,
            "fell_after_peak": bool(sustained > margin and peak + 1 < v.size), "kept_epoch": kept_epoch,
            "kept_val_elbo": None if kept is None or not np.isfinite(kept) else float(kept),
            "warmup_epochs": None if warmup_epochs is None else int(warmup_epochs)}


def early_stopping_note(record: Mapping[str, Any] | None) -> str:
    """One sentence when the held-out ELBO fell after its peak (:func:`early_stopping`), else "".

    It says where the peak was, how far the curve fell by the last epoch, and which
    epoch's model was kept.
    """
    if not record or not record.get("fell_after_peak"):
        return ""
    peak, kept = record["peak_epoch"], record.get("kept_epoch")
    if kept == peak:
        keep = f"the epoch-{peak} model (the peak) is the one kept"
    elif kept is not None:
        warm = record.get("warmup_epochs")
        why = (f" (training keeps every epoch of its warm-up, the first {warm} epochs, whether better or not)"
               if warm and peak < kept <= warm + 1 else "")
        keep = (f"the epoch-{kept} model is the one kept, "
                f"{record['peak_val_elbo'] - record['kept_val_elbo']:.3g} below the peak{why}")
    else:
        keep = "the kept model's epoch is unknown"
    return (f"the held-out ELBO peaked at epoch {peak} of {record['n_epochs']} ({record['peak_val_elbo']:.2f}) "
            f"and fell by {record['fall_after_peak']:.3g} nats per volume by the last epoch: the model "
            f"overfits the training volumes after epoch {peak}; {keep}")
