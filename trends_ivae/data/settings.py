"""The options of the prepare stage, as four settings objects documented once.

The prepare stage (:func:`~trends_ivae.reduction.prepare.prepare`, the participant
share and the group step of :mod:`trends_ivae.reduction.participant`) takes its options as
objects, passed whole from function to function as nilearn passes a masker:

:class:`CleanSettings`
    How each run's signal is cleaned (confounds, filters, smoothing, resampling). It
    is stored in ``prepared.h5`` (``parameters["clean"]``) and in each participant
    share, so that new data are cleaned alike.
:class:`AuxSpec`
    How u is built (the factors and their window, delay and combination).
:class:`ReductionSettings`
    The group reduction (the dimension, whitening, MIGP's sizes).
:class:`ComputeSettings`
    Where the per-subject tasks run (workers, scheduler, cache). The result does not
    depend on them, which is why they are apart from :class:`ReductionSettings`.

:class:`PrepareSettings` holds the four, and travels whole: the prepare functions take
it and nothing else for these options. Each option has one name, that of the command
line, of :class:`~trends_ivae.group.group_ivae.GroupIVAE`'s parameters and of
``prepared.h5``'s ``parameters`` (``window``, ``aux_combine``, ``resample_to_first``,
...); :data:`FLAT_OPTIONS` maps each name to the part and field that hold it, and is
the one mapping both ways: :meth:`PrepareSettings.from_options` (names to settings),
:meth:`PrepareSettings.to_options` (back) and :meth:`PrepareSettings.from_record` (the
settings a store records, for what ran). The mask and the TR override are not
settings: they describe the input (an image, the timing of the runs) and are
arguments of the prepare functions.

Every option is described once, in :data:`~trends_ivae.docstrings.docdict`;
:func:`~trends_ivae.docstrings.fill_doc` puts those descriptions into the docstrings here
and in the prepare functions. Each object
checks its values when built and raises :class:`~trends_ivae.data.errors.PrepareError`
(a ``ValueError``) naming the option. No heavy imports: the CLI and the workflows
build these before anything is loaded.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..docstrings import docdict, fill_doc
from .errors import PrepareError

__all__ = ["docdict", "fill_doc", "CleanSettings", "AuxSpec", "ReductionSettings", "ComputeSettings",
           "PrepareSettings", "FLAT_OPTIONS", "DEFAULT_N_DIMS", "DENOISE_STRATEGIES", "SCHEDULERS", "AUTO",
           "is_auto"]

#: default reduced dimension d
DEFAULT_N_DIMS = 30
#: ``n_dims="auto"``: the reduced dimension is the estimated model order
AUTO = "auto"
#: nilearn's fMRIPrep denoising strategies (``load_confounds_strategy``)
DENOISE_STRATEGIES = ("simple", "scrubbing", "compcor", "ica_aroma")
#: what can run the per-subject tasks (:mod:`trends_ivae.data.parallel`)
SCHEDULERS = ("joblib", "dask")


def is_auto(value: Any) -> bool:
    """True for ``"auto"`` (the model order estimated from the data)."""
    return isinstance(value, str) and value.lower() == AUTO


def parse_aux_spec(spec: str | Sequence[str]) -> list[str]:
    """Split ``"task+window"`` (or a list of factor names) into factor names.

    Raises
    ------
    PrepareError
        An empty or repeated factor.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split("+")]
    else:
        parts = [str(p).strip() for p in spec]
    if not parts or any(not p for p in parts):
        raise PrepareError(f"aux spec {spec!r} is malformed; use e.g. 'task', 'window', 'task+subject'")
    if len(set(parts)) != len(parts):
        raise PrepareError(f"aux spec {spec!r} repeats a factor")
    return parts


# -- checks -----------------------------------------------------------------------------
def _bad(owner: str, name: str, value: Any, wanted: str) -> PrepareError:
    return PrepareError(f"{owner}: {name} must be {wanted}, got {value!r}")


def _optional_number(owner: str, name: str, value: Any, *, positive: bool = False,
                     integer: bool = False, minimum: float | None = None) -> Any:
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad(owner, name, value, ("an integer" if integer else "a number") + " or None")
    if value != value:   # NaN
        raise _bad(owner, name, value, "a number")
    if positive and not value > 0:
        raise _bad(owner, name, value, "positive")
    if minimum is not None and value < minimum:
        raise _bad(owner, name, value, f">= {minimum:g}")
    return int(value) if integer else value


def _bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise _bad(owner, name, value, "True or False")
    return bool(value)


