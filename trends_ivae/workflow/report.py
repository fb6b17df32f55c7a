"""The report of a fit folder: ``OUT/report.html`` (or another page).

:func:`report_for_folder` is what ``trends-ivae report`` runs
(:func:`trends_ivae.report.build_report` with typed settings, timed); the fit writes its
report itself (:func:`trends_ivae.workflow.write_report`). Never imports torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .fit import WorkflowError

__all__ = ["ReportSettings", "ReportResult", "FIT_COMPONENTS", "MELODIC_COMPONENTS", "fit_folder_problem",
           "report_page", "check_report_page",
           "report_for_folder"]

#: the file that marks an output folder of ``trends-ivae fit`` (BIDS layout)
FIT_COMPONENTS = Path("group") / "desc-ivae_components.nii.gz"
#: the group maps of a fit written with ``--layout melodic``
MELODIC_COMPONENTS = Path("melodic_IC.nii.gz")


def fit_folder_problem(out_dir: str | Path) -> str | None:
    """Why ``out_dir`` is not a fit folder the report reads (None: it is one, in the BIDS
    or the MELODIC layout)."""
    out = Path(out_dir)
    if (out / FIT_COMPONENTS).is_file() or (out / MELODIC_COMPONENTS).is_file():
        return None
    return (f"{str(out)!r} holds neither {FIT_COMPONENTS.as_posix()} nor {MELODIC_COMPONENTS.as_posix()}: "
            "not an output folder of 'trends-ivae fit' (BIDS or MELODIC layout)")


@dataclass
class ReportSettings:
    """What the report shows and how (``trends-ivae report``'s options).

    Attributes
    ----------
    output : path, optional
        Where to write the page (default: ``OUT/report.html``). An existing file there is
        replaced only when the tool wrote it (:func:`check_report_page`).
    subject : str, optional
        Subject whose time course and spectrum are shown (default: the first).
    atlas : path, optional
        Atlas image in the maps' space (3-D labels or 4-D maps): the region of each peak.
    atlas_labels : path, optional
        The atlas's names (default: a ``.tsv`` next to the atlas image).
    threshold : float, default=2.0
        |z| below which maps are transparent.
    dpi : int, default=120
        Resolution of the figures.
    interactive : bool, default=True
        Include the interactive slice viewer.
    verbose : int, default=0
        Progress output.
    """

    output: str | Path | None = None
    subject: str | None = None
    atlas: str | Path | None = None
    atlas_labels: str | Path | None = None
    threshold: float = 2.0
    dpi: int = 120
    interactive: bool = True
    verbose: int = 0


@dataclass
class ReportResult:
    """What :func:`report_for_folder` wrote.

    Attributes
    ----------
    page : Path
        The HTML page.
    size : int
        Its size in bytes.
    seconds : float
        Wall time.
    """

    page: Path
    size: int
    seconds: float


def report_page(out_dir: str | Path, output: str | Path | None = None) -> Path:
    """Where the report of the fit in ``out_dir`` goes: ``output``, else ``out_dir/report.html``
    (``out_dir/report/00index.html`` in a MELODIC-layout folder, where MELODIC keeps its report)."""
    if output is not None:
        return Path(output)
    out = Path(out_dir)
    melodic = (out / MELODIC_COMPONENTS).is_file() and not (out / FIT_COMPONENTS).is_file()
    return out / "report" / "00index.html" if melodic else out / "report.html"


def check_report_page(page: str | Path, what: str = "--output") -> None:
    """Refuse to write the report onto a file the tool did not write.

    A report page is rebuilt in place without ``--force`` when it is the tool's own (listed
    in the manifest of its folder, or an earlier page with the report's title); any other
    file, folder or link at ``page`` is never replaced.

    Raises
    ------
    WorkflowError
        ``page`` is not the tool's own (the message names ``what`` and the path).
    """
    from ..export.guard import REPORT_MARK, check_output_files

    try:
        check_output_files([page], force=False, what=what, mark=REPORT_MARK, replace_own=True)
    except FileExistsError as exc:
        raise WorkflowError(str(exc)) from exc


def report_for_folder(out_dir: str | Path, settings: ReportSettings | None = None) -> ReportResult:
    """Write the HTML report of the fit in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder of ``trends-ivae fit`` (BIDS or MELODIC layout).
    settings : ReportSettings, optional
        Default: ``ReportSettings()``.

    Returns
    -------
    ReportResult

    Raises
    ------
    WorkflowError
        ``out_dir`` is no fit folder, the page would replace a file the tool did not write
        (:func:`check_report_page`; nothing is written then), or the report cannot be built
        or written (the message says why).
    """
    settings = settings or ReportSettings()
    out_dir = Path(out_dir)
    problem = fit_folder_problem(out_dir)
    if problem:
        raise WorkflowError(problem)
    page_path = report_page(out_dir, settings.output)
    check_report_page(page_path, "--output" if settings.output is not None else "the report page")
    from ..report import build_report  # matplotlib and nilearn are heavy

    t0 = time.perf_counter()
    try:
        page = build_report(out_dir, output=settings.output, subject=settings.subject, atlas=settings.atlas,
                            atlas_labels=settings.atlas_labels, threshold=settings.threshold, dpi=settings.dpi,
                            interactive=settings.interactive, verbose=settings.verbose)
    except (OSError, ValueError) as exc:
        raise WorkflowError(str(exc)) from exc
    page = Path(page)
    from ..export.guard import record_output_files

    record_output_files([page])   # the tool's own from now on: the next report may replace it
    return ReportResult(page=page, size=page.stat().st_size, seconds=time.perf_counter() - t0)
