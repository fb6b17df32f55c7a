"""The options of a fit as typed values: checked, then turned into one fit job.

:class:`FitOptions` holds every option of ``trends-ivae fit`` under its command-line
name (dashes as underscores) with the command's defaults. It is how the command line,
``pipelines/group_ivae.py`` (a TOML file) and the Nipype node
(:mod:`trends_ivae.interfaces.nipype`) describe a fit, so the three share one meaning
of each option, one set of checks (:meth:`FitOptions.check`, from
:mod:`trends_ivae.workflow.checks`) and one conversion to the workflow's settings
(:meth:`FitOptions.job`): a :class:`FitJob`, whose fields are the arguments of
:func:`~trends_ivae.workflow.fit_to_folder` (or :func:`~trends_ivae.workflow.fit_distributed`).
:class:`RunSelection` names the runs (a BIDS dataset and its filters, or files).
No heavy imports.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..data.settings import FLAT_OPTIONS, PrepareSettings
from .checks import (OptionError, check_components_fit, check_denoise, check_model_values, check_output_folder,
                     check_prepare_values, check_writable, existing_dir, existing_file)
from .fit import FitSettings, OutputSettings
from .prepare import PrepareRequest

__all__ = ["RunSelection", "FitOptions", "FitJob", "FIT_AUX", "PREPARE_OPTIONS", "OPTION_TYPES", "count_or_auto"]

#: the u of a fit when none is given (without events: its task factor is dropped, and said)
FIT_AUX = "task+window"
#: the options that are :meth:`PrepareSettings.from_options` keywords (``aux`` and ``n_dims`` apart,
#: which the fit resolves first): the names of :data:`~trends_ivae.data.settings.FLAT_OPTIONS`
PREPARE_OPTIONS = tuple(name for name in FLAT_OPTIONS if name not in ("aux", "n_dims"))
#: the choices of the options that have them
CHOICES = {"aux_combine": ("concat", "product"), "scheduler": ("joblib", "dask"),
           "denoise": (None, "simple", "scrubbing", "compcor", "ica_aroma"), "prior": ("gauss", "laplace", "normal"),
           "estimator": ("vae", "flow"), "ica": ("auto", "temporal", "spatial"), "layout": ("bids", "melodic", "gift")}


def count_or_auto(value: Any) -> int | str:
    """A positive count or ``"auto"``, from a number or its text (``--n-components``, ``--n-dims``).

    Raises
    ------
    ValueError
        Neither a whole number nor ``auto``.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return int(value)


#: option -> the type its value is read as (a value of another type is converted)
OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "window": int, "step": int, "hrf_delay": float, "min_event_duration": float, "tr": float, "drop_initial": int, "high_pass": float,
    "low_pass": float, "smoothing_fwhm": float, "n_dims": count_or_auto, "n_keep": int, "subject_dims": int,
    "n_jobs": int, "n_components": count_or_auto, "seed": int, "n_init": int, "max_epochs": int,
    "batch_size": int, "stream_rows": int, "n_rbf": int,
}


@dataclass
class RunSelection:
    """The runs to prepare: a BIDS dataset and its filters, or 4-D files and their companions.

    The names are those of the command-line options (``--bids``, ``--task``, ...,
    ``--func``, ``--events``, ``--confounds-file``, ``--subject``, ``--participants``).
    """

    bids: str | Path | None = None
    task: str | None = None
    session: str | None = None
    run: list[str] | None = None
    participant_label: list[str] | None = None
    space: str | None = None
    func: list[str] | None = None
    events: list[str] | None = None
    confounds_file: list[str] | None = None
    subject: list[str] | None = None
    participants: str | Path | None = None

    def check(self) -> None:
        """:class:`~trends_ivae.workflow.checks.OptionError` for inconsistent inputs or missing files."""
        if bool(self.bids) == bool(self.func):
            raise OptionError("give exactly one of --bids DIR or --func FILE ...")
        if self.bids:
            existing_dir(self.bids, "--bids")
            for opt in ("events", "confounds_file", "subject", "participants"):
                if getattr(self, opt):
                    raise OptionError(f"--{opt.replace('_', '-')} goes with --func, not --bids")
            return
        for f in self.func:
            existing_file(f, "--func")
        for opt in ("events", "confounds_file", "subject"):
            values = getattr(self, opt)
            if values is not None and len(values) != len(self.func):
                raise OptionError(f"--{opt.replace('_', '-')} needs one value per --func ({len(self.func)}), "
                                  f"got {len(values)}")
        for f in (self.events or []) + (self.confounds_file or []):
            existing_file(f, "file")
        if self.participants:
            existing_file(self.participants, "--participants")

    def runs(self, with_confounds: bool = False) -> list:
        """The runs, as ``RunSpec`` objects (``with_confounds``: BIDS runs need their confounds file).

        Raises
        ------
        trends_ivae.data.PrepareError
            No run matches (the message lists what there is), or a file is unusable.
        """
        from ..data.bids import find_bids_runs, runs_from_files

        if self.bids:
            return find_bids_runs(self.bids, task=self.task, session=self.session, run=self.run,
                                  participant_label=self.participant_label, space=self.space,
                                  with_confounds=with_confounds)
        return runs_from_files(self.func, events=self.events, confounds=self.confounds_file,
                               subjects=self.subject, participants=self.participants)


