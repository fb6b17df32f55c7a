"""Real-data loaders and the network metrics of the real-data benchmark (issue 20).

Loaders
-------
* GIFT's development data (a copy of the public repository ``trendscenter/gift``:
  ``GroupICAT/tests/data/subjects/sub-*_lowres.nii``, six MNI subjects of 50 volumes at
  7.5 x 7.5 x 9.1 mm, and the 14-network atlas ``GroupICAT/icatb/icatb_templates/RSN.zip``
  with its key ``RSN.txt``). Their licence is not stated: they are never committed, and
  :func:`gift_dir` returns None when they are absent. The folder holds the six runs,
  ``RSN.nii`` (3 mm MNI, 90 binary ROI volumes) and ``RSN.txt`` (one line per network:
  ``Network name, roi, roi, ...``, 1-based indices into the volumes of ``RSN.nii``). The
  headers say TR = 1 s; the benchmark treats it as 2 s (:data:`GIFT_TR`), which matters
  only for temporal filters (none are used).
* Haxby et al. (2001) subject 1 (12 task runs at 25 mm, ``../shared/data/real``), as in
  ``benchmarks/fmri.py``.

Metrics
-------
Maps are arrays ``(n_maps, n_voxels)`` on one mask.

* :func:`network_scores`: ``coverage`` (for each reference network the best |r| over the
  maps, averaged over networks), ``n_matched`` (networks whose best |r| reaches the
  threshold), ``one_to_one`` (mean |r| of the Hungarian one-to-one assignment of maps to
  networks, :func:`trends_ivae.metrics.mcc`);
* :func:`map_agreement`: the MCC between two sets of maps (|r|, Hungarian-matched), the
  split-half and seed agreement; invariant to the sign and order of the maps;
* :func:`subspace_ceiling`: per network, the best |r| that any map in the span of a group
  basis can reach (the ceiling of coverage for maps that are linear in the basis).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["GIFT_TR", "HAXBY_TR", "gift_dir", "gift_runs", "rsn_networks", "rsn_reference",
           "haxby_dir", "haxby_runs", "common_mask", "network_scores", "map_agreement", "subspace_ceiling"]

ROOT = Path(__file__).resolve().parents[1]
#: repetition time used for the GIFT subjects (their headers say 1.0)
GIFT_TR = 2.0
HAXBY_TR = 2.5
_GIFT_CANDIDATES = (ROOT / ".." / "shared" / "data" / "gift", Path("/work/data/gift"))
_HAXBY = ROOT / ".." / "shared" / "data" / "real" / "haxby2001_sub001"


# ----------------------------------------------------------------------------- loaders
def _is_gift(path: Path) -> bool:
    return (path.is_dir() and (path / "RSN.nii").is_file() and (path / "RSN.txt").is_file()
            and any(path.glob("sub-*_lowres.nii*")))


def gift_dir() -> Path | None:
    """The folder of GIFT's development data, or None when absent.

    ``$TRENDS_IVAE_GIFT_DIR`` when set, else ``../shared/data/gift`` (beside the
    checkout), else ``/work/data/gift``; the folder must hold ``RSN.nii``, ``RSN.txt``
    and at least one ``sub-*_lowres.nii``.
    """
    env = os.environ.get("TRENDS_IVAE_GIFT_DIR")
    candidates = (Path(env),) if env else _GIFT_CANDIDATES
    for path in candidates:
        if _is_gift(path):
            return path.resolve()
    return None


def gift_runs(gift_dir: Path | str) -> list[Path]:
    """The subjects' runs ``sub-*_lowres.nii[.gz]``, sorted by name (one run per subject)."""
    runs = sorted(Path(gift_dir).glob("sub-*_lowres.nii*"))
    if not runs:
        raise FileNotFoundError(f"{gift_dir}: no sub-*_lowres.nii files")
    return runs


def rsn_networks(gift_dir: Path | str) -> list[tuple[str, list[int]]]:
    """``RSN.txt`` read: per network its name and its 1-based ROI indices into ``RSN.nii``."""
    path = Path(gift_dir) / "RSN.txt"
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, *rois = [p.strip() for p in line.split(",")]
        try:
            idx = [int(r) for r in rois if r]
        except ValueError:
            raise ValueError(f"{path}, line {number}: ROI indices must be integers, got {line!r}") from None
        if not idx:
            raise ValueError(f"{path}, line {number}: network {name!r} lists no ROI")
        out.append((name, idx))
    return out


def rsn_reference(mask_img, gift_dir: Path | str) -> tuple[np.ndarray, list[str]]:
    """The 14 RSN networks on the voxels of ``mask_img``.

    Each network is the union of its ROIs (volumes of ``RSN.nii``), resampled to the
    grid of ``mask_img`` with continuous interpolation (``nilearn.image.resample_to_img``).

    Returns
    -------
    reference : ndarray, shape (n_networks, n_voxels_in_mask)
    names : list of str
    """
    import nibabel as nib
    from nilearn.image import load_img, resample_to_img

    gift_dir = Path(gift_dir)
    rsn = nib.load(str(gift_dir / "RSN.nii"))
    data = np.asarray(rsn.dataobj) > 0
    networks = rsn_networks(gift_dir)
    bad = [i for _, rois in networks for i in rois if not 1 <= i <= data.shape[3]]
    if bad:
        raise ValueError(f"{gift_dir / 'RSN.txt'}: ROI indices {bad} outside 1..{data.shape[3]} "
                         f"(the volumes of {gift_dir / 'RSN.nii'})")
    union = np.stack([data[..., [i - 1 for i in rois]].any(axis=3) for _, rois in networks], axis=3)
    img = nib.Nifti1Image(union.astype(np.float32), rsn.affine)
    mask_img = load_img(mask_img)
    with warnings.catch_warnings():   # continuous on a binary image is meant: a smooth reference
        warnings.filterwarnings("ignore", message="Resampling binary images")
        res = resample_to_img(img, mask_img, interpolation="continuous", force_resample=True, copy_header=True)
    mask = np.asarray(mask_img.dataobj) > 0
    ref = np.asarray(res.get_fdata(), np.float64)[mask].T
    return ref, [name for name, _ in networks]


