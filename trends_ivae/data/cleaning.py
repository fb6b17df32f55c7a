"""Masking and cleaning one run at a time (nilearn's masking and signal tools).

The mask is either given (any non-zero voxel, on the grid of the functional images)
or the intersection of nilearn's ``compute_epi_mask`` over every run. Either way,
voxels that are not finite in some run (NaN/inf) or constant over time in some run are
removed from it with a warning naming the file.

Volumes left out (:func:`kept_volumes`): the first ``drop_initial`` of every run, those
that fMRIPrep's ``non_steady_state_outlier*`` confound columns flag (read with nilearn's
``extract_outlier_regressors``; these columns are then not regressed) and, with
``denoise``, those its strategy censors. A leading block of them is cut off before
cleaning; any other is nilearn's ``sample_mask``.

Cleaning a run (:func:`clean_run`): optional smoothing (``smoothing_fwhm``, before
masking), the leading left-out volumes cut off, then ``nilearn.signal.clean`` with ``detrend``, ``standardize``,
Butterworth ``high_pass`` / ``low_pass`` at the run's TR and confounds chosen by
column name; finally each voxel is centred in time (so every run has zero temporal
mean: the "temporally demeaned" input of MIGP) and the result is float32.
"""
from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from .images import ImageLike, PrepareError, image_name, load_4d
from .settings import DENOISE_STRATEGIES, CleanSettings

__all__ = [
    "CleanSettings",
    "read_confounds",
    "confound_columns",
    "confounds_summary",
    "load_run_data",
    "masked_series",
    "run_statistics",
    "epi_mask",
    "clean_run",
    "kept_volumes",
    "non_steady_state_volumes",
    "NON_STEADY_STATE",
    "denoise_confounds",
    "DENOISE_STRATEGIES",
]


#: fMRIPrep's one-hot columns of the non-steady-state volumes at the start of a run
NON_STEADY_STATE = "non_steady_state_outlier*"


def _is_non_steady(column: str) -> bool:
    return fnmatch.fnmatchcase(str(column), NON_STEADY_STATE)


