"""``trends-ivae prepare``: fMRI runs -> (x, u) -> ``OUT/prepared.h5``.

Examples::

    trends-ivae prepare --bids ds/ --task faces --out prep/ --aux task+subject
    trends-ivae prepare --func r1.nii.gz r2.nii.gz --events r1.tsv r2.tsv --tr 2.5 \\
        --mask brain.nii.gz --aux task+run --out prep/
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ._common import (HELP_FORMATTER, add_common_options, add_quiet_option, check_writable, count_or_auto,
                      existing_dir, existing_file, is_auto, setup_logging, wants_progress)

OUTPUT_NAME = "prepared.h5"
#: nilearn's fMRIPrep strategies (trends_ivae.io.cleaning.DENOISE_STRATEGIES; not imported for --help)
DENOISE_CHOICES = ("simple", "scrubbing", "compcor", "ica_aroma")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare", help="mask, clean and reduce fMRI runs to (x, u) in prepared.h5",
        description="Mask, clean and reduce fMRI runs to (x, u) with one spatial basis shared by "
                    "all subjects (MIGP), and write OUT/prepared.h5.",
        formatter_class=HELP_FORMATTER,
    )
    add_input_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (receives prepared.h5)")
    add_prepare_arguments(p)
    add_common_options(p)
    add_quiet_option(p)
    return p


def add_input_arguments(p: argparse.ArgumentParser, title: str = "input (either --bids or --func)") -> None:
    """The input options (``--bids`` and its filters, or ``--func`` with its files)."""
    src = p.add_argument_group(title)
    src.add_argument("--bids", metavar="DIR", help="BIDS dataset (or fMRIPrep derivatives) root")
    src.add_argument("--task", help="BIDS task label to keep")
    src.add_argument("--session", help="BIDS session label to keep")
    src.add_argument("--run", nargs="+", help="BIDS run labels to keep")
    src.add_argument("--participant-label", nargs="+", metavar="L", help="subjects to keep (with or without 'sub-')")
    src.add_argument("--space", help="keep only files with this space- entity (derivatives)")
    src.add_argument("--func", nargs="+", metavar="FILE", help="4D NIfTI runs")
    src.add_argument("--events", nargs="+", metavar="FILE", help="events TSV, one per --func")
    src.add_argument("--confounds-file", nargs="+", metavar="FILE", help="confounds TSV/TXT, one per --func")
    src.add_argument("--subject", nargs="+", metavar="L",
                     help="subject label of each --func (default: sub- entity of the name, else one subject per file)")
    src.add_argument("--participants", metavar="FILE", help="participants.tsv for --func input")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """The u, masking/cleaning and reduction options of the prepare stage."""
    aux = p.add_argument_group("auxiliary variable u")
    aux.add_argument("--aux", default="task",
                     help="factors joined with '+': task, window, subject, run or a participants.tsv column "
                          "(fit and the BIDS App: window when no run has events and --aux is not given)")
    aux.add_argument("--aux-combine", choices=["concat", "product"], default="concat",
                     help="several factors as concatenated one-hot columns (continuous u), or as "
                          "one discrete label per combination (needs many volumes per combination)")
    aux.add_argument("--window", type=int, metavar="N", help="sliding-window length in volumes")
    aux.add_argument("--step", type=int, metavar="N", help="sliding-window step in volumes (default: --window)")
    aux.add_argument("--hrf-delay", type=float, default=0.0, metavar="S", help="seconds added to event onsets")
    aux.add_argument("--min-event-duration", type=float, metavar="S",
                     help="lengthen shorter events to this (default: zero-duration events mark their volume)")

    cl = p.add_argument_group("masking and cleaning")
    cl.add_argument("--tr", type=float, metavar="S", help="repetition time; overrides sidecars and headers")
    cl.add_argument("--mask", metavar="FILE", help="brain mask (default: intersection of EPI masks)")
    cl.add_argument("--resample-to-first", action="store_true",
                    help="resample runs/mask on another grid to the first run's grid instead of failing")
    cl.add_argument("--confounds", nargs="+", metavar="COLUMN",
                    help="confound columns to regress (patterns allowed; default: all columns of --confounds-file)")
    cl.add_argument("--denoise", choices=DENOISE_CHOICES, metavar="STRATEGY",
                    help="fMRIPrep denoising by nilearn's load_confounds_strategy: "
                         f"{', '.join(DENOISE_CHOICES)}; regresses the strategy's confounds and leaves the "
                         "volumes it censors (non-steady-state; scrubbing: high motion) out of x and u. "
                         "Needs fMRIPrep outputs (*_desc-confounds_timeseries.tsv and .json next to each "
                         "run); instead of --confounds")
    cl.add_argument("--detrend", action=argparse.BooleanOptionalAction, default=True, help="linear detrending")
    cl.add_argument("--standardize", action="store_true", help="z-score each voxel's time series per run")
    cl.add_argument("--high-pass", type=float, metavar="HZ", help="high-pass cut-off")
    cl.add_argument("--low-pass", type=float, metavar="HZ", help="low-pass cut-off")
    cl.add_argument("--smoothing-fwhm", type=float, metavar="MM", help="spatial smoothing")

    red = p.add_argument_group("reduction")
    red.add_argument("--n-dims", type=count_or_auto, default=None, metavar="D",
                     help="dimension of the shared basis, or 'auto' (the estimated model order; see "
                          "docs/prepare.md) (default: --n-components where there is one, i.e. fit and the "
                          "BIDS App; 30 for prepare). The iVAE recovers sources far better with as many "
                          "dimensions as components: see docs/prepare.md")
    red.add_argument("--whiten", action="store_true", help="scale components to unit variance")
    red.add_argument("--n-keep", type=int, metavar="M", help="MIGP running rows (default max(4 D, 100))")
    red.add_argument("--subject-dims", type=int, metavar="K", help="compress each subject to K components first")
    red.add_argument("--n-jobs", type=int, default=1, metavar="N", help="subjects processed in parallel")
    red.add_argument("--cache-dir", metavar="DIR", help="where cleaned subject data are cached (default: temp)")
    red.add_argument("--scheduler", choices=["joblib", "dask"], default="joblib",
                     help="what runs the per-subject work: joblib on this machine, or Dask "
                          "(pip install 'trends-ivae[dask]'; see docs/scale.md)")
    red.add_argument("--dask-address", metavar="ADDR",
                     help="a running Dask scheduler, e.g. tcp://node1:8786 (default with --scheduler dask: "
                          "a local cluster of --n-jobs workers)")


def check_input_arguments(args, parser) -> None:
    """Refuse inconsistent input and prepare options (``parser.error``, exit code 2)."""
    if bool(args.bids) == bool(args.func):
        parser.error("give exactly one of --bids DIR or --func FILE ...")
    if args.bids:
        existing_dir(parser, args.bids, "--bids")
        for opt in ("events", "confounds_file", "subject", "participants"):
            if getattr(args, opt):
                parser.error(f"--{opt.replace('_', '-')} goes with --func, not --bids")
    else:
        for f in args.func:
            existing_file(parser, f, "--func")
        for opt in ("events", "confounds_file", "subject"):
            values = getattr(args, opt)
            if values is not None and len(values) != len(args.func):
                parser.error(f"--{opt.replace('_', '-')} needs one value per --func ({len(args.func)}), "
                             f"got {len(values)}")
        for f in (args.events or []) + (args.confounds_file or []):
            existing_file(parser, f, "file")
        if args.participants:
            existing_file(parser, args.participants, "--participants")
    if args.mask:
        existing_file(parser, args.mask, "--mask")
    check_denoise_arguments(args, parser)
    if args.n_dims is None:   # fit: as many dimensions as components; prepare alone: 30
        from ..io.preparation import DEFAULT_N_DIMS

        args.n_dims = getattr(args, "n_components", None) or DEFAULT_N_DIMS
    if not is_auto(args.n_dims) and args.n_dims < 1:
        parser.error("--n-dims must be >= 1 (or auto)")
    if args.tr is not None and args.tr <= 0:
        parser.error("--tr must be positive")
    check_scheduler_arguments(args, parser)


def check_denoise_arguments(args, parser) -> None:
    """``--denoise`` takes its confounds from fMRIPrep: not with ``--confounds`` or ``--confounds-file``."""
    if getattr(args, "denoise", None):
        if args.confounds:
            parser.error("give either --denoise STRATEGY or --confounds COLUMN ..., not both")
        if getattr(args, "confounds_file", None):
            parser.error("--denoise reads each run's fMRIPrep confounds itself; drop --confounds-file")


def check_scheduler_arguments(args, parser) -> None:
    """``--scheduler`` / ``--dask-address`` / ``--n-jobs``: consistent, and dask importable."""
    if args.n_jobs == 0:
        parser.error("--n-jobs must not be 0 (use -1 for all cores)")
    if args.dask_address and args.scheduler != "dask":
        parser.error("--dask-address goes with --scheduler dask")
    if args.scheduler == "dask":
        from ..io.parallel import dask_available

        if not dask_available():
            parser.error("--scheduler dask needs dask.distributed: pip install 'trends-ivae[dask]'")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae prepare``; returns the exit code."""
    from pathlib import Path

    check_input_arguments(args, parser)
    out_dir = Path(args.out)
    target = out_dir / OUTPUT_NAME
    if target.exists() and not args.force:
        parser.error(f"{str(target)!r} exists; pass --force to overwrite it")
    check_writable(parser, out_dir, "--out")
    setup_logging(args.verbose)
    log = logging.getLogger("trends_ivae.cli.prepare")

    from ..io.images import PrepareError  # heavy imports after parsing
    from ..io.preparation import prepare
    from ..io.store import write_prepared

    try:
        data = prepare(runs_from_args(args), **prepare_kwargs(args))
    except PrepareError as exc:
        print(f"trends-ivae prepare: error: {exc}", file=sys.stderr)
        return 1
    if data.parameters.get("order"):
        from ..io.order import OrderEstimate

        print(f"trends-ivae prepare: --n-dims auto: {OrderEstimate.from_dict(data.parameters['order']).describe()}",
              file=sys.stderr)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.pop("command", None)
    try:   # both files go to temporary names first: a full disk leaves the previous ones intact
        out_dir.mkdir(parents=True, exist_ok=True)
        write_prepared(target, data, overwrite=args.force)
        tmp = out_dir / ".prepare_config.json.tmp"
        try:
            tmp.write_text(json.dumps(config, indent=2, default=str))
            os.replace(tmp, out_dir / "prepare_config.json")
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        print(f"trends-ivae prepare: error: could not write {str(out_dir)!r}: {exc}", file=sys.stderr)
        return 1
    log.info("wrote %s", target)
    print(f"wrote {target}: {data.n_samples} volumes x {data.n_dims} dims, {data.n_subjects} subject(s), "
          f"{data.n_voxels} voxels, u={data.aux['spec']} ({data.u_kind}, {len(data.u_names)} levels)")
    return 0


