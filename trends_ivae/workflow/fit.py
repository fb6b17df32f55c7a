"""Fit to a folder: prepared data (or runs) -> GroupIVAE -> a written output folder.

:func:`fit_to_folder` is what ``trends-ivae fit``, ``trends-ivae demo``, the BIDS App's
group stage, the pipelines and the Nipype node run. It takes typed settings, never an
``argparse.Namespace``; a problem the user can fix raises :class:`WorkflowError` with a
one-line message (the command line prints it and exits 1), and nothing partial is left
in the output folder. torch is imported here only when a fit runs (while runs are
prepared, in a background thread: :mod:`.preload`).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .choices import Notify, auto_components
from .fit_record import fit_config, summary_line

__all__ = ["FitSettings", "OutputSettings", "FitResult", "WorkflowError", "fit_to_folder",
           "fit_distributed", "summary_line", "write_report"]


class WorkflowError(Exception):
    """A problem with the input or the output that the user can fix; the message says which.

    The message names the command-line option it concerns (``--prepared``,
    ``--n-components``, ``--checkpoint-dir``), as the workflows mirror the command line.
    """


@dataclass
class FitSettings:
    """The model options of a fit (``trends-ivae fit``'s "model" group).

    Attributes
    ----------
    n_components : int or "auto", default=10
        Number of components; ``"auto"``: Minka's estimate on the prepare stage's MIGP
        spectrum, at most the reduced dimension (:mod:`trends_ivae.reduction.order`).
    prior : {"gauss", "laplace", "normal"}, default="gauss"
        The conditional prior p(z|u); ``"normal"`` is the vanilla VAE.
    estimator : {"vae", "flow"}, default="vae"
        The iVAE (``IVAE``) or the exact-likelihood flow (``IFlow``).
    device : str, default="auto"
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    seed : int, default=0
        The random seed (``random_state``).
    n_init : int, optional
        Restarts; None: 3 in the temporal mode, 1 in the spatial mode (``GroupIVAE``).
    max_epochs, batch_size : int, optional
        Passed to the estimator when given; None: GroupIVAE's choice for the data size.
    nonlinearity_test : bool, default=False
        After the fit, the held-out nonlinearity test (``GroupIVAE.test_nonlinearity``:
        the model against its linear counterpart on held-out subjects, 4 more fits); its
        answer goes into the maps' sidecars, ``model/config.json`` and the report.
    verbose : int, default=0
        Training verbosity (1: a progress bar, 2: a line per epoch).
    n_jobs : int, default=1
        Parallel jobs of GroupIVAE's own prepare steps.
    ica : {"auto", "temporal", "spatial"}, default="auto"
        The mode (``GroupIVAE(ica=...)``); ``"auto"``: temporal when u has a task factor
        (runs with events), else spatial.
    spatial_aux, n_segments, aux_atlas, n_rbf
        The spatial u (``GroupIVAE`` parameters of the same names).
    """

    n_components: int | str = 10
    prior: str = "gauss"
    estimator: str = "vae"
    device: str = "auto"
    seed: int = 0
    n_init: int | None = None
    max_epochs: int | None = None
    batch_size: int | None = None
    nonlinearity_test: bool = False
    verbose: int = 0
    n_jobs: int = 1
    ica: str = "auto"
    spatial_aux: str = "segments"
    n_segments: Any = 100
    aux_atlas: Any = None
    n_rbf: int = 32

    @classmethod
    def from_options(cls, options: Any, **overrides: Any) -> "FitSettings":
        """The settings from any object holding the options as attributes of the same names
        (parsed arguments, :class:`~trends_ivae.workflow.fit_options.FitOptions`); ``overrides`` win."""
        values = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls) if hasattr(options, f.name)}
        return cls(**(values | overrides))

    def estimator_params(self) -> dict:
        """The estimator keyword arguments that were given (GroupIVAE fills in the rest)."""
        params = {}
        if self.max_epochs is not None:
            params["max_epochs"] = self.max_epochs
        if self.batch_size is not None:
            params["batch_size"] = self.batch_size
        return params

    def group_ivae(self, n_components: int, verbose: int | None = None, **params: Any):
        """A ``GroupIVAE`` with these settings (``params``: further constructor arguments)."""
        from ..group.group_ivae import GroupIVAE

        return GroupIVAE(n_components=n_components, prior=self.prior, n_init=self.n_init,
                         estimator=self.estimator, estimator_params=self.estimator_params(), device=self.device,
                         random_state=self.seed, verbose=self.verbose if verbose is None else verbose,
                         ica=self.ica, spatial_aux=self.spatial_aux, n_segments=self.n_segments,
                         aux_atlas=None if self.aux_atlas is None else str(self.aux_atlas), n_rbf=self.n_rbf,
                         **params)


@dataclass
class OutputSettings:
    """What is written and how.

    Attributes
    ----------
    layout : {"bids", "melodic", "gift"}, default="bids"
        BIDS derivatives, an FSL MELODIC ``*.ica`` folder, or GIFT file names
        (:func:`trends_ivae.export.layouts.write_layout`).
    keep_prepared : bool, default=True
        Copy the prepared data into the folder as ``prepared.h5``.
    report : bool, default=True
        Write the report once the outputs are in place: ``report.html`` (BIDS layout),
        ``report/00index.html`` (MELODIC layout); the GIFT layout gets none. A failed report is :attr:`FitResult.report_error`; the
        outputs are kept.
    force : bool, default=False
        Replace an existing folder of the tool's own outputs (never a user's files).
    analyze : bool, default=True
        Write ``analysis/``: static FNC, spectra and the prior's dynamics
        (:func:`trends_ivae.analysis.run.analyze_into_stage`, ``docs/analysis.md``); a
        failure there is announced and the fit's outputs are kept without it.
    """

    layout: str = "bids"
    keep_prepared: bool = True
    report: bool = True
    force: bool = False
    analyze: bool = True


@dataclass
class FitResult:
    """What :func:`fit_to_folder` did.

    Attributes
    ----------
    out_dir : Path
        The folder written.
    n_components : int
        Components fitted (after ``"auto"``).
    summary : str
        The one-line result (:func:`summary_line`).
    seconds : float
        Wall time of the preparation (if any), the fit and the writing.
    chosen : dict
        Choices made for the user, by name (``aux``, ``n_components``), as recorded in
        ``model/config.json`` under ``arguments.chosen``.
    report : Path or None
        The report written, if any.
    report_error : str or None
        Why the report failed (the outputs are complete).
    nonlinearity : dict or None
        The held-out nonlinearity test (``NonlinearityTest.to_dict()``; ``summary`` is its
        answer in one line), when asked for.
    """

    out_dir: Path
    n_components: int
    summary: str
    seconds: float
    chosen: dict = field(default_factory=dict)
    report: Path | None = None
    report_error: str | None = None
    nonlinearity: dict | None = None


def _read(path: str | Path):
    from ..data.store import read_prepared

    try:
        return read_prepared(path)
    except (OSError, KeyError, ValueError) as exc:
        raise WorkflowError(f"cannot use --prepared {str(path)!r}: {exc}") from exc


def _n_components(requested: int | str, prepared, where: str, chosen: dict, notify: Notify | None) -> int:
    """``requested`` resolved against ``prepared`` (``"auto"``) and checked against what the
    data support: the reduced dimension, the smallest subject's volumes and the rank."""
    from ..reduction.order import order_cap, volumes_per_subject

    volumes = volumes_per_subject((r["subject"], r["n_volumes"]) for r in prepared.runs or [])
    try:
        n = auto_components(requested, prepared.parameters, prepared.n_dims, chosen, notify, volumes)
    except ValueError as exc:
        raise WorkflowError(f"{exc}{where and f' ({where})'}") from None
    if n > prepared.n_dims:
        dim = f"of {where} ({prepared.n_dims})" if where else \
            f"({prepared.n_dims}, lowered from --n-dims by the data size)"
        raise WorkflowError(f"--n-components ({n}) is larger than the reduced dimension {dim}")
    cap, reason = order_cap(prepared.parameters, volumes, prepared.n_dims)
    if n > cap:
        raise WorkflowError(f"--n-components ({n}) is more than the data support: {reason}, so no more than "
                            f"{cap} components can be told apart (each subject's maps are regressed on its "
                            f"time courses); give --n-components {cap} or fewer, or auto")
    return n