@dataclass
class FitJob:
    """A checked fit: the arguments of :func:`~trends_ivae.workflow.fit_to_folder`.

    ``fit_to_folder(job.data, job.out, fit=job.fit, output=job.output, ...)`` (or
    :func:`~trends_ivae.workflow.fit_distributed` when ``job.distributed``).

    Attributes
    ----------
    data : str or PrepareRequest
        A prepared file (``--prepared``), or the runs and how to prepare them.
    out : Path
        The output folder.
    fit : FitSettings
        The model options.
    output : OutputSettings
        Layout, ``prepared.h5``, report, ``force``.
    checkpoint_dir : path, optional
        Checkpoint every epoch here and resume from it.
    stream_rows : int, optional
        Move the data to the device this many rows at a time.
    distributed : bool, default=False
        One rank of a torchrun job (:func:`~trends_ivae.workflow.fit_distributed`).
    arguments : dict
        The options, as recorded in ``model/config.json``.
    source : str, optional
        The source dataset, recorded in ``dataset_description.json``.
    """

    data: str | Path | PrepareRequest
    out: Path
    fit: FitSettings
    output: OutputSettings
    checkpoint_dir: str | Path | None = None
    stream_rows: int | None = None
    distributed: bool = False
    arguments: dict = field(default_factory=dict)
    source: str | None = None


