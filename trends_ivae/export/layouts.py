"""Drop-in output layouts for downstream tools: FSL MELODIC (``*.ica``) and GIFT.

Both writers take the same arrays as :func:`~trends_ivae.export.derivatives.write_derivatives`
(group z-maps, per-run time courses, per-run subject maps, the mask), so component
``icNN`` is the same component, with the same sign, in every layout.

MELODIC (:func:`write_melodic`), a folder FSLeyes' MELODIC view opens (FSLeyes
recognises a folder whose name ends in ``.ica`` and which holds ``melodic_IC``,
``melodic_mix`` and ``melodic_FTmix``) and whose ``melodic_IC.nii.gz`` FSL's
``dual_regression`` takes as its group maps::

    OUT/melodic_IC.nii.gz    4-D float32 z-maps, one volume per component (pixdim[4] = TR)
    OUT/melodic_mix          time courses of all runs concatenated (subject by subject),
                             plain text, one row per volume, one column per component
    OUT/melodic_FTmix        their power spectra: one row per frequency (1 .. n/2 of the
                             shortest run), one column per component; the mean over runs
                             of each run's periodogram (runs truncated to the shortest)
    OUT/melodic_ICstats      one row per component: percent of the explained variance (the
                             components' shares, adding up to 100) and percent of the total
                             (cleaned data's) variance, as MELODIC's first two columns
    OUT/mask.nii.gz          the mask (uint8)
    OUT/mean.nii.gz          the background image (see below)
    OUT/melodic_unmix, melodic_pca.nii.gz, eigenvalues_percent, log.txt, stats/thresh_zstatN.nii.gz
                             :mod:`~trends_ivae.export.melodic_files` (the unmixing, the
                             group PCA and its spectrum, what ran, thresholded z-maps)

``mean.nii.gz`` is the mean EPI image, for FSLeyes' underlay. The voxel mean kept in
``prepared.h5`` is about zero (every voxel is centred in time per run before the
reduction), so it is not a usable underlay: give ``mean_img`` (the group mean of the
raw runs, :func:`mean_epi` computes it in one streamed pass; the BIDS App has it from
the participant stage). Without one, the mask itself (as float32) is written, so the
file FSLeyes looks for exists.

GIFT (:func:`write_gift`), GIFT's file naming with a ``prefix``::

    OUT/<prefix>_agg__component_ica_.nii              aggregate (group) maps, 4-D
    OUT/<prefix>_mean_component_ica_s_all_.nii        the same maps (GIFT's mean of subjects)
    OUT/<prefix>_sub001_component_ica_s1_.nii         subject 1, session 1: maps, 4-D
    OUT/<prefix>_sub001_timecourses_ica_s1_.nii       subject 1, session 1: time courses,
                                                      a 2-D image (n_volumes, n_components)
    OUT/<prefix>Mask.nii                              the mask
    OUT/<prefix>_subjects.tsv                         subNNN / sN -> BIDS subject, run, file

Subjects are numbered 1, 2, ... in the order of first appearance in ``runs`` (three
digits), sessions are a subject's runs in order (``s1``, ``s2``, ...). GIFT writes
uncompressed ``.nii``; so do we.

Every NIfTI image of both layouts (maps, mask, mean image) has the input's qform/sform
codes (e.g. 4, MNI152 for fMRIPrep's ``space-MNI152NLin2009cAsym`` runs), as in the BIDS
layout: ``space_img`` gives the input image, by default the first run's file when it lies
on the mask's grid. A mask computed by nilearn carries generic codes (qform 1, sform 2),
so without this FSLeyes and GIFT would be told the maps are in scanner space.

Every writer takes a :class:`~trends_ivae.export.fit_outputs.FitOutputs`. Both writers
write into a temporary folder and move it into place at the end
(:func:`~trends_ivae.export.outputs.atomic_output_dir`); an existing folder is refused
unless ``force``. :func:`write_layout_files` writes any layout into a folder that is being
staged, beside other files of the same output (the model, the prepared data). numpy,
nibabel and pandas only (never torch).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from .derivatives import component_names, load_mask, run_entities, unmask, write_derivative_files
from .fit_outputs import FitOutputs
from .melodic_files import check_melodic_extras, write_melodic_extras
from .outputs import atomic_output_dir, refuse_existing_dir
from .space import copy_space, with_input_space

__all__ = ["LAYOUTS", "write_layout", "write_layout_files", "write_melodic", "write_gift", "power_spectra",
           "mean_epi", "gift_subjects"]

#: the output layouts ``--layout`` accepts
LAYOUTS = ("bids", "melodic", "gift")


def _check(mask_img, group_maps, timecourses, subject_maps, runs) -> tuple:
    mimg = load_mask(mask_img)
    n_vox = int((np.asarray(mimg.dataobj) > 0).sum())
    group_maps = np.asarray(group_maps)
    if group_maps.ndim != 2 or group_maps.shape[1] != n_vox:
        raise ValueError(f"group_maps must be (k, {n_vox}) for this mask, got {group_maps.shape}")
    k = group_maps.shape[0]
    timecourses = [np.asarray(t) for t in timecourses]
    if not timecourses:
        raise ValueError("no time courses given")
    for i, t in enumerate(timecourses):
        if t.ndim != 2 or t.shape[1] != k:
            raise ValueError(f"timecourses[{i}] must be (n_volumes, {k}), got {t.shape}")
    if runs is not None and len(runs) != len(timecourses):
        raise ValueError(f"{len(runs)} runs but {len(timecourses)} time-course arrays")
    if subject_maps is not None:
        if not isinstance(subject_maps, Sequence):   # a lazy Sequence stays lazy (shapes checked on use)
            subject_maps = list(subject_maps)
        if len(subject_maps) != len(timecourses):
            raise ValueError(f"{len(timecourses)} runs but {len(subject_maps)} subject maps")
    return mimg, group_maps, timecourses, subject_maps


def power_spectra(timecourses: Sequence[np.ndarray]) -> np.ndarray:
    """Mean power spectrum of each component over runs (MELODIC's ``melodic_FTmix``).

    Parameters
    ----------
    timecourses : sequence of ndarray (n_volumes, k)
        One array per run. Each is truncated to the shortest run's length ``n``,
        demeaned, and its periodogram ``|FFT|^2 / n`` taken at frequencies ``1 .. n//2``
        (the DC term dropped, as MELODIC does).

    Returns
    -------
    ndarray (n // 2, k)
    """
    n = min(t.shape[0] for t in timecourses)
    if n < 2:
        raise ValueError("time courses need at least 2 volumes for a power spectrum")
    spectra = []
    for t in timecourses:
        x = np.asarray(t[:n], dtype=np.float64)
        x = x - x.mean(axis=0)
        spectra.append(np.abs(np.fft.rfft(x, axis=0)[1: n // 2 + 1]) ** 2 / n)
    return np.mean(spectra, axis=0)


def mean_epi(imgs: Sequence[Any], mask_img: Any | None = None) -> nib.Nifti1Image:
    """Group mean EPI: the mean over time of each run, averaged over runs (one run in memory).

    Parameters
    ----------
    imgs : sequence of path or nibabel image
        4-D runs on one grid.
    mask_img : image or path, optional
        When given, only its grid is used: runs on another grid raise ``ValueError``.

    Returns
    -------
    nibabel.Nifti1Image
        3-D float32 on the runs' grid.
    """
    total, affine = None, None
    for img in imgs:
        image = nib.load(str(img)) if isinstance(img, (str, os.PathLike)) else img
        data = np.asarray(image.dataobj, dtype=np.float32)
        m = np.nan_to_num(data.mean(axis=3, dtype=np.float64)) if data.ndim == 4 else data
        if total is None:
            total, affine = np.zeros(m.shape), image.affine
        elif m.shape != total.shape:
            raise ValueError(f"run {img} has shape {m.shape[:3]}, the first run {total.shape}")
        total += m
    if total is None:
        raise ValueError("no image given")
    if mask_img is not None and load_mask(mask_img).shape != total.shape:
        raise ValueError(f"the runs' grid {total.shape} differs from the mask's {load_mask(mask_img).shape}")
    return nib.Nifti1Image((total / len(imgs)).astype(np.float32), affine)


def _background(mean_img, mimg) -> nib.Nifti1Image:
    if mean_img is None:
        data = (np.asarray(mimg.dataobj) > 0).astype(np.float32)
        return _in_space(nib.Nifti1Image(data, mimg.affine), mimg)
    img = nib.load(str(mean_img)) if isinstance(mean_img, (str, os.PathLike)) else mean_img
    if img.shape[:3] != mimg.shape[:3]:
        raise ValueError(f"mean_img has shape {img.shape}, the mask {mimg.shape}")
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    return _in_space(nib.Nifti1Image(data, mimg.affine), mimg)


def _in_space(img: nib.Nifti1Image, mimg) -> nib.Nifti1Image:
    """``img`` with the qform/sform codes (and spatial units) of the mask ``mimg``."""
    copy_space(mimg, img)
    if isinstance(mimg.header, nib.Nifti1Header):
        img.header.set_xyzt_units(mimg.header.get_xyzt_units()[0])
    return img


def _mask_image(mimg) -> nib.Nifti1Image:
    """The mask as uint8 0/1, in the mask's space."""
    return _in_space(nib.Nifti1Image((np.asarray(mimg.dataobj) > 0).astype(np.uint8), mimg.affine), mimg)


def _with_tr(img: nib.Nifti1Image, tr: float | None) -> nib.Nifti1Image:
    if tr and img.ndim == 4:
        zooms = img.header.get_zooms()
        img.header.set_zooms(zooms[:3] + (float(tr),))
        img.header.set_xyzt_units(img.header.get_xyzt_units()[0], "sec")
    return img


def _savetxt(path: Path, arr: np.ndarray) -> None:
    np.savetxt(path, np.atleast_2d(arr), fmt="%.8e", delimiter="  ")


def _refuse_existing(out: Path, force: bool) -> None:
    refuse_existing_dir(out, force)   # files of the user's first: the --force advice is then true


@dataclass(frozen=True)
class _Melodic:
    """A MELODIC folder's contents, checked (nothing written yet)."""

    mimg: Any
    group_maps: np.ndarray
    timecourses: list
    background: nib.Nifti1Image
    tr: float | None
    outputs: FitOutputs


def _check_melodic(outputs: FitOutputs, tr: float | None, mean_img: Any, space_img: Any) -> _Melodic:
    mimg, group_maps, timecourses, _ = _check(outputs.mask_img, outputs.group_maps, outputs.timecourses, None, None)
    mimg = with_input_space(mimg, space_img, outputs.runs)
    background = _background(mean_img, mimg)
    k = group_maps.shape[0]
    ev = outputs.explained_variance
    if ev is not None and len(ev) != k:
        raise ValueError(f"explained_variance must have {k} values, got {len(ev)}")
    check_melodic_extras(outputs, group_maps)
    return _Melodic(mimg, group_maps, timecourses, background, outputs.tr if tr is None else tr, outputs)


def _write_melodic(root: Path, m: _Melodic) -> None:
    ic = _with_tr(unmask(m.group_maps, m.mimg, intent="z score", descrip="trends_ivae group z-maps"), m.tr)
    nib.save(ic, root / "melodic_IC.nii.gz")
    _savetxt(root / "melodic_mix", np.concatenate(m.timecourses, axis=0))
    _savetxt(root / "melodic_FTmix", power_spectra(m.timecourses))
    if m.outputs.explained_variance is not None:
        shares = np.asarray(m.outputs.explained_variance, float)
        total = m.outputs.total_explained_variance
        total = float(shares.sum()) if total is None else float(total)
        of_explained = 100.0 * shares / total if total > 0 else np.zeros_like(shares)
        _savetxt(root / "melodic_ICstats", np.column_stack([of_explained, 100.0 * shares]))
    nib.save(_mask_image(m.mimg), root / "mask.nii.gz")
    nib.save(m.background, root / "mean.nii.gz")
    write_melodic_extras(root, m.outputs, m.mimg, m.group_maps)


def write_melodic(out_dir: str | os.PathLike, outputs: FitOutputs, *, tr: float | None = None,
                  mean_img: Any | None = None, force: bool = False, space_img: Any | None = None) -> Path:
    """Write a fit as a MELODIC ``*.ica`` folder (see the module docstring).

    Parameters
    ----------
    out_dir : path
        The folder (FSLeyes recognises it when its name ends in ``.ica``).
    outputs : FitOutputs
        The fit: its group maps, its time courses (one array per run, concatenated in this
        order into ``melodic_mix``) and its explained variance (written to
        ``melodic_ICstats`` as percent of the explained variance and percent of the total;
        the total defaults to the sum of the shares). Subject maps are not written.
    tr : float, optional
        Repetition time, written as ``pixdim[4]`` of ``melodic_IC`` (default: the first
        run's ``tr``).
    mean_img : image or path, optional
        Background image for ``mean.nii.gz`` (default: the mask as float32).
    force : bool, default=False
        Replace an existing ``out_dir``.
    space_img : image or path, optional
        An input run whose qform/sform codes the images get (when it lies on the mask's
        grid); default: the first run's ``path``, else the mask's own codes.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    _refuse_existing(out, force)
    checked = _check_melodic(outputs, tr, mean_img, space_img)
    with atomic_output_dir(out, force=force) as root:
        _write_melodic(root, checked)
    return out


def gift_subjects(runs: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """GIFT's (subject number, session number), both 1-based, for each run.

    Subjects are numbered in order of first appearance of their ``sub`` entity; a
    subject's runs are its sessions, in order.
    """
    subjects: dict[str, int] = {}
    sessions: dict[str, int] = {}
    out = []
    for r in runs:
        sub = run_entities(r)["sub"]
        subjects.setdefault(sub, len(subjects) + 1)
        sessions[sub] = sessions.get(sub, 0) + 1
        out.append((subjects[sub], sessions[sub]))
    return out


@dataclass(frozen=True)
class _Gift:
    """A GIFT folder's contents, checked (nothing written yet)."""

    mimg: Any
    group_maps: np.ndarray
    timecourses: list
    subject_maps: Sequence | None
    runs: list
    prefix: str
    tr: float | None


def _check_gift(outputs: FitOutputs, prefix: str, tr: float | None, space_img: Any) -> _Gift:
    if not prefix or any(c in prefix for c in "/\\ "):
        raise ValueError(f"GIFT prefix {prefix!r} must be a non-empty name without spaces or slashes")
    runs = list(outputs.runs)
    mimg, group_maps, timecourses, subject_maps = _check(outputs.mask_img, outputs.group_maps, outputs.timecourses,
                                                         outputs.subject_maps, runs)
    mimg = with_input_space(mimg, space_img, runs)
    return _Gift(mimg, group_maps, timecourses, subject_maps, runs, prefix, outputs.tr if tr is None else tr)


def _write_gift(root: Path, g: _Gift) -> None:
    prefix, mimg, group_maps = g.prefix, g.mimg, g.group_maps
    numbers = gift_subjects(g.runs)
    names = component_names(group_maps.shape[0])
    agg = _with_tr(unmask(group_maps, mimg, intent="z score", descrip="trends_ivae aggregate maps"), g.tr)
    nib.save(agg, root / f"{prefix}_agg__component_ica_.nii")
    nib.save(agg, root / f"{prefix}_mean_component_ica_s_all_.nii")
    nib.save(_mask_image(mimg), root / f"{prefix}Mask.nii")
    rows = []
    for r, (s, sess), tc, smap in zip(g.runs, numbers, g.timecourses, g.subject_maps or [None] * len(g.runs)):
        tag = f"sub{s:03d}"
        maps = group_maps if smap is None else np.asarray(smap)
        if maps.shape != group_maps.shape:
            raise ValueError(f"the subject maps of {tag} s{sess} must be {group_maps.shape}, got {maps.shape}")
        img = _with_tr(unmask(maps, mimg, intent="z score", descrip=f"trends_ivae {tag} s{sess}"), g.tr)
        nib.save(img, root / f"{prefix}_{tag}_component_ica_s{sess}_.nii")
        tc_img = nib.Nifti1Image(np.asarray(tc, dtype=np.float32), np.eye(4))
        tc_img.header["descrip"] = f"trends_ivae time courses {tag} s{sess}: volumes x components".encode()[:79]
        nib.save(tc_img, root / f"{prefix}_{tag}_timecourses_ica_s{sess}_.nii")
        ents = run_entities(r)
        rows.append({"gift_subject": tag, "gift_session": f"s{sess}", "sub": ents["sub"],
                     "ses": ents.get("ses", "n/a"), "task": ents.get("task", "n/a"),
                     "run": ents.get("run", "n/a"), "n_volumes": int(tc.shape[0]),
                     "file": str(r.get("path", "n/a"))})
    pd.DataFrame(rows).to_csv(root / f"{prefix}_subjects.tsv", sep="\t", index=False)
    (root / f"{prefix}_components.tsv").write_text(
        "index\tname\n" + "".join(f"{i + 1}\t{n}\n" for i, n in enumerate(names)))


def write_gift(out_dir: str | os.PathLike, outputs: FitOutputs, *, prefix: str = "trends_ivae",
               tr: float | None = None, force: bool = False, space_img: Any | None = None) -> Path:
    """Write a fit under GIFT's file names (see the module docstring).

    Parameters
    ----------
    out_dir : path
        Output folder.
    outputs : FitOutputs
        The fit: its group maps (written as the aggregate maps), its runs (``sub`` or a
        BIDS ``path`` at least), one time-course array per run and the subject maps (one
        per run; None: the group maps).
    prefix : str, default="trends_ivae"
        GIFT's output prefix.
    tr : float, optional
        Written as ``pixdim[4]`` of the 4-D maps (default: the first run's ``tr``).
    force : bool, default=False
        Replace an existing ``out_dir``.
    space_img : image or path, optional
        An input image whose qform/sform codes the maps and mask get (when it lies on the
        mask's grid); default: the first run's ``path``.

    Returns
    -------
    out_dir : Path
        The folder written, whole (an existing one replaced only with ``force``).
    """
    out = Path(out_dir)
    _refuse_existing(out, force)
    checked = _check_gift(outputs, prefix, tr, space_img)
    with atomic_output_dir(out, force=force) as root:
        _write_gift(root, checked)
    return out


def write_layout(layout: str, out_dir: str | os.PathLike, outputs: FitOutputs, *, force: bool = False,
                 tr: float | None = None, mean_img: Any | None = None, prefix: str = "trends_ivae") -> Path:
    """Write a fit in one of :data:`LAYOUTS` (the writer ``--layout`` selects), atomically.

    :func:`write_layout_files` into a folder staged by
    :func:`~trends_ivae.export.outputs.atomic_output_dir` (an existing ``out_dir`` is
    refused unless ``force``, and then replaced only when it holds nothing but the tool's
    own files).

    Returns
    -------
    Path
        ``out_dir``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    with atomic_output_dir(out, force=force) as root:
        write_layout_files(layout, root, outputs, tr=tr, mean_img=mean_img, prefix=prefix)
    return out


def write_layout_files(layout: str, root: str | os.PathLike, outputs: FitOutputs, *, tr: float | None = None,
                       mean_img: Any | None = None, prefix: str = "trends_ivae") -> None:
    """Write a fit's files in one of :data:`LAYOUTS` into ``root``, a folder being staged.

    ``bids`` writes :func:`~trends_ivae.export.derivatives.write_derivatives`' files;
    ``melodic`` :func:`write_melodic`'s (with ``mean_img`` None, the group mean EPI of the
    runs' files, when they all exist, else the mask); ``gift`` :func:`write_gift`'s.
    ``tr`` defaults to the first run's ``tr``. Everything is checked before the first file
    is written (ValueError).

    Parameters
    ----------
    layout : {"bids", "melodic", "gift"}
        The layout.
    root : path
        The folder to write in (typically the one
        :func:`~trends_ivae.export.outputs.atomic_output_dir` yields).
    outputs : FitOutputs
        The fit's maps, time courses, runs and numbers.
    tr : float, optional
        Repetition time of the 4-D images (MELODIC, GIFT).
    mean_img : image or path, optional
        MELODIC's background image.
    prefix : str, default="trends_ivae"
        GIFT's file prefix.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if layout == "bids":
        write_derivative_files(root, outputs)
    elif layout == "melodic":
        if mean_img is None:
            files = [r.get("path") for r in outputs.runs]
            if files and all(f and Path(str(f)).is_file() for f in files):
                try:
                    mean_img = mean_epi(list(dict.fromkeys(str(f) for f in files)), outputs.mask_img)
                except (ValueError, OSError):
                    mean_img = None
        _write_melodic(root, _check_melodic(outputs, tr, mean_img, None))
    else:
        _write_gift(root, _check_gift(outputs, prefix, tr, None))
