"""Shared parameter descriptions of the package: :data:`docdict` and :func:`fill_doc`.

As nilearn's ``nilearn._utils.docs``: each option of the prepare stage is described once
here, under its one name (that of the command line, of ``GroupIVAE`` and of
:data:`~trends_ivae.data.settings.FLAT_OPTIONS`), and a docstring line ``%(name)s``
(alone on its line) is replaced by that description, indented as the line was.
``%(name as field)s`` gives the same description under another name: the settings
dataclass field that holds the option (``%(aux as spec)s`` in
:class:`~trends_ivae.data.settings.AuxSpec`). :mod:`trends_ivae.data.settings` documents
its dataclasses this way, the prepare functions their parameters, and
:class:`~trends_ivae.GroupIVAE` its prepare options.
"""
from __future__ import annotations

import re
from typing import TypeVar

__all__ = ["docdict", "fill_doc", "EXPLAINED_VARIANCE_DEFINITION"]

docdict: dict[str, str] = {}

docdict["confounds"] = """confounds : list of str, optional
    Confound columns to regress out, by name (shell-style patterns allowed, e.g.
    ``"a_comp_cor_0*"``). None: every column of a run's confounds table, when the
    run has one."""
docdict["detrend"] = """detrend : bool, default=True
    Remove a linear trend per voxel and run."""
docdict["standardize"] = """standardize : bool or str, default=False
    False, True (``'zscore_sample'``) or any nilearn strategy (``'psc'``, ...)."""
docdict["high_pass"] = """high_pass : float, optional
    Butterworth high-pass cut-off in Hz (uses the TR)."""
docdict["low_pass"] = """low_pass : float, optional
    Butterworth low-pass cut-off in Hz (uses the TR); above ``high_pass``."""
docdict["smoothing_fwhm"] = """smoothing_fwhm : float, optional
    Gaussian smoothing in mm, applied before masking."""
docdict["resample_to_first"] = """resample_to_first : bool, default=False
    Resample runs (and the mask) whose grid differs from the first run's instead of
    refusing them (continuous interpolation for runs, nearest for the mask)."""
docdict["denoise"] = """denoise : {"simple", "scrubbing", "compcor", "ica_aroma"}, optional
    fMRIPrep denoising by nilearn's ``load_confounds_strategy`` on each run's
    fMRIPrep file, instead of ``confounds``: its confounds are regressed, and the
    volumes its sample mask censors (non-steady-state volumes; with ``scrubbing``
    also high-motion ones) are left out of x and of u. The run table keeps each
    run's acquired volumes and the censored ones."""
docdict["drop_initial"] = """drop_initial : int, default=0
    Drop the first N volumes of every run before cleaning (non-steady-state volumes):
    x, u and the time courses then have N fewer volumes per run, and the run table
    records each run's acquired volumes and the dropped ones. Whatever this says, the
    volumes that a run's confounds table flags in fMRIPrep's
    ``non_steady_state_outlier*`` columns are dropped too (announced once)."""
docdict["aux"] = """aux : str
    The factors of the auxiliary variable u joined with ``+``: ``task`` (BIDS
    events), ``window`` (sliding-window segments), ``subject``, ``run`` or a
    participants.tsv column (see :mod:`trends_ivae.data.auxiliary`)."""
docdict["window"] = """window : int, optional
    Sliding-window length in volumes (needed by the factor ``window``)."""
docdict["step"] = """step : int, optional
    Sliding-window step in volumes; default ``window`` (windows side by side)."""
docdict["hrf_delay"] = """hrf_delay : float, default=0.0
    Seconds added to event onsets before labelling volumes."""
docdict["min_event_duration"] = """min_event_duration : float, optional
    Lengthen shorter events to this many seconds; None: a zero-duration event labels
    the volume that contains its onset."""
docdict["aux_combine"] = """aux_combine : {"concat", "product"}, default="concat"
    Several factors as their one-hot columns side by side (the prior is an MLP of
    them), or as one discrete label per combination that occurs (needs many volumes
    per combination); one factor is discrete labels either way."""
docdict["n_dims"] = """n_dims : int or "auto"
    Dimension d of the shared spatial basis (lowered with a warning when the data
    have fewer voxels or volumes). ``"auto"``: the model order estimated from the
    group's MIGP spectrum by Minka's Laplace approximation, as MELODIC's ``-d 0``
    (:mod:`trends_ivae.reduction.order`), recorded in ``parameters["order"]``."""
docdict["whiten"] = """whiten : bool, default=False
    Scale each component to unit variance (``scale`` is stored for mapping back)."""
docdict["n_keep"] = """n_keep : int, optional
    Rows of MIGP's running matrix (:class:`~trends_ivae.reduction.migp.MIGP`; at least
    ``n_dims``)."""
docdict["subject_dims"] = """subject_dims : int, optional
    Per-subject compression: inside MIGP for ``prepare``; in a participant share the
    number of subject components kept (lossy, smaller). None: no compression."""