@dataclass(kw_only=True)
class FitOptions(RunSelection):
    """Every option of ``trends-ivae fit``, by its command-line name, with the command's defaults.

    The input options are those of :class:`RunSelection` (:meth:`check` checks them
    with the others), or ``prepared``. ``aux=None`` is the default u (:data:`FIT_AUX`), which the fit may change for data
    without events (and says so); a u that is given is kept. See ``docs/cli.md`` for
    the meaning of each option.
    """

    out: str | Path
    # input: the runs (RunSelection's fields), or a prepared file
    prepared: str | Path | None = None
    # u
    aux: str | None = None
    aux_combine: str = "concat"
    window: int | None = 20
    step: int | None = None
    hrf_delay: float = 0.0
    min_event_duration: float | None = None
    # masking and cleaning
    tr: float | None = None
    mask: str | Path | None = None
    resample_to_first: bool = False
    confounds: list[str] | None = None
    denoise: str | None = None
    drop_initial: int = 0
    detrend: bool = True
    standardize: bool = False
    high_pass: float | None = None
    low_pass: float | None = None
    smoothing_fwhm: float | None = None
    # reduction and compute
    n_dims: int | str | None = None
    whiten: bool = False
    n_keep: int | None = None
    subject_dims: int | None = None
    n_jobs: int = 1
    cache_dir: str | Path | None = None
    scheduler: str = "joblib"
    dask_address: str | None = None
    # model
    n_components: int | str = 10
    prior: str = "gauss"
    estimator: str = "vae"
    device: str = "auto"
    seed: int = 0
    n_init: int | None = None
    max_epochs: int | None = None
    batch_size: int | None = None
    nonlinearity_test: bool = False
    ica: str = "auto"
    spatial_aux: str = "segments"
    n_segments: Any = 100
    aux_atlas: str | Path | None = None
    n_rbf: int = 32
    # output
    keep_prepared: bool = True
    report: bool = True
    checkpoint_dir: str | Path | None = None
    distributed: bool = False
    stream_rows: int | None = None
    layout: str = "bids"
    force: bool = False
    verbose: int = 0
    quiet: bool = False

    @classmethod
    def from_values(cls, out: str | Path, **values: Any) -> FitOptions:
        """Options from values of any type their option reads (``"12"`` or ``12`` for
        ``n_components``, ``2`` for ``tr``), as the command line reads its text.

        Raises
        ------
        OptionError
            A value that does not convert (the message names the option).
        """
        for name, convert in OPTION_TYPES.items():
            if values.get(name) is not None:
                try:
                    values[name] = convert(values[name])
                except (TypeError, ValueError):
                    raise OptionError(f"--{name.replace('_', '-')}: invalid value {values[name]!r}") from None
        return cls(out=out, **values)

    def selection(self) -> RunSelection:
        """The runs named by the input options."""
        return RunSelection(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunSelection)})

    def reduced_dims(self) -> int | str:
        """``n_dims``, or as many dimensions as components when not given."""
        return self.n_components if self.n_dims is None else self.n_dims

    def check(self) -> int | str:
        """Refuse bad options before any work; the reduced dimension asked for.

        Raises
        ------
        OptionError
            The first option refused (the message names it).
        """
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                shown = ", ".join(c for c in choices if c)
                raise OptionError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: use one of {shown}")
        if sum(bool(v) for v in (self.bids, self.func, self.prepared)) != 1:
            raise OptionError("give exactly one of --bids DIR, --func FILE ... or --prepared FILE")
        if self.distributed and not self.prepared:
            raise OptionError("--distributed trains on a prepared file: run 'trends-ivae prepare' (or the BIDS "
                              "App's participant level) first and pass --prepared FILE")
        n_dims = self.reduced_dims()
        if self.prepared:
            existing_file(self.prepared, "--prepared")
            n_dims = self.n_dims   # (not used: the file has its own)
        else:
            self.selection().check()   # RunSelection's check
            if self.mask:
                existing_file(self.mask, "--mask")
            check_denoise(self.denoise, self.confounds, self.confounds_file)
            check_prepare_values(n_dims, self.tr, self.n_jobs, self.scheduler, self.dask_address)
            check_components_fit(self.n_components, n_dims, ", the reduced dimension", runs=self._headers_runs())
        check_model_values(self.n_components, self.n_init, self.device)
        if self.stream_rows is not None and self.stream_rows < 1:
            raise OptionError("--stream-rows must be >= 1")
        check_output_folder(self.out, self.force)
        if self.checkpoint_dir:
            check_writable(self.checkpoint_dir, "--checkpoint-dir")
        return n_dims

    def _headers_runs(self) -> list | None:
        """The runs to fit, for the checks that read their headers (None when they cannot be
        found: preparing them then says why)."""
        from ..data.errors import PrepareError

        try:
            return self.selection().runs()
        except (PrepareError, OSError, ValueError):
            return None

    def progress(self) -> bool:
        """Progress bars: on a terminal (stderr), unless ``quiet``."""
        return not self.quiet and sys.stderr.isatty()

    def prepare_settings(self, n_dims: int | str) -> PrepareSettings:
        """The :class:`~trends_ivae.data.settings.PrepareSettings` of the prepare options.

        Raises
        ------
        trends_ivae.data.PrepareError
            A value the settings refuse (the message names it).
        """
        return PrepareSettings.from_options(aux=self.aux or FIT_AUX, n_dims=n_dims,
                                            **{name: getattr(self, name) for name in PREPARE_OPTIONS})

    def fit_settings(self) -> FitSettings:
        """The :class:`~trends_ivae.workflow.FitSettings` of the model options (``verbose``: as
        given; else a progress bar on a terminal)."""
        verbose = self.verbose if self.verbose > 0 else int(self.progress())
        return FitSettings.from_options(self, verbose=verbose)

    def record(self, **resolved: Any) -> dict:
        """The options as ``model/config.json`` records them (paths as strings), with the values
        resolved since (``resolved``)."""
        record = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        record["aux"] = self.aux or FIT_AUX
        return record | resolved

    def job(self, n_dims: int | str) -> FitJob:
        """The fit these options ask for (``n_dims`` from :meth:`check`).

        Raises
        ------
        trends_ivae.data.PrepareError
            The runs cannot be found, or a prepare setting is refused.
        """
        if self.prepared:
            data = self.prepared
        else:
            data = PrepareRequest(runs=self.selection().runs(with_confounds=bool(self.confounds)),
                                  settings=self.prepare_settings(n_dims), mask=self.mask, tr=self.tr,
                                  verbose=self.verbose, progress=self.progress(), choose_aux=self.aux is None)
        output = OutputSettings(layout=self.layout, keep_prepared=self.keep_prepared, report=self.report,
                                force=self.force)
        return FitJob(data=data, out=Path(self.out), fit=self.fit_settings(), output=output,
                      checkpoint_dir=self.checkpoint_dir, stream_rows=self.stream_rows,
                      distributed=self.distributed, arguments=self.record(n_dims=n_dims),
                      source=self.bids or self.prepared)
