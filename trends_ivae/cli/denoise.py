"""``trends-ivae denoise``: remove components of a fit from runs (``fsl_regfilt``-style).

Examples::

    trends-ivae denoise results/ --remove ic03 ic07 --out cleaned/
    trends-ivae denoise results/ --remove artifacts --out cleaned/          # after 'trends-ivae label'
    trends-ivae denoise results/ --remove ic02 --func new_run_bold.nii.gz --out cleaned/
    trends-ivae denoise results/ --remove ic02 --method decoder --out cleaned/

Writes ``OUT/sub-*/func/*_desc-ivaedenoised_bold.nii.gz`` (+ ``.json``) and
``OUT/dataset_description.json``. Not the ``--denoise STRATEGY`` option of ``fit`` and
``prepare`` (confound regression before the decomposition): this removes the fitted
model's components afterwards. See ``docs/labels_denoise_stats.md``.

The work is :func:`trends_ivae.workflow.denoise_components.denoise_runs`.
"""
from __future__ import annotations

import argparse
import sys

from ._common import HELP_FORMATTER, existing_dir, existing_file, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "denoise", help="remove components of a fit from runs (BIDS derivative, desc-ivaedenoised)",
        description="Remove named components (or those labelled artifact) of a fit from its runs or from new "
                    "runs of its space, and write the cleaned runs as a BIDS derivative.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("fit_dir", metavar="FIT_DIR", help="output folder of 'trends-ivae fit' (BIDS layout)")
    p.add_argument("--remove", nargs="+", required=True, metavar="IC",
                   help="components to remove: names (ic03), numbers from 1, or 'artifacts' (the components "
                        "'trends-ivae label' calls artifact)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (never an input's folder)")
    p.add_argument("--func", nargs="+", metavar="FILE",
                   help="new 4-D runs in the fit's space (default: the fit's own runs)")
    p.add_argument("--events", nargs="+", metavar="FILE",
                   help="one events TSV per --func run (needed when the fit's u has a task factor)")
    p.add_argument("--method", choices=("regression", "decoder"), default="regression",
                   help="regression: fsl_regfilt non-aggressive on the time courses; decoder: subtract "
                        "f(z) - f(z with the removed components at their prior mean)")
    p.add_argument("--aggressive", action="store_true",
                   help="regression only: regress on the removed time courses alone (fsl_regfilt -a)")
    p.add_argument("--force", action="store_true", help="replace an earlier output folder of trends-ivae's")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae denoise``; returns the exit code."""
    fit_dir = existing_dir(parser, args.fit_dir, "FIT_DIR")
    for f in args.func or []:
        existing_file(parser, f, "--func")
    if args.events and (not args.func or len(args.events) != len(args.func)):
        parser.error("--events needs --func, one events file per run")
    for f in args.events or []:
        existing_file(parser, f, "--events")
    if args.aggressive and args.method != "regression":
        parser.error("--aggressive applies to --method regression only")
    setup_logging(args.verbose)
    from ..workflow.denoise_components import DenoiseSettings, denoise_runs
    from ..workflow.fit import WorkflowError

    settings = DenoiseSettings(remove=list(args.remove), out=args.out, func=args.func, events=args.events, method=args.method,
                               aggressive=args.aggressive, force=args.force)
    try:
        result = denoise_runs(fit_dir, settings)
    except (WorkflowError, FileExistsError) as exc:
        print(f"trends-ivae denoise: error: {exc}", file=sys.stderr)
        return 1
    print(f"removed {', '.join(result.removed)} ({result.method}) from {len(result.files)} run(s); wrote {result.out}")
    return 0