def write_report(out_dir: str | Path) -> tuple[Path | None, str | None]:
    """Build ``out_dir/report.html``; (the page, None), or (None, why it failed). Never raises."""
    try:
        from .. import report

        return Path(report.build_report(out_dir)), None
    except Exception as exc:  # noqa: BLE001 - the outputs are written; a report failure must not lose them
        return None, f"{type(exc).__name__}: {exc}"


def _check_mode(fit: FitSettings, prepared: Any, training: "_Training") -> None:
    """Refuse, before training, what the spatial mode cannot do (``--ica auto`` resolved on the data)."""
    from ..group.spatial import resolve_ica

    try:
        mode = resolve_ica(fit.ica, prepared.aux)
    except ValueError as exc:
        raise WorkflowError(f"--ica: {exc}") from exc
    if mode != "spatial":
        return
    why = "" if fit.ica == "spatial" else " (--ica auto chose it: these runs have no task events)"
    for asked, option in ((fit.nonlinearity_test, "--nonlinearity-test"), (training.rows is not None, "--distributed")):
        if asked:
            raise WorkflowError(f"{option} needs the temporal mode and this fit is spatial{why}: give --ica temporal, "
                                f"or leave out {option}")


@dataclass(frozen=True)
class _Training:
    """How the estimator trains: checkpoints, streaming, and in a distributed fit the rows
    of this rank and the process group (:func:`fit_distributed`)."""

    checkpoint_dir: str | Path | None = None
    stream_rows: int | None = None
    rows: slice | None = None
    comm: Any = None

    def fit(self, model, prepared) -> None:
        """``model.fit_prepared(prepared, ...)``; WorkflowError on a failure the user can fix."""
        try:
            model.fit_prepared(prepared, checkpoint_dir=self.checkpoint_dir, rows=self.rows,
                               stream_rows=self.stream_rows, **({} if self.comm is None else {"comm": self.comm}))
        except (ValueError, RuntimeError) as exc:
            raise WorkflowError(str(exc)) from exc
        except OSError as exc:   # the only files written while fitting are the checkpoints
            raise WorkflowError(f"could not write a checkpoint in {str(self.checkpoint_dir)!r}: {exc} "
                                "(free some space and rerun: training resumes from the last checkpoint)") from exc