def haxby_dir() -> Path | None:
    """Haxby subject 1 (``../shared/data/real/haxby2001_sub001``), or None when absent."""
    return _HAXBY.resolve() if (_HAXBY / "sub001" / "BOLD").is_dir() else None


def haxby_runs(run_ids=range(1, 13), root: Path | None = None) -> tuple[list[Path], Path]:
    """The 25 mm runs ``run_ids`` (1-based) of Haxby subject 1 and its 25 mm brain mask."""
    root = Path(root) if root is not None else haxby_dir()
    if root is None:
        raise FileNotFoundError(f"{_HAXBY}: absent")
    bold = root / "sub001" / "BOLD"
    return ([bold / f"task001_run{i:03d}" / "bold_25mm.nii.gz" for i in run_ids],
            root / "sub001" / "masks" / "25mm" / "brain.nii.gz")


def common_mask(runs, mask=None):
    """One mask for every method: nilearn's ``compute_multi_epi_mask`` of ``runs`` (or
    the given ``mask``), less the voxels that are not finite or constant in some run (the
    voxels the prepare stage would drop), so that every method sees the same voxels."""
    import nibabel as nib
    from nilearn.image import load_img
    from nilearn.masking import compute_multi_epi_mask

    img = load_img(str(mask)) if mask is not None else compute_multi_epi_mask([str(r) for r in runs])
    keep = np.asarray(img.dataobj) > 0
    for run in runs:
        data = np.asarray(nib.load(str(run)).dataobj, np.float64)
        keep &= np.isfinite(data).all(axis=3) & (data.std(axis=3) > 0)
    if not keep.any():
        raise ValueError("the common mask is empty")
    return nib.Nifti1Image(keep.astype(np.uint8), img.affine)


# ----------------------------------------------------------------------------- metrics
def _check_maps(maps, name: str) -> np.ndarray:
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_maps, n_voxels), got shape {maps.shape}")
    return maps


def network_scores(maps, reference, threshold: float = 0.3) -> dict:
    """How well a set of maps covers the networks of a reference.

    Parameters
    ----------
    maps : array, shape (k, n_voxels)
        Group maps (any sign and order).
    reference : array, shape (m, n_voxels)
        Reference networks on the same voxels.
    threshold : float, default=0.3
        A network counts as matched when its best |r| reaches this.

    Returns
    -------
    dict
        ``coverage`` (mean over networks of the best |r| over maps), ``n_matched``,
        ``n_networks``, ``one_to_one`` (mean |r| of the Hungarian one-to-one assignment;
        ``min(k, m)`` pairs), ``best`` (per network, the best |r|), ``best_map`` (its map).
    """
    from trends_ivae.metrics import correlation_matrix, mcc

    maps, reference = _check_maps(maps, "maps"), _check_maps(reference, "reference")
    if maps.shape[1] != reference.shape[1]:
        raise ValueError(f"maps ({maps.shape[1]} voxels) and reference ({reference.shape[1]} voxels) "
                         "must be on the same voxels")
    r = np.abs(correlation_matrix(maps.T, reference.T))          # (k, m)
    best = r.max(axis=0)
    return {"coverage": float(best.mean()), "n_matched": int((best >= threshold).sum()),
            "n_networks": int(reference.shape[0]), "one_to_one": mcc(maps.T, reference.T).score,
            "best": best, "best_map": r.argmax(axis=0)}


def map_agreement(maps_a, maps_b) -> float:
    """MCC between two sets of maps on the same voxels: mean |r| after Hungarian matching."""
    from trends_ivae.metrics import mcc

    maps_a, maps_b = _check_maps(maps_a, "maps_a"), _check_maps(maps_b, "maps_b")
    if maps_a.shape[1] != maps_b.shape[1]:
        raise ValueError(f"maps_a ({maps_a.shape[1]} voxels) and maps_b ({maps_b.shape[1]} voxels) "
                         "must be on the same voxels")
    return mcc(maps_a.T, maps_b.T).score


def subspace_ceiling(basis, reference) -> np.ndarray:
    """Per network, the highest |r| between it and any map in the span of ``basis``.

    Any map that is a linear combination of the basis columns (spatial FastICA on the
    group reduction, for instance) correlates with a network at most this much: the norm
    of the centred network's projection onto the centred basis, over its own norm.

    Parameters
    ----------
    basis : array, shape (n_voxels, d)
        A group basis (e.g. the prepare stage's ``basis``) on the reference's voxels.
    reference : array, shape (m, n_voxels)

    Returns
    -------
    ndarray, shape (m,)
    """
    basis = np.asarray(basis, np.float64)
    reference = _check_maps(reference, "reference")
    if basis.ndim != 2 or basis.shape[0] != reference.shape[1]:
        raise ValueError(f"basis must be (n_voxels, d) with the reference's {reference.shape[1]} voxels, "
                         f"got shape {basis.shape}")
    q, _ = np.linalg.qr(basis - basis.mean(0))
    centred = reference - reference.mean(1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1)
    norm[norm == 0] = np.inf
    return np.linalg.norm(centred @ q, axis=1) / norm
