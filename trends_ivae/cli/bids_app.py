"""``trends-ivae-bids``: trends_ivae as a BIDS App (participant and group levels).

Examples::

    trends-ivae-bids ds/ out/ participant --participant-label 01 --task rest   # one job per subject
    trends-ivae-bids ds/ out/ group --task rest --aux window --window 30 --n-components 20
    trends-ivae-bids ds/ out/ group --derivatives ds/derivatives/fmriprep --space MNI152NLin2009cAsym \\
        --confounds trans_* rot_* --task rest --aux window --window 30     # fMRIPrep input

``participant`` writes each selected subject's share of the prepare stage (mask,
cleaning, subject-level reduction, mean EPI; :mod:`trends_ivae.reduction.participant`) to
``OUTPUT_DIR/sub-<label>/``, so subjects can run as separate cluster jobs. ``group``
gathers the shares (computing any missing one from the raw data on the way), builds
the shared basis by MIGP, fits the iVAE, maps back and writes the results into
OUTPUT_DIR (BIDS layout), or into ``OUTPUT_DIR/ivae.ica`` / ``OUTPUT_DIR/gift`` with
``--layout melodic|gift``; and ``report.html`` (BIDS layout, unless ``--no-report``). Running
``group`` alone on raw data does everything. OUTPUT_DIR is a derivative dataset with a
``dataset_description.json`` (``GeneratedBy``, ``SourceDatasets``).

The participant level runs its subjects on joblib (``--n-jobs``) or on Dask
(``--scheduler dask``, a local cluster or ``--dask-address`` of a running scheduler,
e.g. one started by dask-jobqueue; see ``docs/scale.md``). A subject that fails does
not stop the others; the run then exits 1 with every failed subject named. Existing
shares made for the same runs with the same cleaning are kept, so **rerunning the
same command picks up where it stopped** (``--force`` recomputes them).

This module parses and checks argv; the stages are
:func:`trends_ivae.workflow.participant_stage` and :func:`trends_ivae.workflow.group_stage`.
The participant level never imports torch.

Refused before anything is written: an OUTPUT_DIR inside BIDS_DIR (except under
``BIDS_DIR/derivatives/``), unknown participant labels, existing shares made with
other cleaning options or for other runs (without ``--force``), existing group results
without ``--force``, a group run that finds neither participant shares nor BOLD runs.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

from ._common import HELP_FORMATTER, Default, add_quiet_option, existing_dir, setup_logging, wants_progress
from .main import format_warning
from .options import (add_model_arguments, add_output_arguments, add_prepare_arguments, arguments_record,
                      check_components_fit, check_denoise_arguments, check_model_arguments, check_prepare_arguments,
                      fit_settings, n_dims_of, notifier, prepare_settings, print_fit_result)

PROG = "trends-ivae-bids"


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
    add_output_arguments(out)
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


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Path, Path, int | str]:
    """Refuse bad options (``parser.error``); BIDS_DIR and OUTPUT_DIR resolved, and the reduced dimension."""
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
    n_dims = n_dims_of(args, args.n_components)   # as many dimensions as components
    check_prepare_arguments(args, parser, n_dims)
    check_denoise_arguments(args, parser)
    if args.resample_to_first:
        parser.error("--resample-to-first is not supported by the BIDS App (subjects are prepared "
                     "separately); resample the data to one grid first (e.g. fMRIPrep --output-spaces)")
    if args.analysis_level == "group":
        check_components_fit(args, parser, n_dims)
        check_model_arguments(args, parser)
    return bids, out, n_dims


def _labels(args: argparse.Namespace, parser: argparse.ArgumentParser, bids: Path, out: Path) -> list[str] | None:
    """The subjects to process (None: the group level takes every subject it finds)."""
    root = Path(args.derivatives) if args.derivatives else bids
    available = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if args.participant_label:
        labels = [s[4:] if s.startswith("sub-") else s for s in args.participant_label]
        unknown = [s for s in labels if s not in available]
        if unknown and not (args.analysis_level == "group" and all(
                (out / f"sub-{s}").is_dir() for s in unknown)):
            parser.error(f"unknown participant label(s) {', '.join(unknown)}; "
                         f"{'the derivatives' if args.derivatives else 'BIDS_DIR'} has "
                         f"{', '.join(available) or 'no sub-* folder'}")
        return labels
    if args.analysis_level == "participant":
        if not available:
            parser.error(f"no sub-* folder in {args.derivatives or args.bids_dir!r}")
        return available
    return None


def _error(msg: object) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trends-ivae-bids`` with ``argv`` (``sys.argv[1:]`` when None); return the exit code."""
    warnings.formatwarning = format_warning
    parser = _build_parser()
    args = parser.parse_args(argv)
    bids, out, n_dims = _check_args(args, parser)
    labels = _labels(args, parser, bids, out)
    setup_logging(args.verbose)
    from ..data.errors import PrepareError
    from ..workflow import BidsSelection, WorkflowError, group_stage, participant_stage

    selection = BidsSelection(bids_dir=bids, derivatives=Path(args.derivatives) if args.derivatives else None,
                              task=args.task, sessions=args.session_label, space=args.space, labels=labels)
    try:
        settings = prepare_settings(args, n_dims)
        if args.analysis_level == "participant":
            result = participant_stage(selection, out, settings, mask=args.mask, tr=args.tr, force=args.force,
                                       progress=wants_progress(args))
        else:
            from ..workflow import OutputSettings

            fitted = group_stage(selection, out, settings, mask=args.mask, tr=args.tr,
                                 fit=fit_settings(args, n_jobs=args.n_jobs),
                                 output=OutputSettings(layout=args.layout, keep_prepared=args.keep_prepared,
                                                       report=args.report, force=args.force),
                                 choose_aux=isinstance(args.aux, Default),
                                 arguments=arguments_record(args, n_dims=n_dims), verbose=args.verbose,
                                 progress=wants_progress(args), notify=notifier(PROG))
    except (WorkflowError, PrepareError) as exc:
        return _error(exc)
    if args.analysis_level == "group":
        print_fit_result(fitted, PROG)
        print(f"{PROG}: group results ({args.layout} layout) in {fitted.out_dir}")
        return 0
    for s in result.kept:
        print(f"sub-{s}: share exists (same runs and cleaning), kept; --force recomputes it")
    for s, (n_runs, path) in result.written.items():
        print(f"sub-{s}: {n_runs} run(s) prepared -> {path}")
    for name, error in result.failed.items():
        print(f"{name}: FAILED: {error}", file=sys.stderr)
    problem = result.problem()
    return _error(problem) if problem else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