@dataclass(frozen=True)
class _Record:
    """What the records say about the call: the command, its arguments, the source dataset,
    and where notes on choices go."""

    command: str = "fit"
    arguments: Mapping[str, Any] | None = None
    source: str | None = None
    notify: Notify | None = None


def fit_to_folder(data: Any, out_dir: str | Path, *, fit: FitSettings | None = None,
                  output: OutputSettings | None = None, command: str = "fit", arguments: Mapping[str, Any] | None = None,
                  source: str | None = None, mean_img: Any = None, checkpoint_dir: str | Path | None = None,
                  stream_rows: int | None = None, notify: Notify | None = None) -> FitResult:
    """Prepare (or read), fit a group iVAE, map back, and write ``out_dir``.

    Parameters
    ----------
    data : PreparedData, path of a prepared.h5, or PrepareRequest
        What to fit; a request is prepared first (:func:`trends_ivae.workflow.prepare_data`).
    out_dir : path
        The output folder, written whole at the end: the layout's files
        (:func:`trends_ivae.export.layouts.write_layout_files`) and the model's
        (:func:`trends_ivae.group.fit_folder.write_model_folder`: ``model/estimator.pt``,
        ``prior.npz``, ``config.json``, ``elbo.tsv``, and ``prepared.h5``) are staged in one
        temporary folder that replaces it (:func:`trends_ivae.export.outputs.atomic_output_dir`).
    fit : FitSettings, optional
        The model options (default: ``FitSettings()``).
    output : OutputSettings, optional
        Layout, ``prepared.h5``, report, ``force`` (default: ``OutputSettings()``).
    command : str, default="fit"
        What ran, recorded in ``model/config.json``.
    arguments : mapping, optional
        The command-line arguments that led here, recorded in ``model/config.json``
        (``arguments``) with the resolved ``n_components``, ``aux`` and ``chosen``.
    source : str, optional
        The source dataset, recorded in ``dataset_description.json``.
    mean_img : niimg, optional
        A mean EPI image for the MELODIC layout's background.
    checkpoint_dir : path, optional
        Checkpoint every epoch here and resume from it.
    stream_rows : int, optional
        Move the data to the device this many rows at a time.
    notify : callable, optional
        Called with a one-line note on each choice made for the user.

    Returns
    -------
    FitResult

    Raises
    ------
    WorkflowError
        Unreadable prepared data, a preparation failure, more components than
        dimensions, a fit or checkpoint failure, or outputs that cannot be written
        (the previous contents of ``out_dir`` are then untouched).
    """
    return _fit_and_write(data, out_dir, fit or FitSettings(), output or OutputSettings(),
                          _Record(command, arguments, source, notify), mean_img,
                          _Training(checkpoint_dir=checkpoint_dir, stream_rows=stream_rows))


