"""``trends-ivae fit``: fMRI (or a prepared file) -> iVAE -> maps and time courses.

Examples::

    trends-ivae fit --bids ds/ --task faces --aux task+window --window 20 \\
        --n-components 10 --out results/
    trends-ivae fit --prepared prep/prepared.h5 --n-components 10 --seed 1 --out results/

Writes a BIDS-derivatives folder (see ``docs/cli.md``): group z-maps and decoder-effect
maps, per-run time courses (TSV) and subject maps, the model checkpoint, the resolved
configuration, the ELBO curve and, unless ``--no-keep-prepared``, ``prepared.h5``.
Everything is written to a temporary folder and moved into place at the end; an
existing OUT is refused before any work unless ``--force``, and with ``--force`` when it
holds files the tool did not write (they are named; nothing of them is deleted).

This module parses the options into a :class:`~trends_ivae.workflow.FitOptions`, which
checks them and makes the :class:`~trends_ivae.workflow.FitJob`; the work is
:func:`trends_ivae.workflow.fit_to_folder` (or :func:`~trends_ivae.workflow.fit_distributed`).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..workflow.fit import summary_line
from ._common import HELP_FORMATTER, Default, add_common_options, add_quiet_option, parser_checked, setup_logging
from .options import (add_input_arguments, add_model_arguments, add_output_arguments, add_prepare_arguments, notifier,
                      print_fit_result)

if TYPE_CHECKING:
    from ..workflow.fit_options import FitJob, FitOptions

__all__ = ["add_parser", "run", "fit_options", "options_given", "fit_job", "summary_line"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fit", help="fit a group iVAE and write component maps and time courses",
        description="Prepare fMRI runs (or read a prepared.h5), fit the identifiable VAE, map the "
                    "components back to the brain and write a BIDS-derivatives folder.",
        formatter_class=HELP_FORMATTER,
    )
    add_input_arguments(p, title="input (one of --bids, --func or --prepared)")
    p.add_argument("--prepared", metavar="FILE", help="a prepared.h5 from 'trends-ivae prepare'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (BIDS derivatives)")
    add_prepare_arguments(p)
    p.set_defaults(aux=Default("task+window"), window=20)
    add_model_arguments(p)
    add_output_arguments(p)
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="checkpoint every epoch here and resume from it when rerun")
    p.add_argument("--distributed", action="store_true",
                   help="train with one process per device under torchrun (Gloo on CPUs, NCCL on GPUs), "
                        "each reading its share of --prepared's rows; rank 0 writes the outputs "
                        "(see docs/scale.md)")
    p.add_argument("--stream-rows", type=int, metavar="N",
                   help="keep the prepared data in host memory and move it to the device N rows at a time "
                        "(for data larger than the GPU's memory; same result as without)")
    p.add_argument("--layout", choices=["bids", "melodic", "gift"], default="bids",
                   help="output layout: BIDS derivatives, an FSL MELODIC *.ica folder, or GIFT file names "
                        "(see docs/cli.md)")
    add_common_options(p)
    add_quiet_option(p)
    return p


def fit_options(args: argparse.Namespace) -> FitOptions:
    """The :class:`~trends_ivae.workflow.FitOptions` of parsed ``trends-ivae fit`` arguments
    (``--aux`` left at its default: ``aux=None``)."""
    from ..workflow.fit_options import FitOptions

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FitOptions)}
    values["aux"] = None if isinstance(args.aux, Default) else str(args.aux)
    return FitOptions(**values)


def _job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> FitJob:
    """The workflow call of checked options (``parser.error`` on bad ones).

    Raises
    ------
    trends_ivae.data.PrepareError
        The runs cannot be found, or a prepare setting is refused.
    """
    options = fit_options(args)
    n_dims = parser_checked(parser, options.check)
    setup_logging(args.verbose)
    return options.job(n_dims)


def fit_job(argv: Sequence[str]) -> FitJob:
    """Parse and check ``trends-ivae fit`` arguments (``argv`` without ``fit``).

    Raises
    ------
    SystemExit
        Bad options (exit code 2, the message on stderr), as the command.
    trends_ivae.data.PrepareError
        The runs cannot be found, or a prepare setting is refused.
    """
    from .main import build_parser

    parser, _ = build_parser()
    return _job(parser.parse_args(["fit", *argv]), parser)


def options_given(argv: Sequence[str]) -> dict:
    """The ``trends-ivae fit`` options that ``argv`` sets (a part of a command line, e.g. the
    Nipype node's ``args``), as :class:`~trends_ivae.workflow.FitOptions` values: those that
    differ from the command's defaults.

    Raises
    ------
    SystemExit
        Options the command does not know, or values it cannot read (exit code 2).
    """
    from .main import build_parser

    parser, _ = build_parser()
    placeholder = "\0"   # --out is required on the command line, not here
    given = fit_options(parser.parse_args(["fit", "--out", placeholder, *argv]))
    default = fit_options(parser.parse_args(["fit", "--out", placeholder]))
    return {f.name: getattr(given, f.name) for f in dataclasses.fields(given)
            if getattr(given, f.name) != getattr(default, f.name) and f.name != "out"}


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae fit``; returns the exit code."""
    from ..data.errors import PrepareError
    from ..workflow import WorkflowError, fit_distributed, fit_to_folder

    prog = f"trends-ivae {args.command}"
    try:
        job = _job(args, parser)
        workflow = fit_distributed if job.distributed else fit_to_folder
        result = workflow(job.data, job.out, fit=job.fit, output=job.output, checkpoint_dir=job.checkpoint_dir,
                          stream_rows=job.stream_rows, notify=notifier(prog), command=args.command,
                          arguments=job.arguments, source=job.source)
    except (WorkflowError, PrepareError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if result is None:   # a rank other than 0 of a distributed fit: trained, wrote nothing
        return 0
    print_fit_result(result, prog)
    return 0