docdict["n_jobs"] = """n_jobs : int, default=1
    Workers (subjects in parallel): joblib processes, or the size of a local Dask
    cluster; -1 for all cores; never 0."""
docdict["scheduler"] = """scheduler : {"joblib", "dask"}, default="joblib"
    What runs the per-run and per-subject tasks (:mod:`trends_ivae.data.parallel`);
    the result does not depend on it."""
docdict["dask_address"] = """dask_address : str, optional
    A running Dask scheduler (``tcp://host:8786``) for ``scheduler="dask"``;
    default: a local cluster of ``n_jobs`` workers."""
docdict["cache_dir"] = """cache_dir : path, optional
    Where the cleaned per-subject cache goes (default: a temporary folder, removed
    at the end). With Dask workers on other machines it must be on a file system
    they share."""
docdict["mask"] = """mask : path or nibabel image, optional
    Brain mask on the functional grid. Default for ``prepare``: the intersection of
    ``compute_epi_mask`` over all runs; for a participant share: the runs' fMRIPrep
    brain masks when every run has one, else their EPI masks."""
docdict["tr"] = """tr : float, optional
    Repetition time in seconds; overrides the sidecars and the headers."""
docdict["verbose"] = """verbose : int, default=0
    >0 logs progress at INFO level through ``logging``."""
docdict["progress"] = """progress : bool, default=False
    Progress bars on stderr (tqdm) for the per-run and per-subject passes."""
docdict["settings"] = """settings : PrepareSettings, optional
    The cleaning, u, reduction and compute settings
    (:class:`~trends_ivae.data.settings.PrepareSettings`); default: every default."""

docdict["ica"] = """ica : {"auto", "temporal", "spatial"}, default="auto"
    Which ICA: ``"temporal"`` (volumes are the samples, time courses the sources, u
    from events, windows or subjects) or ``"spatial"`` (voxels are the samples, maps
    the sources, u from space, as GIFT, MELODIC and CanICA; time courses and subject
    maps by back-reconstruction: :mod:`trends_ivae.group.spatial`). ``"auto"``:
    temporal when u has a task factor (runs with events), else spatial; the mode
    that ran is ``ica_``."""
docdict["spatial_aux"] = """spatial_aux : str, default="segments"
    The spatial u (``ica="spatial"`` only): ``"segments"`` (k-means of the voxel
    coordinates), ``"atlas"`` (the parcels of ``aux_atlas``), ``"rbf"`` (radial basis
    functions of position) or several joined by ``+``
    (:mod:`trends_ivae.data.spatial_aux`)."""
docdict["n_segments"] = """n_segments : int or list of int, default=100
    Number of k-means segments of the spatial u; several values: one factor per scale."""
docdict["aux_atlas"] = """aux_atlas : path or image, optional
    A label image on the data's grid whose parcels are the levels of the spatial u
    ``"atlas"``."""
docdict["n_rbf"] = """n_rbf : int, default=32
    Number of radial basis functions of the spatial u ``"rbf"``."""

_PLACEHOLDER = re.compile(r"^([ \t]*)%\((\w+)(?: as (\w+))?\)s[ \t]*$", re.M)
_T = TypeVar("_T")


def fill_doc(obj: _T) -> _T:
    """Replace each line ``%(name)s`` of ``obj``'s docstring by ``docdict[name]``, indented alike.

    A line ``%(name as field)s`` gives ``docdict[name]`` under the name ``field``, followed
    by a line saying which option it is.

    Raises
    ------
    KeyError
        A placeholder names no entry of :data:`docdict`.
    """
    doc = obj.__doc__
    if doc:
        def _sub(m: re.Match) -> str:
            indent, key, field = m.group(1), m.group(2), m.group(3)
            if key not in docdict:
                raise KeyError(f"fill_doc: {getattr(obj, '__qualname__', obj)!r} names no docdict entry {key!r}")
            text = docdict[key]
            if field:
                text = field + text[len(key):] + f"\n    The prepare option ``{key}``."
            return "\n".join(indent + line if line else line for line in text.splitlines())

        obj.__doc__ = _PLACEHOLDER.sub(_sub, doc)
    return obj


#: what the explained variance is (``group.backprojection.explained_variance``), for the
#: sidecars the export writes and for the docs
EXPLAINED_VARIANCE_DEFINITION = (
    "Fraction (0 to 1) of the cleaned data's variance (sum of squares over voxels and volumes, "
    "after cleaning and centring each voxel in time) credited to each component by Johnson's "
    "relative weights (Johnson 2000, Multivariate Behav Res 35:1-19) of the regression of the data on "
    "all time courses: the time courses are replaced by their closest orthonormal set (symmetric, "
    "Loewdin orthogonalisation), the variance each of these explains is shared among the original "
    "time courses by their squared loadings. Each share is >= 0 and the shares add up to the total "
    "(R^2 of the regression on all components, <= 1); for uncorrelated time courses a share is "
    "||z_j beta_j||^2 / ||data||^2.")
