"""``trends-ivae-bids``: trends_ivae as a BIDS App (participant and group levels).

Examples::

    trends-ivae-bids ds/ out/ participant --participant-label 01 --task rest   # one job per subject
    trends-ivae-bids ds/ out/ group --task rest --aux window --window 30 --n-components 20
    trends-ivae-bids ds/ out/ group --derivatives ds/derivatives/fmriprep --space MNI152NLin2009cAsym \\
        --confounds trans_* rot_* --task rest --aux window --window 30     # fMRIPrep input

``participant`` writes each selected subject's share of the prepare stage (mask,
cleaning, subject-level reduction, mean EPI; :mod:`trends_ivae.io.participant`) to
``OUTPUT_DIR/sub-<label>/``, so subjects can run as separate cluster jobs. ``group``
gathers the shares (computing any missing one from the raw data on the way), builds
the shared basis by MIGP, fits the iVAE, maps back and writes the results into
OUTPUT_DIR (BIDS layout), or into ``OUTPUT_DIR/ivae.ica`` / ``OUTPUT_DIR/gift`` with
``--layout melodic|gift``; and a report when the report module is installed. Running
``group`` alone on raw data does everything. OUTPUT_DIR is a derivative dataset with a
``dataset_description.json`` (``GeneratedBy``, ``SourceDatasets``).

The participant level runs its subjects on joblib (``--n-jobs``) or on Dask
(``--scheduler dask``, a local cluster or ``--dask-address`` of a running scheduler,
e.g. one started by dask-jobqueue; see ``docs/scale.md``). A subject that fails does
not stop the others; the run then exits 1 with every failed subject named. Existing
shares made for the same runs with the same cleaning are kept, so **rerunning the
same command picks up where it stopped** (``--force`` recomputes them).

Refused before anything is written: an OUTPUT_DIR inside BIDS_DIR (except under
``BIDS_DIR/derivatives/``), unknown participant labels, existing shares made with
other cleaning options or for other runs (without ``--force``), existing group results
without ``--force``, a group run that finds neither participant shares nor BOLD runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from ._common import (HELP_FORMATTER, Default, add_quiet_option, existing_dir, is_auto, resolve_default_aux,
                      setup_logging, wants_progress)
from .fit import add_model_arguments, check_model_arguments
from .prepare import add_prepare_arguments, check_denoise_arguments, check_scheduler_arguments

log = logging.getLogger("trends_ivae.cli.bids_app")

PROG = "trends-ivae-bids"
#: options of the prepare stage that the participant level fixes (the group level must agree)
CLEAN_OPTIONS = ("detrend", "standardize", "high_pass", "low_pass", "smoothing_fwhm", "confounds", "denoise")
LAYOUT_DIRS = {"melodic": "ivae.ica", "gift": "gift"}


def _build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=HELP_FORMATTER,
        description="trends_ivae BIDS App: identifiable VAE (nonlinear ICA) of a BIDS dataset. "
                    "'participant' prepares each subject (mask, clean, subject-level reduction); "
                    "'group' gathers them, fits the group iVAE and writes maps and time courses.",
    )
    p.add_argument("bids_dir", help="the BIDS dataset (raw; events, sidecars, participants.tsv)")
    p.add_argument("output_dir", help="output folder (a BIDS derivative dataset)")
    p.add_argument("analysis_level", choices=["participant", "group"], help="processing stage")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sel = p.add_argument_group("selection")
    sel.add_argument("--participant-label", nargs="+", metavar="L",
                     help="subjects to process (with or without 'sub-'; default: all)")
    sel.add_argument("--session-label", nargs="+", metavar="S", help="sessions to keep (default: all)")
    sel.add_argument("--task", metavar="T", help="task to keep (default: all)")
    sel.add_argument("--space", metavar="SPACE",
                     help="with --derivatives: the space- of the *_desc-preproc_bold.nii.gz to use")
    sel.add_argument("--derivatives", metavar="DIR",
                     help="fMRIPrep output to take the preprocessed BOLD, brain masks and confounds from")
    add_prepare_arguments(p)
    p.set_defaults(aux=Default("task+window"), window=20)
    add_model_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--layout", choices=["bids", "melodic", "gift"], default="bids",
                     help="group results as BIDS derivatives in OUTPUT_DIR, or a MELODIC folder "
                          "OUTPUT_DIR/ivae.ica, or GIFT files in OUTPUT_DIR/gift")
    out.add_argument("--no-keep-prepared", dest="keep_prepared", action="store_false",
                     help="do not keep prepared.h5 with the group results")
    out.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    out.add_argument("--force", action="store_true", help="overwrite existing shares / group results")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more progress output (-v, -vv)")
    add_quiet_option(out)
    return p


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Path, Path]:
    bids = existing_dir(parser, args.bids_dir, "BIDS_DIR").resolve()
    out = Path(args.output_dir).resolve()
    if _inside(out, bids) and not _inside(out, bids / "derivatives"):
        parser.error(f"OUTPUT_DIR {args.output_dir!r} is inside BIDS_DIR {args.bids_dir!r}; choose a folder "
                     "outside it (or under BIDS_DIR/derivatives/)")
    if out.exists() and not out.is_dir():
        parser.error(f"OUTPUT_DIR {args.output_dir!r} exists and is not a directory")
    if args.derivatives:
        existing_dir(parser, args.derivatives, "--derivatives")
    if args.space and not args.derivatives:
        parser.error("--space goes with --derivatives (raw BIDS data have no space)")
    if args.mask and not Path(args.mask).is_file():
        parser.error(f"--mask {args.mask!r} does not exist or is not a file")
    if args.n_dims is None:   # as many dimensions as components
        args.n_dims = args.n_components
    if not is_auto(args.n_dims) and args.n_dims < 1:
        parser.error("--n-dims must be >= 1 (or auto)")
    if args.tr is not None and args.tr <= 0:
        parser.error("--tr must be positive")
    check_scheduler_arguments(args, parser)
    check_denoise_arguments(args, parser)
    if args.resample_to_first:
        parser.error("--resample-to-first is not supported by the BIDS App (subjects are prepared "
                     "separately); resample the data to one grid first (e.g. fMRIPrep --output-spaces)")
    if args.analysis_level == "group":
        if not is_auto(args.n_components) and not is_auto(args.n_dims) and args.n_components > args.n_dims:
            parser.error(f"--n-components ({args.n_components}) is larger than --n-dims ({args.n_dims})")
        check_model_arguments(args, parser)
    return bids, out


def _available_labels(bids: Path, derivatives: str | None) -> list[str]:
    root = Path(derivatives) if derivatives else bids
    return sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())


def _settings(args, group: bool = True):
    """The prepare settings of the options: cleaning and subject_dims (the participant
    level), and with ``group`` u and the reduction too."""
    from ..io.settings import PrepareSettings

    options = dict(confounds=args.confounds, detrend=args.detrend, standardize=args.standardize,
                   high_pass=args.high_pass, low_pass=args.low_pass, smoothing_fwhm=args.smoothing_fwhm,
                   denoise=args.denoise, subject_dims=args.subject_dims)
    if group:
        options.update(aux=args.aux, window=args.window, step=args.step, hrf_delay=args.hrf_delay,
                       min_event_duration=args.min_event_duration, aux_combine=args.aux_combine,
                       n_dims=args.n_dims, whiten=args.whiten, n_keep=args.n_keep)
    return PrepareSettings.from_options(**options)


def _clean_options(args) -> dict:
    return _settings(args, group=False).clean.to_dict()


def _share_kwargs(args) -> dict:
    return dict(settings=_settings(args, group=False), mask=args.mask, tr=args.tr)


def _dataset_description(out: Path, bids: Path, derivatives: str | None) -> None:
    from .._version import __version__

    sources = [{"URL": bids.as_uri()}]
    if derivatives:
        sources.append({"URL": Path(derivatives).resolve().as_uri()})
    desc = {
        "Name": "trends_ivae: identifiable VAE decomposition",
        "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__,
                         "Description": "identifiable VAE (nonlinear ICA) of fMRI, BIDS App "
                                        "(trends-ivae-bids)"}],
        "SourceDatasets": sources,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".dataset_description.json.tmp"
    tmp.write_text(json.dumps(desc, indent=2) + "\n")
    os.replace(tmp, out / "dataset_description.json")


def _error(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 1


def _find(args, bids: Path, labels):
    from ..io.participant import find_runs

    return find_runs(bids, derivatives=args.derivatives, task=args.task, session=args.session_label,
                     participant_label=labels, space=args.space, with_confounds=bool(args.confounds))


def _share_problem(args, share, runs) -> str | None:
    """Why an existing share cannot stand for this selection and these options (None: it can)."""
    wanted_clean = _clean_options(args)
    diff = sorted(k for k in wanted_clean if share.meta["clean"].get(k) != wanted_clean[k])
    if diff:   # (an option a share predates counts as its default)
        return f"{str(share.path)!r} was made with other cleaning options ({', '.join(diff)})"
    sub_runs = sorted(str(Path(r.img).resolve()) for r in runs)
    if sub_runs and sub_runs != sorted(r["file"] for r in share.meta["runs"]):
        return f"{str(share.path)!r} was made for other runs than this selection selects for sub-{share.subject}"
    return None


def _run_shares(args, by_subject: dict, out: Path):
    """Write the shares of ``by_subject`` under ``out`` on the chosen scheduler; the outcomes, in order."""
    from ..io.parallel import run_tasks
    from ..io.participant import write_participant_share

    kw = dict(_share_kwargs(args), force=True)
    from ..io.progress import progress

    tasks = [(f"sub-{s}", (rs, str(out)), kw) for s, rs in by_subject.items()]
    return progress(run_tasks(write_participant_share, tasks, scheduler=args.scheduler, n_jobs=args.n_jobs,
                              dask_address=args.dask_address),
                    enabled=wants_progress(args), desc="participant", total=len(tasks), unit="subject")


def _participant(args, bids: Path, out: Path, labels: list[str]) -> int:
    """Write each subject's share; existing matching shares are kept (a rerun picks up where it stopped)."""
    from ..io.images import PrepareError
    from ..io.participant import read_share_meta, share_paths

    try:
        runs = _find(args, bids, labels)
    except PrepareError as exc:
        return _error(str(exc))
    by_subject = {s: [r for r in runs if r.subject == s] for s in labels}
    missing = [s for s, rs in by_subject.items() if not rs]
    if missing:
        return _error(f"no BOLD run matches the selection for sub-{', sub-'.join(missing)}")
    todo, kept = {}, []
    for s, rs in by_subject.items():
        path = share_paths(out, s)["share"]
        if path.exists() and not args.force:
            try:
                problem = _share_problem(args, read_share_meta(path), rs)
            except PrepareError as exc:
                problem = str(exc)
            if problem:
                return _error(f"participant output exists and differs: {problem}; pass --force to overwrite it")
            kept.append(s)
            continue
        todo[s] = rs
    for s in kept:
        print(f"sub-{s}: share exists (same runs and cleaning), kept; --force recomputes it")
    failed = {}
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        _dataset_description(out, bids, args.derivatives)
        for o in _run_shares(args, todo, out):
            if o.ok:
                print(f"{o.name}: {len(todo[o.name[4:]])} run(s) prepared -> {o.result['share']}")
            else:
                failed[o.name] = o.error
                print(f"{o.name}: FAILED: {o.error}", file=sys.stderr)
    if failed:
        return _error(f"{len(failed)} of {len(labels)} subject(s) failed: "
                      + "; ".join(f"{k}: {v}" for k, v in failed.items())
                      + f". The other shares are written; rerun the same command to redo only "
                        f"{', '.join(failed)}")
    return 0


