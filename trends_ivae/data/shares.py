"""A participant share: one subject's cleaned data, factored, on disk (the BIDS App's participant level).

``OUTPUT_DIR/sub-<label>/``::

    sub-<label>_desc-ivae_share.h5        cleaned data, factored; the run table; settings
    sub-<label>_desc-ivae_mask.nii.gz     the subject's mask (uint8)
    sub-<label>_desc-mean_boldref.nii.gz  the subject's mean EPI (mean over time and runs)

The HDF5 file holds ``scores`` ``U`` (volumes x K, orthonormal columns), ``rows``
``R = U^T Y`` (K x voxels of the subject's mask), ``singular_values``, ``mask``,
``affine``, ``mean`` and the attribute ``meta`` (JSON: format, subject, run table with
each run's events as TSV text, the participants row, the cleaning settings, the mask's
source, ``subject_dims``, K, the total sum of squares, the grid's shape, versions).
This module writes (:func:`write_share`, all three files atomically, the share last)
and reads (:func:`read_share_meta`, :class:`ParticipantShare`) that format; what goes
into it is :func:`~trends_ivae.reduction.participant.write_participant_share`'s business.
"""
from __future__ import annotations

import io as _io
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from ..atomic import atomic_path
from .errors import PrepareError

__all__ = ["SHARE_FORMAT", "share_paths", "ParticipantShare", "write_share", "read_share_meta",
           "group_mean_image", "events_text", "read_events_text"]

#: version of the share file format
SHARE_FORMAT = 1


def share_paths(out_dir: str | os.PathLike, label: str) -> dict[str, Path]:
    """The files of subject ``label``'s share under ``out_dir`` (``share``, ``mask``, ``mean``)."""
    label = label[4:] if label.startswith("sub-") else label
    sub = Path(out_dir) / f"sub-{label}"
    return {"share": sub / f"sub-{label}_desc-ivae_share.h5",
            "mask": sub / f"sub-{label}_desc-ivae_mask.nii.gz",
            "mean": sub / f"sub-{label}_desc-mean_boldref.nii.gz"}


@dataclass
class ParticipantShare:
    """A subject's share as read back: metadata and affine; arrays are read on demand.

    ``mask`` and ``mean`` are read from the file at each access (not kept), so that
    the group level, which holds one of these per subject, stays flat in memory in
    the number of subjects (a mean EPI on a 2 mm grid is ~3.6 MB; 1000 of them 3.6 GB).
    """

    path: Path
    subject: str
    meta: dict
    affine: np.ndarray
    shape: tuple

    @property
    def n_volumes(self) -> int:
        return sum(r["n_volumes"] for r in self.meta["runs"])

    def _read(self, name: str) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[name][()]

    @property
    def mask(self) -> np.ndarray:
        """The subject's mask, bool (read from the file)."""
        return self._read("mask").astype(bool)

    @property
    def mean(self) -> np.ndarray:
        """The subject's mean EPI, float32 (read from the file)."""
        return self._read("mean")

    def factors(self, voxels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(U, R)``; ``R`` restricted to ``voxels`` (bool over the share's mask voxels)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            U = f["scores"][()]
            R = f["rows"][()]
        if voxels is not None:
            R = R[:, voxels]
        return U, R


def events_text(events) -> str | None:
    if events is None:
        return None
    if isinstance(events, pd.DataFrame):
        return events.to_csv(sep="\t", index=False)
    path = Path(events)
    if not path.is_file():
        raise PrepareError(f"events file {str(path)!r} does not exist")
    return path.read_text()


def write_share(paths: dict[str, Path], *, U: np.ndarray, singular_values: np.ndarray, R: np.ndarray,
                mask_img: nib.Nifti1Image, mean: nib.Nifti1Image, meta: dict) -> None:
    """Write a share's three files (:func:`share_paths`) atomically; the share file is renamed last,
    so that its presence means the mask and mean image beside it are complete."""
    import h5py

    k = U.shape[1]
    with ExitStack() as stack:   # left in reverse order: mean, mask, then the share
        tmp = stack.enter_context(atomic_path(paths["share"], suffix=".tmp.h5"))
        tmp_mask = stack.enter_context(atomic_path(paths["mask"], suffix=".tmp.nii.gz"))
        tmp_mean = stack.enter_context(atomic_path(paths["mean"], suffix=".tmp.nii.gz"))
        with h5py.File(tmp, "w") as f:
            f.create_dataset("scores", data=U.astype(np.float32))
            f.create_dataset("singular_values", data=singular_values)
            f.create_dataset("rows", data=R, compression="gzip", compression_opts=4,
                             chunks=(min(k, 64), R.shape[1]))
            f.create_dataset("mask", data=np.asarray(mask_img.dataobj).astype(np.uint8), compression="gzip")
            f.create_dataset("affine", data=np.asarray(mask_img.affine, float))
            f.create_dataset("mean", data=np.asarray(mean.dataobj, np.float32), compression="gzip")
            f.attrs["meta"] = json.dumps(meta, default=str)
        nib.save(mask_img, tmp_mask)
        nib.save(mean, tmp_mean)


def read_share_meta(path: str | os.PathLike) -> ParticipantShare:
    """Read a share's metadata, mask and mean image (not its data).

    Raises
    ------
    PrepareError
        The file is missing, unreadable or not a share of this format.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs["meta"])
            shape = tuple(int(v) for v in f["mask"].shape)
            affine = f["affine"][()]
            if f["mean"].shape != shape or not {"scores", "rows"} <= set(f):
                raise KeyError("datasets missing or of the wrong shape")
    except (OSError, KeyError, ValueError) as exc:
        raise PrepareError(f"participant share {str(path)!r} cannot be read: {exc}") from exc
    if meta.get("format") != "trends_ivae.participant_share" or meta.get("share_format") != SHARE_FORMAT:
        raise PrepareError(f"{str(path)!r} is not a participant share of format {SHARE_FORMAT}")
    return ParticipantShare(path=path, subject=meta["subject"], meta=meta, affine=affine, shape=shape)


def group_mean_image(shares: Sequence[ParticipantShare]) -> nib.Nifti1Image:
    """Mean EPI of the group: the subjects' means weighted by their number of runs."""
    total = np.zeros(shares[0].shape)
    for s in shares:   # one subject's mean in memory at a time
        total += s.mean.astype(np.float64) * len(s.meta["runs"])
    n = sum(len(s.meta["runs"]) for s in shares)
    return nib.Nifti1Image((total / n).astype(np.float32), shares[0].affine)


def read_events_text(text: str | None) -> pd.DataFrame | None:
    if text is None:
        return None
    return pd.read_csv(_io.StringIO(text), sep="\t", na_values=["n/a", "N/A", ""], keep_default_na=False)