def runs_from_args(args: argparse.Namespace) -> list:
    """The runs named by the input options, as ``RunSpec`` objects."""
    from ..io.bids import find_bids_runs, runs_from_files

    if args.bids:
        return find_bids_runs(args.bids, task=args.task, session=args.session, run=args.run,
                              participant_label=args.participant_label, space=args.space,
                              with_confounds=bool(args.confounds))
    return runs_from_files(args.func, events=args.events, confounds=args.confounds_file,
                           subjects=args.subject, participants=args.participants)


def prepare_kwargs(args: argparse.Namespace) -> dict:
    """Arguments of :func:`trends_ivae.io.preparation.prepare` from the options: the
    settings object whole, the mask, the TR override and the verbosity."""
    from ..io.settings import PrepareSettings

    settings = PrepareSettings.from_options(
        aux=args.aux, window=args.window, step=args.step, hrf_delay=args.hrf_delay,
        min_event_duration=args.min_event_duration, aux_combine=args.aux_combine,
        n_dims=args.n_dims, confounds=args.confounds,
        detrend=args.detrend, standardize=args.standardize, high_pass=args.high_pass,
        low_pass=args.low_pass, smoothing_fwhm=args.smoothing_fwhm, whiten=args.whiten,
        n_keep=args.n_keep, subject_dims=args.subject_dims,
        resample_to_first=args.resample_to_first, n_jobs=args.n_jobs,
        cache_dir=args.cache_dir, scheduler=getattr(args, "scheduler", "joblib"),
        dask_address=getattr(args, "dask_address", None), denoise=getattr(args, "denoise", None),
    )
    return dict(settings=settings, mask=args.mask, tr=args.tr, verbose=args.verbose, progress=wants_progress(args))