def _group_targets(out: Path, layout: str) -> list[Path]:
    if layout == "bids":
        return [out / "group", out / "model", out / "prepared.h5"]
    return [out / LAYOUT_DIRS[layout]]


def _merge(tmp_out: Path, out: Path, layout: str, backup: Path) -> None:
    """Move the fit's output into OUTPUT_DIR, next to the participant shares.

    Whatever it replaces (earlier group results under ``--force``) is first moved into
    ``backup`` (same file system: renames only); when a move fails, everything done is
    undone, so OUTPUT_DIR keeps its previous contents, and the error propagates.
    """
    from ..io.export import MANIFEST_NAME, ForeignFilesError, read_manifest

    journal: list[tuple[Path, Path | None]] = []   # (destination, where its old version went)
    foreign = _foreign_group_files(out, layout)   # again: files a user added while the group stage ran
    if foreign:
        raise ForeignFilesError(out if layout == "bids" else out / LAYOUT_DIRS[layout], foreign)
    ours = read_manifest(out) or set()
    aside = {t.relative_to(out).as_posix() for t in _group_targets(out, layout)}

    def put(src: Path, dest: Path) -> None:
        old = None
        if dest.exists() or dest.is_symlink():
            old = backup / f"{len(journal):05d}-{dest.name}"
            os.replace(dest, old)
        journal.append((dest, old))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)

    backup.mkdir(parents=True, exist_ok=True)
    try:
        for target in _group_targets(out, layout):   # stale group results go aside as a whole
            if target.exists():
                old = backup / f"{len(journal):05d}-{target.name}"
                os.replace(target, old)
                journal.append((target, old))
        if layout != "bids":
            put(tmp_out, out / LAYOUT_DIRS[layout])
            return
        new = read_manifest(tmp_out) or set()
        for item in sorted(tmp_out.rglob("*")):
            if item.is_dir() or item.name in ("dataset_description.json", MANIFEST_NAME):
                continue
            put(item, out / item.relative_to(tmp_out))
        kept = {f for f in ours if not any(f == a or f.startswith(a + "/") for a in aside)}
        _write_group_manifest(out, kept | (new - {"dataset_description.json"}))
    except BaseException:
        for dest, old in reversed(journal):
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest, ignore_errors=True)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            if old is not None:
                os.replace(old, dest)
        raise


