"""Prepare to a file: fMRI runs -> (x, u) -> ``OUT/prepared.h5`` (and its configuration).

:func:`prepare_data` is the prepare stage with the workflows' choices (u for resting
data); :func:`prepare_to_file` also writes the result, as ``trends-ivae prepare`` does.
Neither imports torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.settings import PrepareSettings
from .choices import Notify, with_resting_aux

__all__ = ["OUTPUT_NAME", "CONFIG_NAME", "PrepareRequest", "PrepareResult", "prepare_data", "check_prepare_outputs",
           "prepare_to_file"]

OUTPUT_NAME = "prepared.h5"
CONFIG_NAME = "prepare_config.json"


@dataclass
class PrepareRequest:
    """Runs and how to prepare them: what :func:`prepare_data` (and a fit from runs) prepares.

    Attributes
    ----------
    runs : list of RunSpec
        From :func:`trends_ivae.data.find_bids_runs` or :func:`trends_ivae.data.runs_from_files`.
    settings : PrepareSettings, optional
        Cleaning, u, reduction and compute settings (:class:`trends_ivae.data.settings.PrepareSettings`);
        default: every default.
    mask : path or image, optional
        Brain mask on the runs' grid (default: the intersection of EPI masks).
    tr : float, optional
        Repetition time; overrides the sidecars and headers.
    verbose : int, default=0
        >0 logs progress.
    progress : bool, default=False
        Progress bars on stderr.
    choose_aux : bool, default=False
        u was left at its default: when no run has events, its ``task`` factor is
        dropped (:func:`trends_ivae.workflow.choices.resting_aux`), said and recorded.
    """

    runs: list
    settings: PrepareSettings | None = None
    mask: Any = None
    tr: float | None = None
    verbose: int = 0
    progress: bool = False
    choose_aux: bool = False


@dataclass
class PrepareResult:
    """What :func:`prepare_to_file` wrote.

    Attributes
    ----------
    path : Path
        ``OUT/prepared.h5``.
    config : Path
        ``OUT/prepare_config.json``: the arguments recorded.
    summary : str
        One line: volumes, dimensions, subjects, voxels and u.
    """

    path: Path
    config: Path
    summary: str


def prepare_data(request: PrepareRequest, *, chosen: dict | None = None, notify: Notify | None = None):
    """Mask, clean and reduce the runs of ``request`` (:func:`trends_ivae.reduction.prepare.prepare`).

    Parameters
    ----------
    request : PrepareRequest
        The runs and the options.
    chosen : dict, optional
        Receives the choices made (``aux`` for resting data).
    notify : callable, optional
        Receives a one-line note on each choice.

    Returns
    -------
    PreparedData

    Raises
    ------
    trends_ivae.data.PrepareError
        Input the prepare stage cannot use (the message names the file).
    """
    from ..reduction.prepare import prepare

    runs = list(request.runs)
    settings = request.settings or PrepareSettings()
    if request.choose_aux:
        settings = with_resting_aux(settings, [r.events is not None for r in runs], chosen, notify)
    return prepare(runs, settings, mask=request.mask, tr=request.tr, verbose=request.verbose,
                   progress=request.progress)


def _summary(data) -> str:
    return (f"{data.n_samples} volumes x {data.n_dims} dims, {data.n_subjects} subject(s), "
            f"{data.n_voxels} voxels, u={data.aux['spec']} ({data.u_kind}, {len(data.u_names)} levels)")


def check_prepare_outputs(out_dir: str | Path, force: bool) -> None:
    """Refuse to write ``out_dir/prepared.h5`` and ``out_dir/prepare_config.json`` over files it
    must not replace: one the tool did not write (not in the folder's manifest) never,
    ``force`` or not; the tool's own only with ``force``.

    Raises
    ------
    FileExistsError
        The message names the file and says what to do
        (:class:`~trends_ivae.export.guard.ForeignOutputError` for a file of the user's).
    """
    from ..export.guard import check_output_files

    out_dir = Path(out_dir)
    check_output_files([out_dir / OUTPUT_NAME, out_dir / CONFIG_NAME], force=force, what="--out")


def prepare_to_file(request: PrepareRequest, out_dir: str | Path, *, force: bool = False, arguments: Mapping[str, Any] | None = None,
                    notify: Notify | None = None) -> PrepareResult:
    """Prepare ``runs`` and write ``out_dir/prepared.h5`` and ``out_dir/prepare_config.json``.

    Parameters
    ----------
    request : PrepareRequest
        The runs and how to prepare them.
    out_dir : path
        The folder (created when missing).
    force : bool, default=False
        Replace the ``prepared.h5`` and ``prepare_config.json`` the tool wrote there before
        (files it did not write are never replaced: :func:`check_prepare_outputs`).
    arguments : mapping, optional
        Recorded in ``prepare_config.json`` (the command line's options).
    notify : callable, optional
        Receives the model order chosen for ``n_dims="auto"``.

    Returns
    -------
    PrepareResult

    Raises
    ------
    trends_ivae.data.PrepareError
        Input the prepare stage cannot use.
    FileExistsError
        An output exists that may not be replaced (:func:`check_prepare_outputs`); nothing
        is written.
    OSError
        The files cannot be written; both are written to temporary names first, so the
        previous ones are then intact.
    """
    from ..atomic import write_json_atomic
    from ..data.store import write_prepared
    from ..export.guard import record_output_files

    check_prepare_outputs(out_dir, force)
    data = prepare_data(request, notify=notify)
    if data.parameters.get("order") and notify:
        from ..reduction.order import OrderEstimate

        notify(f"--n-dims auto: {OrderEstimate.from_dict(data.parameters['order']).describe()}")
    out_dir = Path(out_dir)
    target, config = out_dir / OUTPUT_NAME, out_dir / CONFIG_NAME
    check_prepare_outputs(out_dir, force)   # again: preparing gives a user time to put files there
    out_dir.mkdir(parents=True, exist_ok=True)
    write_prepared(target, data, overwrite=True)   # (checked above: absent, or the tool's own with force)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in (arguments or {}).items()}
    write_json_atomic(config, record, default=str, allow_nan=True)
    record_output_files([target, config])
    return PrepareResult(path=target, config=config, summary=_summary(data))
