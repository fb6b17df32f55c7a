#!/usr/bin/env python
"""Dual-regression style follow-up: a fitted group iVAE applied to new subjects, no refit.

Usage::

    python pipelines/dual_regression.py FIT_OUT --bids new_ds/ [--task T] [--participant-label L ...] --out DR_OUT
    python pipelines/dual_regression.py FIT_OUT --func new/sub-*_bold.nii.gz [--confounds-file C ...] [--tr S] --out DR_OUT

``FIT_OUT`` is a ``trends-ivae fit`` output (any ``--layout``, with ``prepared.h5``).
For each new run the data are masked and cleaned exactly as in the fit, as its record
(``prepared.h5``) says: the mask, detrending, filters at the fit's TR, standardisation,
the confound columns it regressed and the volumes it left out (``--drop-initial``,
fMRIPrep's non-steady-state volumes); then projected on the group basis. A run's TR is
``--tr`` when given, else the fit's ``--tr`` when it had one, else the run's sidecar or
header; a run at another TR than the fit's is refused (it would be filtered at the
wrong rate). When the fit regressed confounds, each new run needs its table
(``--confounds-file``, or found beside each run of ``--bids`` derivatives); the encoder q(z|x) gives the time courses (``GroupIVAE.transform``, no
u needed: stage 1, the analogue of regressing the group maps on the data); each
subject's maps are then the regression of its data on its own time courses, z-scored
across voxels (stage 2). Writes::

    DR_OUT/dataset_description.json
    DR_OUT/sub-<label>/[ses-<label>/]func/<entities>_desc-dualreg_timeseries.tsv   volumes x ic01..
    DR_OUT/sub-<label>/func/sub-<label>_desc-dualreg_components.nii.gz              subject z-maps, 4-D

Component ``icNN`` is the fit's ``icNN``. Runs must be on the fit's grid (or the fit
prepared with ``--resample-to-first``). This script parses and checks argv; the work is
:func:`trends_ivae.workflow.dual_regression_to_folder`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dual_regression.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Subject time courses and maps of new subjects from a fitted group iVAE.")
    p.add_argument("fit_dir", help="a trends-ivae fit output folder (with model/ and prepared.h5)")
    src = p.add_argument_group("new data (one of --bids or --func)")
    src.add_argument("--bids", metavar="DIR", help="BIDS dataset of the new subjects")
    src.add_argument("--task", help="task to keep")
    src.add_argument("--participant-label", nargs="+", metavar="L", help="subjects to keep")
    src.add_argument("--func", nargs="+", metavar="FILE", help="4-D runs (sub- in the names gives the subject)")
    src.add_argument("--confounds-file", nargs="+", metavar="FILE",
                     help="confounds TSV, one per --func (needed when the fit regressed confounds)")
    p.add_argument("--tr", type=float, metavar="S",
                   help="repetition time of the runs, when a file lacks one or its own is wrong (default: the "
                        "fit's --tr, else each run's sidecar or header); another TR than the fit's is refused")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default="cpu", help="torch device for the encoder")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the follow-up; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    fit_dir = Path(args.fit_dir)
    from trends_ivae.export.naming import model_file

    for need in (model_file(fit_dir), fit_dir / "prepared.h5", fit_dir / "model" / "config.json"):
        if not need.is_file():
            parser.error(f"{str(need)!r} is missing: FIT_OUT must be a trends-ivae fit output "
                         "written with prepared.h5 (no --no-keep-prepared)")
    if bool(args.bids) == bool(args.func):
        parser.error("give exactly one of --bids DIR or --func FILE ...")
    if args.bids and not Path(args.bids).is_dir():
        parser.error(f"--bids {args.bids!r} is not a directory")
    for opt, files in (("--func", args.func), ("--confounds-file", args.confounds_file)):
        for f in files or []:
            if not Path(f).is_file():
                parser.error(f"{opt} {f!r} does not exist")
    if args.confounds_file and (args.bids or len(args.confounds_file) != len(args.func)):
        parser.error("--confounds-file goes with --func, one file per --func")
    if args.tr is not None and not args.tr > 0:
        parser.error(f"--tr {args.tr:g}: must be a positive number of seconds")
    out = Path(args.out)
    from trends_ivae.export.outputs import refuse_existing_dir

    try:   # files of the user's in it are refused first, --force or not; the --force advice is then true
        refuse_existing_dir(out, args.force)
    except (FileExistsError, OSError) as exc:
        parser.error(str(exc))

    from trends_ivae.data.errors import PrepareError
    from trends_ivae.data.bids import find_bids_runs, runs_from_files  # heavy imports after parsing
    from trends_ivae.workflow import WorkflowError, dual_regression_to_folder

    try:
        runs = (find_bids_runs(args.bids, task=args.task, participant_label=args.participant_label,
                               with_confounds=True)   # used when the fit regressed confounds
                if args.bids else runs_from_files(args.func, confounds=args.confounds_file))
        result = dual_regression_to_folder(fit_dir, runs, out, sources=[args.bids or Path(args.func[0]).parent],
                                           device=args.device, force=args.force, tr=args.tr)
    except (PrepareError, WorkflowError) as exc:
        print(f"dual_regression.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {result.n_runs} run(s) of {result.n_subjects} subject(s), {result.n_components} components")
    return 0


if __name__ == "__main__":
    sys.exit(main())
