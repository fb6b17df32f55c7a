"""``trends-ivae prepare``: fMRI runs -> (x, u) -> ``OUT/prepared.h5``.

Examples::

    trends-ivae prepare --bids ds/ --task faces --out prep/ --aux task+subject
    trends-ivae prepare --func r1.nii.gz r2.nii.gz --events r1.tsv r2.tsv --tr 2.5 \\
        --mask brain.nii.gz --aux task+run --out prep/

Parses and checks the options, then runs :func:`trends_ivae.workflow.prepare_to_file`.
Never imports torch.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data.settings import DEFAULT_N_DIMS   # (light: no nilearn, no torch)
from ._common import HELP_FORMATTER, add_common_options, add_quiet_option, check_writable, setup_logging
from .options import (DENOISE_CHOICES, add_input_arguments, add_prepare_arguments, arguments_record,
                      check_input_arguments, n_dims_of, notifier, prepare_request)

__all__ = ["add_parser", "run", "DENOISE_CHOICES"]

PROG = "trends-ivae prepare"


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


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae prepare``; returns the exit code."""
    from ..workflow.prepare import check_prepare_outputs

    n_dims = n_dims_of(args, DEFAULT_N_DIMS)
    check_input_arguments(args, parser, n_dims)
    out_dir = Path(args.out)
    try:   # a file the tool did not write is never replaced; its own only with --force
        check_prepare_outputs(out_dir, args.force)
    except FileExistsError as exc:
        parser.error(str(exc))
    check_writable(parser, out_dir, "--out")
    setup_logging(args.verbose)

    from ..data.errors import PrepareError
    from ..workflow import prepare_to_file

    try:
        result = prepare_to_file(prepare_request(args, n_dims), out_dir, force=args.force,
                                 arguments=arguments_record(args, n_dims=n_dims), notify=notifier(PROG))
    except PrepareError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: could not write {str(out_dir)!r}: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("trends_ivae.cli.prepare").info("wrote %s", result.path)
    print(f"wrote {result.path}: {result.summary}")
    return 0