def _prepared_data(data: Any, chosen: dict, notify: Notify | None) -> tuple[Any, str, dict]:
    """(the prepared data, how to name it in messages, choices resolved while preparing)."""
    from ..data.errors import PrepareError
    from .prepare import PrepareRequest, prepare_data

    resolved: dict = {}
    try:
        if isinstance(data, (str, Path)):
            return _read(data), repr(str(data)), resolved
        if isinstance(data, PrepareRequest):
            prepared = prepare_data(data, chosen=chosen, notify=notify)
            if "aux" in chosen:
                resolved["aux"] = chosen["aux"]["value"]
            return prepared, "", resolved
        return data, "the prepared data", resolved
    except PrepareError as exc:
        raise WorkflowError(str(exc)) from exc


def _fit_and_write(data: Any, out_dir: str | Path, fit: FitSettings, output: OutputSettings, call: _Record,
                   mean_img: Any, training: _Training) -> FitResult:
    """:func:`fit_to_folder`, with the training's settings (``rows`` and ``comm`` on rank 0
    of a distributed fit)."""
    from .prepare import PrepareRequest
    from .preload import preload

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    loading = preload() if isinstance(data, PrepareRequest) else None   # torch, while the runs are read
    chosen: dict = {}
    prepared, where, resolved = _prepared_data(data, chosen, call.notify)
    if loading is not None:
        loading.join()
    from ..export.layouts import write_layout_files
    from ..export.outputs import atomic_output_dir
    from ..group.fit_folder import fit_outputs, write_model_folder
    from ..group.group_ivae import GroupIVAE

    n_components = _n_components(fit.n_components, prepared, where, chosen, call.notify)
    record = {**(call.arguments or {}), **resolved, "n_components": n_components}
    if chosen:
        record["chosen"] = {**(record.get("chosen") or {}), **chosen}

    model = fit.group_ivae(n_components, n_jobs=fit.n_jobs,
                           **GroupIVAE.prepare_params(prepared))   # the options that ran, for the records
    _check_mode(fit, prepared, training)
    training.fit(model, prepared)

    fit_seconds = time.perf_counter() - t0
    nonlinearity = model.test_nonlinearity(prepared).to_dict() if fit.nonlinearity_test else None
    config = fit_config(call.command, record, model, prepared, fit, fit_seconds, nonlinearity)
    outputs = fit_outputs(model, prepared, params=config["model"] | {"ivae": config["ivae"], "mode": config["mode"]},
                          source=call.source,
                          nonlinearity_test=nonlinearity)
    try:
        with atomic_output_dir(out_dir, force=output.force) as stage:   # the whole folder, or nothing
            write_layout_files(output.layout, stage, outputs, mean_img=mean_img)
            write_model_folder(stage, model, prepared, config, keep_prepared=output.keep_prepared)
            if output.analyze:
                _analyze_into(stage, model, call.notify)
    except (OSError, ValueError) as exc:
        kept = " (the previous contents are untouched)" if out_dir.exists() else " (nothing was written)"
        raise WorkflowError(f"could not write {str(out_dir)!r}: {exc}{kept}") from exc
    result = FitResult(out_dir=out_dir, n_components=n_components,
                       summary=summary_line(model, prepared, n_components),
                       seconds=time.perf_counter() - t0, chosen=chosen, nonlinearity=nonlinearity)
    if output.report and output.layout in ("bids", "melodic"):
        result.report, result.report_error = write_report(out_dir)
    return result


