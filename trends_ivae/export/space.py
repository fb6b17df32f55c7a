"""The input's space on the written images: qform/sform codes copied from an input image.

A mask computed by nilearn carries generic codes (qform 1, sform 2); the maps written
from it get the input's codes instead (e.g. 4, MNI152 for fMRIPrep's
``space-MNI152NLin2009cAsym`` runs) when the input lies on the mask's grid
(:func:`with_input_space`). :func:`copy_space` gives one image another's affine and codes.
Shared by every layout (:mod:`~trends_ivae.export.derivatives`,
:mod:`~trends_ivae.export.layouts`). nibabel and numpy only.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np

__all__ = ["copy_space", "with_input_space"]


def with_input_space(mimg: nib.spatialimages.SpatialImage, space_img: Any,
                     runs: Sequence[Mapping[str, Any]]) -> nib.spatialimages.SpatialImage:
    """The mask with the qform/sform codes of the input.

    Parameters
    ----------
    mimg : nibabel image
        The 3-D mask.
    space_img : image or path or None
        The input image; None: the first run's ``path``, if any.
    runs : sequence of dict
        The input runs (only their ``path`` is read).

    Returns
    -------
    nibabel image
        A new image with the input's codes (and the mask's spatial units) when the input is
        a readable NIfTI image on the mask's grid with nonzero codes; ``mimg`` unchanged
        otherwise.
    """
    ref = space_img
    if ref is None:
        paths = [r.get("path") for r in runs if r.get("path")]
        ref = paths[0] if paths else None
    if ref is None:
        return mimg
    try:
        rimg = nib.load(str(ref)) if isinstance(ref, (str, os.PathLike)) else ref
        hdr = rimg.header
        if not isinstance(hdr, nib.Nifti1Header) or not np.allclose(rimg.affine, mimg.affine, atol=1e-4):
            return mimg
        if tuple(rimg.shape[:3]) != tuple(mimg.shape[:3]):
            return mimg
        qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    except (OSError, ValueError, TypeError, nib.filebasedimages.ImageFileError):
        return mimg
    if not (qcode or scode):
        return mimg
    out = nib.Nifti1Image(np.asarray(mimg.dataobj), mimg.affine)
    out.header.set_qform(mimg.affine, code=qcode or scode)
    out.header.set_sform(mimg.affine, code=scode or qcode)
    if isinstance(mimg.header, nib.Nifti1Header):
        out.header.set_xyzt_units(*mimg.header.get_xyzt_units())
    return out


def copy_space(src: nib.spatialimages.SpatialImage, dst: nib.Nifti1Image) -> None:
    """Set ``dst``'s qform and sform to ``src``'s affine with ``src``'s codes (1 where
    ``src`` has none or is not a NIfTI image), in place."""
    hdr = src.header if isinstance(src.header, nib.Nifti1Header) else None
    dst.header.set_qform(src.affine, code=int(hdr["qform_code"]) if hdr is not None and hdr["qform_code"] else 1)
    dst.header.set_sform(src.affine, code=int(hdr["sform_code"]) if hdr is not None and hdr["sform_code"] else 1)