def _write_group_manifest(out: Path, files: set[str]) -> None:
    from ..io.export import record_outputs

    record_outputs(out, sorted(files), replace=True)


def _foreign_group_files(out: Path, layout: str) -> list[str]:
    """Files among those a group stage replaces (its targets, the per-run outputs, the report)
    that the tool did not write; a ``--force`` run refuses to touch them."""
    from ..io.export import foreign_files

    if layout != "bids":
        return foreign_files(out / LAYOUT_DIRS[layout])
    within = [t.relative_to(out).as_posix() for t in _group_targets(out, layout) if t.exists()]
    within += [p.relative_to(out).as_posix() for p in out.glob("sub-*/**/func/*_desc-ivae_*")]   # not the shares
    within += ["report.html"] if (out / "report.html").exists() else []
    return foreign_files(out, within=within)


def _report(out: Path) -> None:
    """Write the report; never fail the run for it."""
    from ..report import build_report

    try:
        build_report(out)
    except Exception as exc:  # noqa: BLE001 - the report is optional
        warnings.warn(f"the report could not be written: {exc}", UserWarning, stacklevel=2)


def _group(args, bids: Path, out: Path, labels: list[str] | None) -> int:
    from ..io.images import PrepareError
    from ..io.participant import gather_shares, group_mean_image, read_share_meta, share_paths
    from ..io.store import write_prepared
    from .fit import fit_and_write

    existing = [str(p) for p in _group_targets(out, args.layout) if p.exists()]
    if existing and not args.force:
        return _error(f"group outputs exist ({', '.join(existing)}); pass --force to overwrite them")
    foreign = _foreign_group_files(out, args.layout) if out.is_dir() else []
    if foreign:
        from ..io.export import ForeignFilesError

        return _error(str(ForeignFilesError(out if args.layout == "bids" else out / LAYOUT_DIRS[args.layout],
                                            foreign)))
    not_found = ""
    try:
        runs = _find(args, bids, labels)
    except PrepareError as exc:
        runs, not_found = [], str(exc)
    if labels is None:
        labels = sorted({r.subject for r in runs}
                        | {p.name[4:] for p in out.glob("sub-*") if share_paths(out, p.name)["share"].is_file()})
    if not labels and not_found:
        return _error(f"no participant outputs in {str(out)!r}, and {not_found}")
    if not labels:
        return _error(f"no participant outputs in {str(out)!r} and no BOLD run in {str(bids)!r}"
                      + (f" or {args.derivatives!r}" if args.derivatives else "")
                      + " (run the participant level first, or check the filters)")
    shares, missing = [], []
    for s in labels:
        path = share_paths(out, s)["share"]
        if not path.is_file():
            missing.append(s)
            continue
        try:
            share = read_share_meta(path)
        except PrepareError as exc:
            return _error(str(exc))
        problem = _share_problem(args, share, [r for r in runs if r.subject == s])
        if problem:
            return _error(f"{problem}; use the participant level's options and filters, or rerun it "
                          "with --force")
        shares.append(share)
    no_raw = [s for s in missing if not any(r.subject == s for r in runs)]
    if no_raw:
        if not runs and not shares:
            return _error(f"no participant outputs in {str(out)!r}, and {not_found}" if not_found else
                          f"no participant outputs in {str(out)!r} and no BOLD run in {str(bids)!r} "
                          "(run the participant level first, or check the filters)")
        return _error(f"no participant output and no BOLD run for sub-{', sub-'.join(no_raw)}"
                      + (f" ({not_found})" if not_found else ""))

    setup_logging(args.verbose)
    work = Path(tempfile.mkdtemp(prefix=".trends_ivae_group-", dir=out.parent if not out.exists() else out))
    try:
        if missing:  # computed here, into the work folder (not kept): group alone does everything
            outcomes = list(_run_shares(args, {s: [r for r in runs if r.subject == s] for s in missing},
                                        work / "shares"))
            failed = {o.name: o.error for o in outcomes if not o.ok}
            if failed:
                return _error(f"{len(failed)} subject(s) failed: "
                              + "; ".join(f"{k}: {v}" for k, v in failed.items()))
            shares += [read_share_meta(o.result["share"]) for o in outcomes]
            order = {s: i for i, s in enumerate(labels)}
            shares.sort(key=lambda sh: order[sh.subject])
        resolve_default_aux(args, [r.get("events_text") is not None for sh in shares for r in sh.meta["runs"]],
                            PROG)
        try:
            prepared = gather_shares(shares, _settings(args), verbose=args.verbose,
                                     progress=wants_progress(args))
        except PrepareError as exc:
            return _error(str(exc))
        write_prepared(work / "prepared.h5", prepared)
        args.prepared = str(work / "prepared.h5")
        args.mean_img = group_mean_image(shares)
        args.command = "bids-app group"
        args.checkpoint_dir = None
        args.report = not args.no_report
        tmp_out = work / "out"
        code = fit_and_write(args, tmp_out, source=str(bids),
                             shown_dir=out if args.layout == "bids" else out / LAYOUT_DIRS[args.layout])
        if code:
            return code
        out.mkdir(parents=True, exist_ok=True)
        try:
            _merge(tmp_out, out, args.layout, work / "previous")
            _dataset_description(out, bids, args.derivatives)
        except OSError as exc:
            return _error(f"could not write the group results into {str(out)!r}: {exc} "
                          "(the previous contents are untouched)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_report and args.layout == "bids" and not any(out.glob("*report*")):
        _report(out)
    where = out if args.layout == "bids" else out / LAYOUT_DIRS[args.layout]
    print(f"{PROG}: group results ({args.layout} layout) in {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trends-ivae-bids`` with ``argv`` (``sys.argv[1:]`` when None); return the exit code."""
    from .main import _format_warning

    warnings.formatwarning = _format_warning
    parser = _build_parser()
    args = parser.parse_args(argv)
    bids, out = _check_args(args, parser)
    labels = None
    if args.participant_label:
        labels = [s[4:] if s.startswith("sub-") else s for s in args.participant_label]
        available = _available_labels(bids, args.derivatives)
        unknown = [s for s in labels if s not in available]
        if unknown and not (args.analysis_level == "group" and all(
                (out / f"sub-{s}").is_dir() for s in unknown)):
            parser.error(f"unknown participant label(s) {', '.join(unknown)}; "
                         f"{'the derivatives' if args.derivatives else 'BIDS_DIR'} has "
                         f"{', '.join(available) or 'no sub-* folder'}")
    elif args.analysis_level == "participant":
        labels = _available_labels(bids, args.derivatives)
        if not labels:
            parser.error(f"no sub-* folder in {args.derivatives or args.bids_dir!r}")
    setup_logging(args.verbose)
    if args.analysis_level == "participant":
        return _participant(args, bids, out, labels)
    return _group(args, bids, out, labels)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