def _analyze_into(stage: Path, model, notify: Notify | None) -> None:
    """The analysis hook: ``stage/analysis/`` (static FNC, spectra, the prior's dynamics);
    a failure of the computation is announced and leaves no ``analysis/``."""
    import shutil

    from ..analysis.run import ANALYSIS_DIR, analyze_into_stage

    try:
        analyze_into_stage(stage, model)
    except ValueError as exc:
        shutil.rmtree(stage / ANALYSIS_DIR, ignore_errors=True)
        if notify is not None:
            notify(f"analysis/ not written: {exc} (run 'trends-ivae analyze' once fixed)")


def fit_distributed(prepared_path: str | Path, out_dir: str | Path, *, fit: FitSettings,
                    output: OutputSettings | None = None, checkpoint_dir: str | Path | None = None,
                    stream_rows: int | None = None, notify: Notify | None = None,
                    **kwargs: Any) -> FitResult | None:
    """:func:`fit_to_folder` as one rank of a torchrun job (``fit --distributed``).

    Every rank trains on its share of the prepared file's rows
    (:func:`trends_ivae.estimators.distributed.row_share`); rank 0 also writes ``out_dir`` and
    returns its :class:`FitResult`, the other ranks return None. ``kwargs``: the other
    arguments of :func:`fit_to_folder` (``command``, ``arguments``, ``source``,
    ``mean_img``). The process group is set up from torchrun's environment and
    shut down on return.

    Raises
    ------
    WorkflowError
        No usable process group, or as :func:`fit_to_folder`.
    """
    from ..estimators import distributed
    from ..data.store import n_rows, read_meta

    try:
        distributed.init_from_env(fit.device)
    except RuntimeError as exc:
        raise WorkflowError(str(exc)) from exc
    try:
        comm = distributed.ProcessGroupComm()   # passed to the fit explicitly
        rank0 = distributed.rank() == 0
        meta = read_meta(prepared_path)
        try:   # every rank needs the count (rank 0's fit_to_folder finds the same, and says it)
            n = auto_components(fit.n_components, meta["parameters"], int(meta["parameters"]["n_dims"]), {})
        except ValueError as exc:
            raise WorkflowError(str(exc)) from None
        from ..group.spatial import resolve_ica

        if resolve_ica(fit.ica, meta.get("aux")) == "spatial":
            raise WorkflowError("--distributed needs the temporal mode (its samples, volumes, are shared between "
                                "the processes), and this fit would be spatial: give --ica temporal")
        rows = distributed.row_share(n_rows(prepared_path))
        if rank0:
            mean_img = kwargs.pop("mean_img", None)
            return _fit_and_write(prepared_path, out_dir, fit, output or OutputSettings(),
                                  _Record(notify=notify, **kwargs), mean_img,
                                  _Training(checkpoint_dir=checkpoint_dir, stream_rows=stream_rows, rows=rows,
                                            comm=comm))
        _fit_rows(prepared_path, rows, replace(fit, n_components=n), checkpoint_dir, stream_rows, comm)
        return None
    finally:
        distributed.shutdown()


def _fit_rows(prepared_path, rows: slice, fit: FitSettings, checkpoint_dir, stream_rows, comm) -> None:
    """Train on ``rows`` of a prepared file and write nothing (a rank other than 0)."""
    from ..data.store import n_rows, read_aux, read_rows

    x = read_rows(prepared_path, rows, names=("x",))["x"]
    u = read_aux(prepared_path, rows)   # as GroupIVAE.model_u on rank 0 (factors as their codes)
    model = fit.group_ivae(int(fit.n_components), verbose=0)
    model.fit_rows(x, u, n_rows(prepared_path), checkpoint_dir=checkpoint_dir, stream_rows=stream_rows,
                   comm=comm)