def non_steady_state_volumes(confounds, n_volumes: int, run_name: str = "<run>") -> np.ndarray:
    """The volumes (sorted indices) that a run's confounds table (path, DataFrame, array or
    None) flags in fMRIPrep's ``non_steady_state_outlier*`` columns, by nilearn's
    ``extract_outlier_regressors``; empty without such columns."""
    if confounds is None:
        return np.zeros(0, dtype=int)
    values, names = read_confounds(confounds, None, n_volumes, run_name, with_names=True, outliers=True)
    cols = [i for i, c in enumerate(names) if _is_non_steady(c)]
    if not cols:
        return np.zeros(0, dtype=int)
    table = pd.DataFrame(values[:, cols], columns=[names[i] for i in cols])
    try:
        from nilearn.interfaces.fmriprep.load_confounds_scrub import extract_outlier_regressors
    except ImportError:   # older nilearn: the same rule
        return np.flatnonzero((table.to_numpy() != 0).any(axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # every volume flagged: refused by kept_volumes
        sample_mask = extract_outlier_regressors(table)[0]
    keep = np.ones(n_volumes, dtype=bool)
    if sample_mask is not None:
        keep[:] = False
        keep[np.asarray(sample_mask, dtype=int)] = True
    return np.flatnonzero(~keep)


def kept_volumes(run, settings: CleanSettings, n_volumes: int) -> np.ndarray:
    """Which of the ``n_volumes`` acquired volumes of ``run`` (a RunSpec or an image) are kept.

    Left out: the first ``settings.drop_initial``; those flagged by the run's
    ``non_steady_state_outlier*`` confound columns (:func:`non_steady_state_volumes`);
    with ``settings.denoise``, those its strategy censors (:func:`denoise_confounds`).
    A :class:`PrepareError` names the run when fewer than two volumes would be left.
    """
    img = getattr(run, "img", run)
    name = getattr(run, "name", None) or image_name(img)
    keep = np.ones(n_volumes, dtype=bool)
    keep[:settings.drop_initial] = False
    if settings.denoise:
        keep &= denoise_confounds(img, settings.denoise, n_volumes, name)[1]
    else:
        keep[non_steady_state_volumes(getattr(run, "confounds", None), n_volumes, name)] = False
    if keep.sum() < 2:
        why = [f"drop_initial={settings.drop_initial}"] if settings.drop_initial else []
        why.append(f"denoise={settings.denoise!r}" if settings.denoise else "its non_steady_state_outlier columns")
        raise PrepareError(f"{' and '.join(why)} leave {int(keep.sum())} of the {n_volumes} volumes of {name!r}; "
                           "at least 2 are needed")
    return keep


def confound_columns(confounds, names: Sequence[str] | None, n_volumes: int,
                     run_name: str = "<run>") -> list[str]:
    """The names of the confound columns :func:`read_confounds` regresses for one run
    (checked as it checks them); ``[]`` when the run has no confounds."""
    return read_confounds(confounds, names, n_volumes, run_name, with_names=True)[1]


def confounds_summary(columns_per_run: Sequence[Sequence[str]]) -> dict:
    """What was regressed, for the provenance: the columns (in order of first use) and in
    how many of the runs."""
    seen: list[str] = []
    for cols in columns_per_run:
        seen.extend(c for c in cols if c not in seen)
    return {"columns": seen, "n_runs": int(sum(bool(c) for c in columns_per_run)),
            "n_runs_total": len(columns_per_run)}


def denoise_confounds(img, strategy: str, n_volumes: int,
                      run_name: str | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """The confounds and the kept volumes of one fMRIPrep run, by a nilearn strategy.

    Parameters
    ----------
    img : path
        The run's fMRIPrep output (``*_desc-preproc_bold.nii.gz``; ``ica_aroma``:
        ``*_desc-smoothAROMAnonaggr_bold.nii.gz``), with its
        ``*_desc-confounds_timeseries.tsv`` and ``.json`` in the same folder.
    strategy : {"simple", "scrubbing", "compcor", "ica_aroma"}
        Passed to ``nilearn.interfaces.fmriprep.load_confounds_strategy``.
    n_volumes : int
        Volumes of the run.

    Returns
    -------
    confounds : ndarray, shape (n_volumes, k), or None
        The strategy's confound columns (None when it selects none).
    keep : ndarray of bool, shape (n_volumes,)
        False for the volumes the strategy censors (non-steady-state volumes, and with
        ``scrubbing`` the high-motion ones): nilearn's sample mask.

    Raises
    ------
    PrepareError
        Unknown strategy, an image that is not an fMRIPrep file on disk, missing or
        unreadable confounds files, or a table of another length than the run.
    """
    if strategy not in DENOISE_STRATEGIES:
        raise PrepareError(f"denoise strategy {strategy!r}: use one of {', '.join(DENOISE_STRATEGIES)}")
    if not isinstance(img, (str, Path)):
        raise PrepareError(f"denoise={strategy!r} needs each run as an fMRIPrep file on disk "
                           f"(next to its desc-confounds_timeseries.tsv); run {run_name or '<image>'!r} is not")
    name = run_name or str(img)
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conf, sample_mask = load_confounds_strategy(str(img), denoise_strategy=strategy)
    except Exception as exc:  # noqa: BLE001 - nilearn raises ValueError, FileNotFoundError, KeyError ...
        raise PrepareError(f"denoise={strategy!r}: the fMRIPrep confounds of {name!r} cannot be used "
                           f"({type(exc).__name__}: {exc}); they must be the run's "
                           "*_desc-confounds_timeseries.tsv and .json, next to it") from exc
    values = None
    if conf is not None and conf.shape[1]:
        values = conf.to_numpy(dtype=float)
        if values.shape[0] != n_volumes:
            raise PrepareError(f"denoise={strategy!r}: the fMRIPrep confounds of {name!r} have "
                               f"{values.shape[0]} rows but the run has {n_volumes} volumes")
    keep = np.ones(n_volumes, dtype=bool)
    if sample_mask is not None:
        idx = np.asarray(sample_mask, dtype=int)
        if idx.size and (idx.min() < 0 or idx.max() >= n_volumes):
            raise PrepareError(f"denoise={strategy!r}: the sample mask of {name!r} names volumes beyond "
                               f"its {n_volumes}")
        keep[:] = False
        keep[idx] = True
    return values, keep


def read_confounds(confounds, names: Sequence[str] | None, n_volumes: int,
                   run_name: str = "<run>", *, with_names: bool = False, outliers: bool = False):
    """The confound matrix of one run, ``(n_volumes, n_confounds)`` float64, or None.

    Parameters
    ----------
    confounds : path, DataFrame, ndarray or None
        A TSV with a header (fMRIPrep's ``*_desc-confounds_timeseries.tsv``) or a
        whitespace-separated numeric text file without one (columns ``"0"``, ``"1"``, ...).
    names : list of str or None
        Columns to keep (patterns allowed); None keeps all.
    n_volumes : int
        Expected number of rows.

    with_names : bool
        Return ``(values, column names)`` instead (``(None, [])`` without confounds).
    outliers : bool
        Keep fMRIPrep's ``non_steady_state_outlier*`` columns; by default they are
        left out (their volumes are dropped instead, :func:`kept_volumes`), and a run
        whose chosen columns are all of them has no confounds.

    Raises
    ------
    PrepareError
        Unreadable file, unknown column, or wrong number of rows. Missing values
        (``n/a`` in the first rows of derivative columns) are replaced by the column mean.
    """
    if confounds is None:
        if names:
            raise PrepareError(f"confound columns {list(names)} requested but run {run_name!r} has no confounds file")
        return (None, []) if with_names else None
    label = str(confounds) if isinstance(confounds, (str, Path)) else f"confounds of {run_name!r}"
    if isinstance(confounds, np.ndarray):
        arr = np.atleast_2d(confounds.T).T.astype(float)
        df = pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
    elif isinstance(confounds, pd.DataFrame):
        df = confounds.copy()
    else:
        path = Path(confounds)
        if not path.is_file():
            raise PrepareError(f"confounds file {label!r} does not exist")
        try:
            with open(path) as fh:
                first = fh.readline().split()
            try:
                [float(v) for v in first]
                has_header = False
            except ValueError:
                has_header = True
            if has_header:
                df = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A"])
            else:
                arr = np.loadtxt(path, ndmin=2)
                df = pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
        except Exception as exc:
            raise PrepareError(f"confounds file {label!r} cannot be read: {exc}") from exc
    df.columns = [str(c) for c in df.columns]
    if names:
        chosen: list[str] = []
        for pattern in names:
            hits = [c for c in df.columns if fnmatch.fnmatchcase(c, str(pattern))]
            if not hits:
                raise PrepareError(
                    f"confounds file {label!r} has no column matching {pattern!r} "
                    f"(columns: {list(df.columns)[:20]}{' ...' if df.shape[1] > 20 else ''})"
                )
            chosen.extend(h for h in hits if h not in chosen)
        df = df[chosen]
    if not outliers:
        df = df[[c for c in df.columns if not _is_non_steady(c)]]
        if not df.shape[1]:
            return (None, []) if with_names else None
    try:
        values = df.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise PrepareError(f"confounds file {label!r} has non-numeric values: {exc}") from exc
    if values.shape[0] != n_volumes:
        raise PrepareError(
            f"confounds file {label!r} has {values.shape[0]} rows but run {run_name!r} "
            f"has {n_volumes} volumes"
        )
    if np.isnan(values).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            means = np.nan_to_num(np.nanmean(values, axis=0))
        values = np.where(np.isnan(values), means, values)
    return (values, list(df.columns)) if with_names else values


def _resample_like(image, target: nib.spatialimages.SpatialImage, interpolation="continuous"):
    from nilearn.image import resample_img

    return resample_img(image, target_affine=target.affine, target_shape=target.shape[:3],
                        interpolation=interpolation, force_resample=True, copy_header=True)


def _on_grid(image, target) -> bool:
    return image.shape[:3] == tuple(target.shape[:3]) and np.allclose(image.affine, target.affine, atol=1e-3)


def _checked_image(img: ImageLike, target, resample: bool):
    """The lazily loaded run, resampled to ``target`` when needed and allowed."""
    image = load_4d(img)
    if target is not None and not _on_grid(image, target):
        if not resample:
            raise PrepareError(
                f"functional image {image_name(img)!r} (shape {image.shape[:3]}) is not on the grid of "
                f"the mask / first run (shape {tuple(target.shape[:3])}); pass resample_to_first=True "
                "(--resample-to-first) to resample it"
            )
        image = _resample_like(image, target)
    return image


def _raw_array(image, name: str) -> tuple[np.ndarray, float, float]:
    """The stored array (integers stay integers: half the memory) and its scaling.

    Values are ``raw * slope + inter``.
    """
    try:
        proxy = image.dataobj
        if nib.is_proxy(proxy) and np.dtype(proxy.dtype).kind in "iu":
            raw = np.asanyarray(proxy.get_unscaled())
            slope = float(getattr(proxy, "slope", 1.0))
            inter = float(getattr(proxy, "inter", 0.0))
            if not np.isfinite(slope) or slope == 0:
                slope = 1.0
            if not np.isfinite(inter):
                inter = 0.0
            return raw, slope, inter
        return np.asarray(proxy, dtype=np.float32), 1.0, 0.0
    except PrepareError:
        raise
    except Exception as exc:
        raise PrepareError(f"functional image {name!r} cannot be read: {exc}") from exc


def load_run_data(img: ImageLike, *, target: nib.spatialimages.SpatialImage | None = None,
                  resample: bool = False) -> nib.Nifti1Image:
    """Load a run as a float32 in-memory 4D image, optionally resampled to ``target``'s grid.

    Raises
    ------
    PrepareError
        When the image is bad, or its grid differs from ``target`` and ``resample`` is False.
    """
    image = _checked_image(img, target, resample)
    raw, slope, inter = _raw_array(image, image_name(img))
    data = raw.astype(np.float32)
    if slope != 1.0 or inter != 0.0:
        data *= slope
        data += inter
    return nib.Nifti1Image(data, image.affine)


def masked_series(img: ImageLike, mask: np.ndarray, *, target=None, resample: bool = False,
                  smoothing_fwhm: float | None = None) -> np.ndarray:
    """In-mask time series ``(n_volumes, n_voxels)`` float32 (non-finite values set to 0).

    Without smoothing, integer data are masked before conversion to float, so a run
    costs its on-disk size plus the in-mask floats.
    """
    name = image_name(img)
    image = _checked_image(img, target, resample)
    mask = np.asarray(mask, dtype=bool)
    if smoothing_fwhm:
        from nilearn import masking

        data = load_run_data(image)
        return masking.apply_mask(data, nib.Nifti1Image(mask.astype(np.uint8), data.affine), dtype="f4",
                                  smoothing_fwhm=smoothing_fwhm, ensure_finite=True)
    raw, slope, inter = _raw_array(image, name)
    series = raw[mask].T.astype(np.float32)
    del raw
    if slope != 1.0 or inter != 0.0:
        series *= slope
        series += inter
    if series.dtype.kind == "f" and not np.isfinite(series).all():
        series[~np.isfinite(series)] = 0.0
    return np.ascontiguousarray(series)


def run_statistics(img: ImageLike, *, target=None, resample: bool = False) -> dict:
    """One pass over a run: mean image, and which voxels are finite / vary in time.

    Returns
    -------
    dict
        ``mean`` (3-D float32 with non-finite set to 0), ``finite`` and ``varying``
        (3-D bool), ``affine``.
    """
    image = _checked_image(img, target, resample)
    raw, slope, inter = _raw_array(image, image_name(img))
    if raw.dtype.kind in "iu":
        finite = np.ones(raw.shape[:3], dtype=bool)
        varying = raw.max(axis=3) != raw.min(axis=3)
        mean = raw.mean(axis=3, dtype=np.float64) * slope + inter
    else:
        ok = np.isfinite(raw)
        finite = ok.all(axis=3)
        if not finite.all():
            raw = np.where(ok, raw, 0.0)
        varying = raw.max(axis=3) != raw.min(axis=3)
        mean = raw.mean(axis=3, dtype=np.float64)
    return {"mean": mean.astype(np.float32), "finite": finite, "varying": varying,
            "affine": image.affine}


def epi_mask(mean: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """nilearn's ``compute_epi_mask`` on a mean image, as a 3-D bool array."""
    from nilearn.masking import compute_epi_mask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = compute_epi_mask(nib.Nifti1Image(mean.astype(np.float32), affine))
    return np.asarray(mask.dataobj).astype(bool)


def _mask_of(mask_img) -> nib.spatialimages.SpatialImage:
    """Accept a nibabel mask image or a fitted nilearn masker."""
    if hasattr(mask_img, "mask_img_"):
        return mask_img.mask_img_
    return mask_img


def clean_run(run, mask_img, settings: CleanSettings | dict | None = None,
              tr: float | None = None) -> np.ndarray:
    """Mask and clean one run; the unit of work of the prepare stage.

    Parameters
    ----------
    run : RunSpec or image-like
        The run (a :class:`~trends_ivae.data.bids.RunSpec` brings its confounds; a bare
        image has none).
    mask_img : nibabel image or fitted nilearn masker
        The mask (``PreparedData.mask_img()`` for data prepared earlier).
    settings : CleanSettings or dict, optional
        Cleaning options (``PreparedData.clean_settings`` for data prepared earlier).
    tr : float, optional
        Repetition time in seconds (needed for filtering); defaults to ``run.tr``.

    Returns
    -------
    ndarray, shape (n_kept, n_voxels), float32
        Cleaned, temporally centred time series of the in-mask voxels: the volumes
        :func:`kept_volumes` keeps.
    """
    if settings is None:
        settings = CleanSettings()
    elif isinstance(settings, dict):
        settings = CleanSettings.from_dict(settings)
    img = getattr(run, "img", run)
    name = image_name(img)
    confounds = getattr(run, "confounds", None)
    if tr is None:
        tr = getattr(run, "tr", None)
    mask = _mask_of(mask_img)
    series = masked_series(img, np.asarray(mask.dataobj) > 0, target=mask, resample=settings.resample,
                           smoothing_fwhm=settings.smoothing_fwhm)
    n_volumes = series.shape[0]
    keep = kept_volumes(run, settings, n_volumes)
    if settings.denoise:
        conf = denoise_confounds(img, settings.denoise, n_volumes, name)[0]
    else:
        conf = read_confounds(confounds, settings.confounds, n_volumes, name)
    first = int(np.argmax(keep))   # the leading volumes left out are cut off before cleaning
    series, keep = series[first:], keep[first:]
    conf = None if conf is None else conf[first:]
    sample_mask = None if keep.all() else np.flatnonzero(keep)
    from nilearn import signal

    standardize = settings.standardize
    if standardize is True:
        standardize = "zscore_sample"
    if (settings.high_pass or settings.low_pass) and not tr:
        raise PrepareError(f"filtering {name!r} needs its TR")
    needs_clean = bool(settings.detrend or standardize or settings.high_pass
                       or settings.low_pass or conf is not None or sample_mask is not None)
    if needs_clean:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                series = signal.clean(
                    series, detrend=bool(settings.detrend), standardize=standardize or False,
                    confounds=conf, high_pass=settings.high_pass, low_pass=settings.low_pass,
                    t_r=tr, ensure_finite=False, sample_mask=sample_mask,
                )
        except ValueError as exc:
            raise PrepareError(f"cleaning {name!r} failed: {exc}") from exc
    series = np.asarray(series, dtype=np.float32)
    series -= series.mean(axis=0, keepdims=True)
    return series
