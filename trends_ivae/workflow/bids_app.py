"""The BIDS App's two stages as functions: participant shares, then the group fit.

:func:`participant_stage` writes each selected subject's share of the prepare stage
(:func:`trends_ivae.reduction.participant.write_participant_share`) under ``OUTPUT_DIR/sub-<label>/``,
keeping existing shares made for the same runs with the same cleaning (a rerun picks up
where it stopped). :func:`group_stage` gathers the shares (computing missing ones from the
raw data, not kept), fits the group iVAE with :func:`~trends_ivae.workflow.fit.fit_to_folder`
into a temporary folder and moves the results into OUTPUT_DIR beside the shares
(:func:`~trends_ivae.workflow.merge.merge_group_outputs`). ``trends-ivae-bids`` parses
argv into the arguments of these two; the participant stage never imports torch.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.errors import PrepareError
from ..data.settings import PrepareSettings
from .choices import Notify, with_resting_aux
from .fit import FitResult, FitSettings, OutputSettings, WorkflowError, fit_to_folder, write_report
from .merge import LAYOUT_DIRS, foreign_group_files, group_targets, merge_group_outputs

__all__ = ["BidsSelection", "ParticipantResult", "participant_stage", "group_stage", "write_description"]

#: how the BIDS App names itself in dataset_description.json
APP = "BIDS App (trends-ivae-bids)"


@dataclass
class BidsSelection:
    """Which runs of a BIDS dataset the stages use.

    Attributes
    ----------
    bids_dir : Path
        The raw BIDS dataset (events, sidecars, participants.tsv).
    derivatives : Path, optional
        fMRIPrep output to take the preprocessed BOLD, brain masks and confounds from.
    task : str, optional
        Task to keep (default: all).
    sessions : list of str, optional
        Sessions to keep (default: all).
    space : str, optional
        With ``derivatives``: the ``space-`` of the BOLD files to use.
    labels : list of str, optional
        Subjects (without ``sub-``); None: every subject found (the group stage also
        takes every subject with a share in the output folder).
    """

    bids_dir: Path
    derivatives: Path | None = None
    task: str | None = None
    sessions: list[str] | None = None
    space: str | None = None
    labels: list[str] | None = None

    def find(self, with_confounds: bool, labels: Sequence[str] | None = None) -> list:
        """The selected runs (:func:`trends_ivae.reduction.participant.find_runs`)."""
        from ..reduction.participant import find_runs

        return find_runs(self.bids_dir, derivatives=self.derivatives, task=self.task, session=self.sessions,
                         participant_label=list(labels) if labels is not None else self.labels,
                         space=self.space, with_confounds=with_confounds)

    def where(self) -> str:
        """The dataset searched, for messages."""
        return repr(str(self.bids_dir)) + (f" or {str(self.derivatives)!r}" if self.derivatives else "")


@dataclass
class ParticipantResult:
    """What :func:`participant_stage` did, subject by subject.

    Attributes
    ----------
    kept : list of str
        Subjects whose existing share was kept (same runs and cleaning).
    written : dict
        Subject -> (number of runs, the share's path).
    failed : dict
        ``sub-<label>`` -> why it failed (the other subjects' shares are written).
    n_subjects : int
        Subjects selected.
    """

    kept: list[str] = field(default_factory=list)
    written: dict[str, tuple[int, Path]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    n_subjects: int = 0

    def problem(self) -> str | None:
        """The error of a run with failed subjects (None when none failed)."""
        if not self.failed:
            return None
        return (f"{len(self.failed)} of {self.n_subjects} subject(s) failed: "
                + "; ".join(f"{k}: {v}" for k, v in self.failed.items())
                + f". The other shares are written; rerun the same command to redo only {', '.join(self.failed)}")


def write_description(out: Path, selection: BidsSelection) -> None:
    """OUTPUT_DIR's ``dataset_description.json`` (:func:`trends_ivae.export.outputs.dataset_description`:
    a derivative of the raw data and of the fMRIPrep derivatives)."""
    from ..export.guard import ForeignOutputError
    from ..export.outputs import write_dataset_description

    desc = out / "dataset_description.json"
    if (desc.exists() or desc.is_symlink()) and (desc.is_symlink() or "trends_ivae" not in _text(desc)):
        raise WorkflowError(str(ForeignOutputError(desc, "OUTPUT_DIR")))
    sources = [selection.bids_dir] + ([selection.derivatives] if selection.derivatives else [])
    write_dataset_description(out, sources=[Path(s).resolve().as_uri() for s in sources], app=APP)


def _text(path: Path) -> str:
    """The text of ``path``, or "" when it cannot be read as text."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _share_problem(share, runs, clean: dict) -> str | None:
    """Why an existing share cannot stand for this selection and cleaning (None: it can)."""
    diff = sorted(k for k in clean if share.meta["clean"].get(k) != clean[k])
    if diff:   # (an option a share predates counts as its default)
        return f"{str(share.path)!r} was made with other cleaning options ({', '.join(diff)})"
    sub_runs = sorted(str(Path(r.img).resolve()) for r in runs)
    if sub_runs and sub_runs != sorted(r["file"] for r in share.meta["runs"]):
        return f"{str(share.path)!r} was made for other runs than this selection selects for sub-{share.subject}"
    return None


def _run_shares(by_subject: dict, out: Path, settings: PrepareSettings, mask: Any, tr: float | None,
                progress: bool):
    """Write the shares of ``by_subject`` under ``out`` on the chosen scheduler; the outcomes, in order."""
    from ..data.parallel import run_tasks
    from ..reduction.participant import write_participant_share
    from ..data.progress import progress as bar

    kw = dict(settings=settings, mask=mask, tr=tr, force=True)
    tasks = [(f"sub-{s}", (rs, str(out)), kw) for s, rs in by_subject.items()]
    c = settings.compute
    return bar(run_tasks(write_participant_share, tasks, scheduler=c.scheduler, n_jobs=c.n_jobs,
                         dask_address=c.dask_address),
               enabled=progress, desc="participant", total=len(tasks), unit="subject")


def _refuse_foreign_share(paths: dict[str, Path]) -> None:
    """Refuse when a subject's share paths hold something the tool did not write: a share
    file that is not a readable share, or a mask or mean image where no share is."""
    from ..export.guard import ForeignOutputError
    from ..reduction.participant import read_share_meta

    share = paths["share"]
    own = False
    if share.exists() or share.is_symlink():
        try:
            own = not share.is_symlink() and read_share_meta(share) is not None
        except (PrepareError, OSError, ValueError, KeyError):
            own = False
        if not own:
            raise WorkflowError(str(ForeignOutputError(share, "OUTPUT_DIR")))
    for p in (paths["mask"], paths["mean"]):
        if (p.exists() or p.is_symlink()) and not own:
            raise WorkflowError(str(ForeignOutputError(p, "OUTPUT_DIR")))


def participant_stage(selection: BidsSelection, out: Path, settings: PrepareSettings, *, mask: Any = None,
                      tr: float | None = None, force: bool = False, progress: bool = False) -> ParticipantResult:
    """Write each selected subject's share under ``out``; keep existing matching ones.

    Parameters
    ----------
    selection : BidsSelection
        The runs; ``selection.labels`` must name the subjects.
    out : Path
        OUTPUT_DIR; it also receives ``dataset_description.json`` when a share is written.
    settings : PrepareSettings
        The share uses the cleaning, ``reduction.subject_dims`` and the compute settings.
    mask, tr
        The brain mask and TR override.
    force : bool, default=False
        Recompute existing shares.
    progress : bool, default=False
        A progress bar over the subjects.

    Returns
    -------
    ParticipantResult
        Including the failed subjects (:meth:`ParticipantResult.problem`).

    Raises
    ------
    WorkflowError
        No run for a selected subject, or an existing share made otherwise (without ``force``).
    """
    from ..reduction.participant import read_share_meta, share_paths

    labels = list(selection.labels or [])
    try:
        runs = selection.find(with_confounds=bool(settings.clean.confounds))
    except PrepareError as exc:
        raise WorkflowError(str(exc)) from exc
    by_subject = {s: [r for r in runs if r.subject == s] for s in labels}
    missing = [s for s, rs in by_subject.items() if not rs]
    if missing:
        raise WorkflowError(f"no BOLD run matches the selection for sub-{', sub-'.join(missing)}")
    result, todo = ParticipantResult(n_subjects=len(labels)), {}
    clean = settings.clean.to_dict()
    for s, rs in by_subject.items():
        paths = share_paths(out, s)
        path = paths["share"]
        _refuse_foreign_share(paths)   # a file of the user's at a share's paths: never replaced, --force or not
        if path.exists() and not force:
            try:
                problem = _share_problem(read_share_meta(path), rs, clean)
            except PrepareError as exc:
                problem = str(exc)
            if problem:
                raise WorkflowError(f"participant output exists and differs: {problem}; pass --force to "
                                    "overwrite it")
            result.kept.append(s)
            continue
        todo[s] = rs
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        write_description(out, selection)
        for o in _run_shares(todo, out, settings, mask, tr, progress):
            if o.ok:
                result.written[o.name[4:]] = (len(todo[o.name[4:]]), Path(o.result["share"]))
            else:
                result.failed[o.name] = str(o.error)
    return result


def _gather_inputs(selection: BidsSelection, out: Path, settings: PrepareSettings):
    """The subjects' shares in ``out`` (read), the subjects without one, and the selected runs."""
    from ..reduction.participant import read_share_meta, share_paths

    not_found, labels = "", selection.labels
    try:
        runs = selection.find(with_confounds=bool(settings.clean.confounds), labels=labels)
    except PrepareError as exc:
        runs, not_found = [], str(exc)
    if labels is None:
        labels = sorted({r.subject for r in runs}
                        | {p.name[4:] for p in out.glob("sub-*") if share_paths(out, p.name)["share"].is_file()})

    def nothing(where: str) -> WorkflowError:
        return WorkflowError(f"no participant outputs in {str(out)!r}, and {not_found}" if not_found else
                             f"no participant outputs in {str(out)!r} and no BOLD run in {where}"
                             " (run the participant level first, or check the filters)")

    if not labels:
        raise nothing(selection.where())
    shares, missing, clean = [], [], settings.clean.to_dict()
    for s in labels:
        path = share_paths(out, s)["share"]
        if not path.is_file():
            missing.append(s)
            continue
        try:
            share = read_share_meta(path)
        except PrepareError as exc:
            raise WorkflowError(str(exc)) from exc
        problem = _share_problem(share, [r for r in runs if r.subject == s], clean)
        if problem:
            raise WorkflowError(f"{problem}; use the participant level's options and filters, or rerun it "
                                "with --force")
        shares.append(share)
    no_raw = [s for s in missing if not any(r.subject == s for r in runs)]
    if no_raw:
        if not runs and not shares:
            raise nothing(repr(str(selection.bids_dir)))
        raise WorkflowError(f"no participant output and no BOLD run for sub-{', sub-'.join(no_raw)}"
                            + (f" ({not_found})" if not_found else ""))
    return labels, shares, missing, runs


def group_stage(selection: BidsSelection, out: Path, settings: PrepareSettings, *, mask: Any = None,
                tr: float | None = None, fit: FitSettings | None = None, output: OutputSettings | None = None,
                choose_aux: bool = False, arguments: Mapping[str, Any] | None = None, verbose: int = 0,
                progress: bool = False, notify: Notify | None = None) -> FitResult:
    """Gather the shares, build the shared basis, fit, and write the group results into ``out``.

    Parameters
    ----------
    selection : BidsSelection
        The runs (``labels`` None: every subject found, or with a share in ``out``).
    out : Path
        OUTPUT_DIR. The results go there (BIDS layout) or to ``out/ivae.ica`` /
        ``out/gift``; the participant shares and other files beside them are kept.
    settings : PrepareSettings
        All of the prepare stage's settings (the shares must have been made with the
        same cleaning).
    mask, tr
        For shares computed here (subjects without one).
    fit, output : FitSettings, OutputSettings
        As for :func:`~trends_ivae.workflow.fit.fit_to_folder`. ``output.report``: the
        report is written in ``out`` once the results are in place.
    choose_aux : bool, default=False
        u was left at its default (see :func:`~trends_ivae.workflow.choices.resting_aux`).
    arguments : mapping, optional
        Recorded in ``model/config.json``.
    verbose : int, default=0
        >0 logs the gathering.
    progress : bool, default=False
        Progress bars.
    notify : callable, optional
        Receives the notes on choices made.

    Returns
    -------
    FitResult
        ``out_dir`` is where the results are.

    Raises
    ------
    WorkflowError
        Existing group results without ``output.force``, foreign files among them,
        missing or mismatched shares, a preparation or fit failure, or a failed move
        (OUTPUT_DIR then keeps its previous contents).
    """
    from ..export.outputs import ForeignFilesError
    from ..reduction.participant import gather_shares, group_mean_image, read_share_meta
    from ..data.store import write_prepared

    fit, output = fit or FitSettings(), output or OutputSettings()
    foreign = foreign_group_files(out, output.layout) if out.is_dir() else []
    if foreign:   # first: with these, --force would not help either
        where = out if output.layout == "bids" else out / LAYOUT_DIRS[output.layout]
        raise WorkflowError(str(ForeignFilesError(where, foreign)))
    existing = [str(p) for p in group_targets(out, output.layout) if p.exists()]
    if existing and not output.force:
        raise WorkflowError(f"group outputs exist ({', '.join(existing)}); pass --force to overwrite them")
    labels, shares, missing, runs = _gather_inputs(selection, out, settings)

    final = out if output.layout == "bids" else out / LAYOUT_DIRS[output.layout]
    work = Path(tempfile.mkdtemp(prefix=".trends_ivae_group-", dir=out.parent if not out.exists() else out))
    try:
        if missing:  # computed here, into the work folder (not kept): group alone does everything
            outcomes = list(_run_shares({s: [r for r in runs if r.subject == s] for s in missing},
                                        work / "shares", settings, mask, tr, progress))
            failed = {o.name: o.error for o in outcomes if not o.ok}
            if failed:
                raise WorkflowError(f"{len(failed)} subject(s) failed: "
                                    + "; ".join(f"{k}: {v}" for k, v in failed.items()))
            shares += [read_share_meta(o.result["share"]) for o in outcomes]
            order = {s: i for i, s in enumerate(labels)}
            shares.sort(key=lambda sh: order[sh.subject])
        chosen: dict = {}
        if choose_aux:
            settings = with_resting_aux(
                settings, [r.get("events_text") is not None for sh in shares for r in sh.meta["runs"]],
                chosen, notify)
        try:
            prepared = gather_shares(shares, settings, verbose=verbose, progress=progress)
        except PrepareError as exc:
            raise WorkflowError(str(exc)) from exc
        write_prepared(work / "prepared.h5", prepared)
        record = {**(arguments or {}), **({"aux": chosen["aux"]["value"], "chosen": chosen} if chosen else {})}
        result = fit_to_folder(work / "prepared.h5", work / "out", fit=fit,
                               output=OutputSettings(layout=output.layout, keep_prepared=output.keep_prepared,
                                                     report=False, force=output.force),
                               command="bids-app group", arguments=record, source=str(selection.bids_dir),
                               mean_img=group_mean_image(shares), notify=notify)
        out.mkdir(parents=True, exist_ok=True)
        try:
            merge_group_outputs(work / "out", out, output.layout, work / "previous")
            write_description(out, selection)
        except OSError as exc:
            raise WorkflowError(f"could not write the group results into {str(out)!r}: {exc} "
                                "(the previous contents are untouched)") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.out_dir = final
    result.chosen = {**chosen, **result.chosen}
    if output.report and output.layout == "bids":
        result.report, result.report_error = write_report(out)
    return result
