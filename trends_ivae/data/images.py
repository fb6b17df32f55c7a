"""Loading and checking 4D images: the one place where niimgs enter the package.

Every function here raises :class:`PrepareError` (a ``ValueError``) whose message
names the offending file, so that a user with forty subjects knows which one to fix.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Union

import nibabel as nib
import numpy as np

from .errors import PrepareError

logger = logging.getLogger(__name__)

ImageLike = Union[str, Path, nib.spatialimages.SpatialImage]

__all__ = [
    "PrepareError",
    "ImageLike",
    "image_name",
    "load_4d",
    "load_mask",
    "header_info",
    "check_same_grid",
    "resolve_tr",
]


def image_name(img: Any) -> str:
    """A short human-readable name for ``img`` (its path when it has one)."""
    if isinstance(img, (str, Path)):
        return str(img)
    fname = getattr(img, "get_filename", lambda: None)()
    if fname:
        return str(fname)
    if isinstance(img, nib.spatialimages.SpatialImage):
        return f"<in-memory image of shape {img.shape}>"
    return repr(img)[:80]


def _load(img: ImageLike, what: str = "image") -> nib.spatialimages.SpatialImage:
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    path = Path(img)
    if not path.exists():
        raise PrepareError(f"{what} {str(path)!r} does not exist")
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many kinds for bad files
        raise PrepareError(f"{what} {str(path)!r} cannot be read: {exc}") from exc


def load_4d(img: ImageLike, *, min_volumes: int = 2) -> nib.spatialimages.SpatialImage:
    """Load ``img`` lazily and check that it is a 4D image with enough volumes.

    Like nilearn's ``check_niimg(img, ensure_ndim=4)`` but the error names the file.
    Data are not read: nibabel proxies stay lazy until :func:`numpy.asarray`.

    Parameters
    ----------
    img : str, Path or nibabel image
        The functional run.
    min_volumes : int, default=2
        Fewer volumes than this is an error.

    Returns
    -------
    nibabel.spatialimages.SpatialImage

    Raises
    ------
    PrepareError
        When the file is missing, unreadable, not 4D, or too short.
    """
    image = _load(img, "functional image")
    shape = image.shape
    if len(shape) == 5 and shape[4] == 1:  # some writers add a trailing axis
        image = nib.Nifti1Image(np.asarray(image.dataobj)[..., 0], image.affine, image.header)
        shape = image.shape
    if len(shape) != 4:
        raise PrepareError(
            f"functional image {image_name(img)!r} is {len(shape)}D with shape {shape}; "
            "expected a 4D image (x, y, z, time)"
        )
    if shape[3] < min_volumes:
        raise PrepareError(
            f"functional image {image_name(img)!r} has {shape[3]} volume(s); "
            f"at least {min_volumes} are needed"
        )
    return image


def load_mask(img: ImageLike) -> nib.Nifti1Image:
    """Load a 3D mask (any non-zero, finite value is in the mask) as uint8.

    Raises
    ------
    PrepareError
        When the file is unreadable, not 3D, or empty.
    """
    image = _load(img, "mask")
    data = np.asarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PrepareError(f"mask {image_name(img)!r} is {data.ndim}D; expected a 3D image")
    mask = (np.nan_to_num(data) != 0).astype(np.uint8)
    if not mask.any():
        raise PrepareError(f"mask {image_name(img)!r} is empty (no non-zero voxel)")
    return nib.Nifti1Image(mask, image.affine)


def header_info(image: nib.spatialimages.SpatialImage) -> dict:
    """Shape, affine, number of volumes and header TR in seconds (None if unusable)."""
    zooms = image.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 else None
    try:
        time_unit = image.header.get_xyzt_units()[1]
    except Exception:  # non-NIfTI headers
        time_unit = "sec"
    if tr is not None and time_unit == "msec":
        tr = tr / 1000.0
    elif tr is not None and time_unit == "usec":
        tr = tr / 1e6
    if tr is not None and (not np.isfinite(tr) or tr <= 0):
        tr = None
    return {
        "shape": tuple(int(s) for s in image.shape[:3]),
        "n_volumes": int(image.shape[3]),
        "affine": np.asarray(image.affine, dtype=float),
        "header_tr": tr,
    }


def check_same_grid(infos: list[dict], names: list[str], *, atol: float = 1e-3) -> None:
    """Raise :class:`PrepareError` when images do not share shape and affine with the first.

    Parameters
    ----------
    infos : list of dict
        Outputs of :func:`header_info`.
    names : list of str
        The file names, for the message.
    """
    ref = infos[0]
    for info, name in zip(infos[1:], names[1:]):
        if info["shape"] != ref["shape"]:
            raise PrepareError(
                f"functional image {name!r} has spatial shape {info['shape']} but "
                f"{names[0]!r} has {ref['shape']}; resample the data to a common grid "
                "or pass resample_to_first=True (--resample-to-first)"
            )
        if not np.allclose(info["affine"], ref["affine"], atol=atol):
            raise PrepareError(
                f"functional image {name!r} has an affine different from {names[0]!r}; "
                "resample the data to a common grid or pass resample_to_first=True "
                "(--resample-to-first)"
            )


def resolve_tr(name: str, *, override: float | None, sidecar: float | None,
               header: float | None) -> float:
    """The repetition time of one run: ``override`` > JSON sidecar > header.

    A header TR of exactly 1.0 s with no sidecar is accepted with a warning (many
    converters write 1 when they do not know). A TR missing everywhere is an error.

    Raises
    ------
    PrepareError
        When no positive TR can be found.
    """
    if override is not None:
        if not override > 0:
            raise PrepareError(f"tr={override!r} must be positive (given for {name!r})")
        return float(override)
    if sidecar is not None:
        try:
            value = float(sidecar)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0:
            raise PrepareError(f"RepetitionTime {sidecar!r} in the sidecar of {name!r} is not a positive number")
        return value
    if header is None:
        raise PrepareError(
            f"no repetition time for {name!r}: no JSON sidecar RepetitionTime and the "
            "header's pixdim[4] is 0 or missing; pass tr=... (--tr SECONDS)"
        )
    if header == 1.0:
        warnings.warn(
            f"{name!r}: TR taken from the header is exactly 1.0 s, which converters often "
            "write when they do not know it; pass tr=... (--tr) if that is wrong",
            UserWarning, stacklevel=3,
        )
    return float(header)