class _DictSettings:
    """``to_dict`` / ``from_dict`` for a settings dataclass (JSON-friendly, unknown keys ignored)."""

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        """Inverse of :meth:`to_dict`; keys that are not fields are ignored, missing ones default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


@fill_doc
@dataclass
class CleanSettings(_DictSettings):
    """How runs are cleaned; stored in ``prepared.h5`` so that new data are cleaned alike.

    Attributes
    ----------
    %(detrend)s
    %(standardize)s
    %(high_pass)s
    %(low_pass)s
    %(smoothing_fwhm)s
    %(confounds)s
    %(resample_to_first as resample)s
    %(denoise)s
    %(drop_initial)s
    """

    detrend: bool = True
    standardize: Any = False
    high_pass: float | None = None
    low_pass: float | None = None
    smoothing_fwhm: float | None = None
    confounds: list | None = None
    resample: bool = False
    denoise: str | None = None
    drop_initial: int = 0

    def __post_init__(self) -> None:
        own = "CleanSettings"
        if _optional_number(own, "drop_initial", self.drop_initial, integer=True, minimum=0) is None:
            raise _bad(own, "drop_initial", self.drop_initial, "an integer >= 0")
        self.drop_initial = int(self.drop_initial)
        self.detrend = _bool(own, "detrend", self.detrend)
        if not isinstance(self.standardize, (bool, str)):
            raise _bad(own, "standardize", self.standardize, "True, False or a nilearn strategy name")
        self.high_pass = _optional_number(own, "high_pass", self.high_pass, positive=True)
        self.low_pass = _optional_number(own, "low_pass", self.low_pass, positive=True)
        if self.high_pass is not None and self.low_pass is not None and self.low_pass <= self.high_pass:
            raise PrepareError(f"{own}: low_pass ({self.low_pass:g} Hz) must be above high_pass "
                               f"({self.high_pass:g} Hz)")
        self.smoothing_fwhm = _optional_number(own, "smoothing_fwhm", self.smoothing_fwhm, minimum=0)
        if isinstance(self.confounds, str):
            self.confounds = [self.confounds]
        if self.confounds is not None:
            if not all(isinstance(c, str) for c in self.confounds):
                raise _bad(own, "confounds", self.confounds, "a list of column names")
            self.confounds = list(self.confounds) or None
        self.resample = _bool(own, "resample", self.resample)
        if self.denoise is not None and self.denoise not in DENOISE_STRATEGIES:
            raise PrepareError(f"{own}: denoise strategy {self.denoise!r}: use one of "
                               f"{', '.join(DENOISE_STRATEGIES)}")
        if self.denoise and self.confounds:
            raise PrepareError("give either confounds (column patterns) or denoise (a nilearn fMRIPrep "
                               "strategy), not both")


@fill_doc
@dataclass
class AuxSpec(_DictSettings):
    """How the auxiliary variable u is built (:func:`~trends_ivae.data.auxiliary.build_aux`).

    Attributes
    ----------
    %(aux as spec)s
        Default ``"task"``.
    %(window)s
    %(step)s
    %(hrf_delay)s
    %(min_event_duration)s
    %(aux_combine as combine)s
    """

    spec: str = "task"
    window: int | None = None
    step: int | None = None
    hrf_delay: float = 0.0
    min_event_duration: float | None = None
    combine: str = "concat"

    def __post_init__(self) -> None:
        own = "AuxSpec"
        if not isinstance(self.spec, str):
            if not isinstance(self.spec, Sequence):
                raise _bad(own, "spec", self.spec, "factor names joined with '+'")
            self.spec = "+".join(map(str, self.spec))
        self.spec = "+".join(parse_aux_spec(self.spec))
        self.window = _optional_number(own, "window", self.window, integer=True, minimum=1)
        self.step = _optional_number(own, "step", self.step, integer=True, minimum=1)
        if _optional_number(own, "hrf_delay", self.hrf_delay) is None:
            raise _bad(own, "hrf_delay", self.hrf_delay, "a number of seconds")
        self.min_event_duration = _optional_number(own, "min_event_duration", self.min_event_duration, minimum=0)
        if self.combine not in ("product", "concat"):
            raise PrepareError(f"{own}: combine={self.combine!r}; use 'product' or 'concat'")

    @property
    def factors(self) -> list[str]:
        """The factor names of :attr:`spec`."""
        return self.spec.split("+")

    def record(self, factors: list[dict]) -> dict:
        """The store's ``aux`` attribute: this spec with the factors' levels (``factors``)."""
        return {"spec": self.spec, "factors": factors, "combine": self.combine, "window": self.window,
                "step": self.step if self.step is not None else self.window, "hrf_delay": self.hrf_delay,
                "min_event_duration": self.min_event_duration}


@fill_doc
@dataclass
class ReductionSettings(_DictSettings):
    """The group reduction: one spatial basis V for all subjects (MIGP).

    Attributes
    ----------
    %(n_dims)s
        Default :data:`DEFAULT_N_DIMS` (30).
    %(whiten)s
    %(n_keep)s
    %(subject_dims)s
    """

    n_dims: int | str = DEFAULT_N_DIMS
    whiten: bool = False
    n_keep: int | None = None
    subject_dims: int | None = None

    def __post_init__(self) -> None:
        own = "ReductionSettings"
        if is_auto(self.n_dims):
            self.n_dims = AUTO
        else:
            if isinstance(self.n_dims, bool) or not isinstance(self.n_dims, numbers.Integral):
                raise _bad(own, "n_dims", self.n_dims, f"an integer >= 1 or {AUTO!r}")
            if self.n_dims < 1:
                raise PrepareError(f"n_dims must be >= 1, got {self.n_dims}")
            self.n_dims = int(self.n_dims)
        self.whiten = _bool(own, "whiten", self.whiten)
        self.n_keep = _optional_number(own, "n_keep", self.n_keep, integer=True, minimum=1)
        self.subject_dims = _optional_number(own, "subject_dims", self.subject_dims, integer=True, minimum=1)


@fill_doc
@dataclass
class ComputeSettings(_DictSettings):
    """Where the per-subject tasks of the prepare stage run; the result does not depend on it.

    Attributes
    ----------
    %(n_jobs)s
    %(scheduler)s
    %(dask_address)s
    %(cache_dir)s
    """

    n_jobs: int = 1
    scheduler: str = "joblib"
    dask_address: str | None = None
    cache_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        own = "ComputeSettings"
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral) or self.n_jobs == 0:
            raise _bad(own, "n_jobs", self.n_jobs, "a non-zero integer (-1: all cores)")
        self.n_jobs = int(self.n_jobs)
        if self.scheduler not in SCHEDULERS:
            raise PrepareError(f"{own}: scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.dask_address is not None and not isinstance(self.dask_address, str):
            raise _bad(own, "dask_address", self.dask_address, "an address string such as 'tcp://host:8786'")

    def to_dict(self) -> dict:
        """The fields as a plain dict (``cache_dir`` as a string)."""
        out = super().to_dict()
        out["cache_dir"] = None if self.cache_dir is None else os.fspath(self.cache_dir)
        return out


#: each prepare option's name (that of the command line, ``GroupIVAE`` and ``prepared.h5``'s
#: ``parameters``) -> (part, field) of :class:`PrepareSettings`; the one mapping between them
FLAT_OPTIONS: dict[str, tuple[str, str]] = {
    "confounds": ("clean", "confounds"), "detrend": ("clean", "detrend"),
    "standardize": ("clean", "standardize"), "high_pass": ("clean", "high_pass"),
    "low_pass": ("clean", "low_pass"), "smoothing_fwhm": ("clean", "smoothing_fwhm"),
    "resample_to_first": ("clean", "resample"), "denoise": ("clean", "denoise"),
    "drop_initial": ("clean", "drop_initial"),
    "aux": ("aux", "spec"), "window": ("aux", "window"), "step": ("aux", "step"),
    "hrf_delay": ("aux", "hrf_delay"), "min_event_duration": ("aux", "min_event_duration"),
    "aux_combine": ("aux", "combine"),
    "n_dims": ("reduction", "n_dims"), "whiten": ("reduction", "whiten"),
    "n_keep": ("reduction", "n_keep"), "subject_dims": ("reduction", "subject_dims"),
    "n_jobs": ("compute", "n_jobs"), "scheduler": ("compute", "scheduler"),
    "dask_address": ("compute", "dask_address"), "cache_dir": ("compute", "cache_dir"),
}
_PARTS: dict[str, Callable[..., Any]] = {"clean": CleanSettings, "aux": AuxSpec,
                                         "reduction": ReductionSettings, "compute": ComputeSettings}


@dataclass
class PrepareSettings:
    """The four settings of the prepare stage, passed whole.

    Attributes
    ----------
    clean : CleanSettings
    aux : AuxSpec
    reduction : ReductionSettings
    compute : ComputeSettings
    """

    clean: CleanSettings = field(default_factory=CleanSettings)
    aux: AuxSpec = field(default_factory=AuxSpec)
    reduction: ReductionSettings = field(default_factory=ReductionSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)

    def __post_init__(self) -> None:
        for name, cls in _PARTS.items():
            if not isinstance(getattr(self, name), cls):
                raise PrepareError(f"PrepareSettings.{name} must be a {cls.__name__}, "
                                   f"got {type(getattr(self, name)).__name__}")

    def to_dict(self) -> dict:
        """``{"clean": {...}, "aux": {...}, "reduction": {...}, "compute": {...}}``."""
        return {name: getattr(self, name).to_dict() for name in _PARTS}

    @classmethod
    def from_dict(cls, d: dict) -> "PrepareSettings":
        """Inverse of :meth:`to_dict` (a missing part takes its defaults)."""
        return cls(**{name: part.from_dict((d or {}).get(name) or {}) for name, part in _PARTS.items()})

    @classmethod
    def from_options(cls, **options: Any) -> "PrepareSettings":
        """Settings from options by their names (those of the command line and of ``GroupIVAE``).

        The one place where the options, named as in :data:`FLAT_OPTIONS`, become
        settings; :meth:`to_options` is its inverse.

        Parameters
        ----------
        **options
            Any prepare option by its name: ``aux``, ``window``, ``step``, ``hrf_delay``,
            ``min_event_duration``, ``aux_combine``, ``confounds``, ``detrend``,
            ``standardize``, ``high_pass``, ``low_pass``, ``smoothing_fwhm``,
            ``resample_to_first``, ``denoise``, ``drop_initial``, ``n_dims``, ``whiten``, ``n_keep``,
            ``subject_dims``, ``n_jobs``, ``scheduler``, ``dask_address``,
            ``cache_dir`` (each described in its part's docstring). ``aux=None`` is
            the default u; the others not given take their defaults.

        Returns
        -------
        PrepareSettings

        Raises
        ------
        TypeError
            An option that is no setting.
        PrepareError
            A bad value (the message names the option).
        """
        unknown = sorted(set(options) - set(FLAT_OPTIONS))
        if unknown:
            raise TypeError(f"unknown prepare option(s) {unknown}; known: {sorted(FLAT_OPTIONS)}")
        if options.get("aux", "") is None:   # the default u
            del options["aux"]
        fields: dict[str, dict] = {name: {} for name in _PARTS}
        for opt, value in options.items():
            part, fld = FLAT_OPTIONS[opt]
            fields[part][fld] = value
        return cls(**{name: part_cls(**fields[name]) for name, part_cls in _PARTS.items()})

    def to_options(self, names: Sequence[str] | None = None) -> dict:
        """The options by their names (:data:`FLAT_OPTIONS`), the inverse of :meth:`from_options`.

        Parameters
        ----------
        names : sequence of str, optional
            Only these options (in this order); default: every option.

        Returns
        -------
        dict
            ``PrepareSettings.from_options(**settings.to_options()) == settings``.
        """
        names = list(FLAT_OPTIONS) if names is None else list(names)
        return {name: getattr(getattr(self, FLAT_OPTIONS[name][0]), FLAT_OPTIONS[name][1]) for name in names}

    @classmethod
    def from_record(cls, parameters: dict | None, aux: dict | None = None,
                    n_dims: int | None = None) -> "PrepareSettings":
        """The settings that made a prepared store, from what it records.

        Parameters
        ----------
        parameters : dict
            The store's ``parameters`` (``PreparedData.parameters``).
        aux : dict, optional
            The store's ``aux`` record (``PreparedData.aux``); its u entries win over
            those of ``parameters``.
        n_dims : int, optional
            The reduced dimension of the data (default: ``parameters["n_dims"]``).

        Returns
        -------
        PrepareSettings
            The cleaning, u and reduction that ran (``n_dims`` the dimension reached, also
            when ``"auto"`` was asked), with the compute defaults (they are not recorded).
            Entries that older stores lack take their defaults.
        """
        par, rec = parameters or {}, aux or {}
        clean = dict(par.get("clean") or {})
        clean["resample"] = bool(par.get("resample_to_first", clean.get("resample", False)))
        spec = rec.get("spec", par.get("aux"))
        u = AuxSpec(**({} if spec is None else {"spec": spec}), window=rec.get("window", par.get("window")),
                    step=par.get("step", rec.get("step")), hrf_delay=rec.get("hrf_delay", 0.0),
                    min_event_duration=rec.get("min_event_duration"),
                    combine=rec.get("combine", par.get("aux_combine", "concat")))
        red = ReductionSettings(n_dims=int(n_dims if n_dims is not None else par.get("n_dims", DEFAULT_N_DIMS)),
                                whiten=bool(par.get("whiten", False)), n_keep=par.get("n_keep"),
                                subject_dims=par.get("subject_dims"))
        return cls(clean=CleanSettings.from_dict(clean), aux=u, reduction=red)
