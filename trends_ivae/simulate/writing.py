"""Writing a simulation as a BIDS dataset with its truth, and reading the truth back."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .params import TASK_NAME
from .results import FMRISimulation, SimulationTruth

__all__ = ["write_bids", "load_truth"]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_bids(sim: FMRISimulation, out_dir: str | os.PathLike, *, dtype: str = "float32",
               force: bool = False, compress: bool = True) -> Path:
    """Write ``sim`` as a BIDS dataset, with its truth under ``derivatives/truth/``.

    Layout::

        OUT/dataset_description.json, participants.tsv, participants.json, README,
            task-sim_bold.json
        OUT/sub-XX/func/sub-XX_task-sim_bold.nii.gz  (+ _bold.json, _events.tsv; .nii
            with ``compress=False``)
        OUT/derivatives/truth/dataset_description.json, truth.npz, params.json,
            truth_maps.nii.gz, truth_effects.nii.gz, truth_mask.nii.gz

    The dataset is written in a temporary folder next to ``out_dir`` and moved into place
    at the end, so a failure leaves nothing behind.

    Parameters
    ----------
    sim : FMRISimulation
    out_dir : path
        Dataset root; must not exist unless ``force``.
    dtype : {"float32", "int16"}
        Data type of the BOLD images (``int16``: rounded intensities, smaller files).
    force : bool
        Replace an existing ``out_dir`` that holds only files this function wrote
        (:func:`trends_ivae.export.derivatives.atomic_output_dir`; others raise
        :class:`~trends_ivae.export.derivatives.ForeignFilesError`, nothing is deleted).
    compress : bool, default True
        Gzip the BOLD images (``.nii.gz``); False writes ``.nii``, several times faster
        for large cohorts (the truth images stay compressed).

    Returns
    -------
    Path
        ``out_dir``.
    """
    from ..export.outputs import atomic_output_dir, refuse_existing_dir   # no torch

    out = Path(out_dir)
    refuse_existing_dir(out, force)   # files of the user's first: the --force advice is then true
    if dtype not in ("float32", "int16"):
        raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
    with atomic_output_dir(out, force=force) as tmp:   # force: never over files it did not write
        _write_bids_tree(sim, tmp, dtype, compress)
    return out


def _write_bids_tree(sim: FMRISimulation, root: Path, dtype: str, compress: bool = True) -> None:
    p, truth = sim.params, sim.truth
    _write_json(root / "dataset_description.json", {
        "Name": "trends_ivae simulated fMRI",
        "BIDSVersion": "1.8.0",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__,
                         "Description": "trends_ivae.simulate.simulate_fmri"}],
    })
    (root / "README").write_text(
        "Simulated fMRI (trends_ivae.simulate.fmri). Ground truth in derivatives/truth/.\n"
        f"Parameters: {json.dumps(p.to_dict())}\n")
    sim.participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_json(root / "participants.json", {
        "group": {"Description": "simulated group label"},
        "site": {"Description": "simulated acquisition site"}})
    bold_meta = {"RepetitionTime": float(p.tr), "TaskName": TASK_NAME}
    _write_json(root / f"task-{TASK_NAME}_bold.json", bold_meta)
    for i, sub in enumerate(sim.subjects):
        func = root / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        stem = f"sub-{sub}_task-{TASK_NAME}"
        sim.img(i, dtype=dtype).to_filename(func / f"{stem}_bold.nii{'.gz' if compress else ''}")
        _write_json(func / f"{stem}_bold.json", bold_meta)
        sim.events[i].to_csv(func / f"{stem}_events.tsv", sep="\t", index=False, float_format="%.3f")
    tdir = root / "derivatives" / "truth"
    tdir.mkdir(parents=True)
    _write_json(tdir / "dataset_description.json", {
        "Name": "ground truth of the simulation", "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__}]})
    _write_json(tdir / "params.json", p.to_dict())
    _save_truth_npz(truth, tdir / "truth.npz")
    truth.maps_img("maps").to_filename(tdir / "truth_maps.nii.gz")
    truth.maps_img("effect_maps").to_filename(tdir / "truth_effects.nii.gz")
    truth.mask_img().to_filename(tdir / "truth_mask.nii.gz")


_ARRAYS = ("maps", "subject_maps", "effect_maps", "timecourses", "mixed", "segments",
           "segment_means", "segment_stds", "task_regressors", "mask", "affine")
_META = ("tr", "component_names", "component_kinds", "conditions", "subjects", "params")


def _save_truth_npz(truth: SimulationTruth, path: Path) -> None:
    arrays = {k: getattr(truth, k) for k in _ARRAYS}
    meta = json.dumps({k: getattr(truth, k) for k in _META})
    np.savez_compressed(path, meta=np.array(meta), **arrays)


def load_truth(path: str | os.PathLike) -> SimulationTruth:
    """Read the truth written by :func:`write_bids`.

    Parameters
    ----------
    path : path
        The BIDS root, its ``derivatives/truth`` folder, or the ``truth.npz`` file.

    Returns
    -------
    SimulationTruth
    """
    path = Path(path)
    for candidate in (path, path / "truth.npz", path / "derivatives" / "truth" / "truth.npz"):
        if candidate.is_file():
            break
    else:
        raise FileNotFoundError(f"no truth.npz at {path} (nor under derivatives/truth/)")
    with np.load(candidate, allow_pickle=False) as z:
        arrays = {k: z[k] for k in _ARRAYS}
        meta = json.loads(str(z["meta"]))
    arrays["mask"] = arrays["mask"].astype(bool)
    meta["tr"] = float(meta["tr"])
    return SimulationTruth(**arrays, **meta)
