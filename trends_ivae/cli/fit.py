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

This module parses and checks the options; the work is
:func:`trends_ivae.workflow.fit_to_folder` (or :func:`~trends_ivae.workflow.fit_distributed`).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..workflow.fit import summary_line
from ._common import (HELP_FORMATTER, Default, add_common_options, add_quiet_option, check_writable, existing_file,
                      refuse_foreign_files, setup_logging)
from .options import (add_input_arguments, add_model_arguments, add_output_arguments, add_prepare_arguments,
                      arguments_record, check_components_fit, check_input_arguments, check_model_arguments,
                      fit_settings, n_dims_of, notifier, prepare_request, print_fit_result)

__all__ = ["add_parser", "run", "FitJob", "fit_job", "summary_line"]


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


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int | str:
    """Refuse bad options before any work (``parser.error``); the reduced dimension asked for."""
    n_sources = sum(bool(v) for v in (args.bids, args.func, args.prepared))
    if n_sources != 1:
        parser.error("give exactly one of --bids DIR, --func FILE ... or --prepared FILE")
    if args.distributed and not args.prepared:
        parser.error("--distributed trains on a prepared file: run 'trends-ivae prepare' (or the BIDS App's "
                     "participant level) first and pass --prepared FILE")
    n_dims = n_dims_of(args, args.n_components)   # as many dimensions as components
    if args.prepared:
        existing_file(parser, args.prepared, "--prepared")
        n_dims = args.n_dims   # (not used: the file has its own)
    else:
        check_input_arguments(args, parser, n_dims)
        check_components_fit(args, parser, n_dims, ", the reduced dimension")
    check_model_arguments(args, parser)
    if args.stream_rows is not None and args.stream_rows < 1:
        parser.error("--stream-rows must be >= 1")
    out_dir = Path(args.out)
    if out_dir.exists() and not args.force:
        parser.error(f"{str(out_dir)!r} exists; pass --force to overwrite it")
    refuse_foreign_files(parser, out_dir)
    check_writable(parser, out_dir.absolute().parent, "--out")
    if args.checkpoint_dir:
        check_writable(parser, args.checkpoint_dir, "--checkpoint-dir")
    return n_dims


@dataclass
class FitJob:
    """A checked ``trends-ivae fit`` command line, as the arguments of a workflow call.

    ``fit_to_folder(job.data, job.out, **job.kwargs)`` (or ``fit_distributed`` when
    ``job.distributed``) does what the command does; :func:`fit_job` builds one from
    argv for the pipelines and the Nipype node, so that they share the command's options,
    defaults and checks.

    Attributes
    ----------
    data : str or PrepareRequest
        ``--prepared FILE``, or the runs and how to prepare them.
    out : Path
        ``--out``.
    distributed : bool
        ``--distributed``.
    kwargs : dict
        The other arguments of :func:`~trends_ivae.workflow.fit_to_folder`.
    """

    data: Any
    out: Path
    distributed: bool
    kwargs: dict


def _job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> FitJob:
    """The workflow call of checked options (``parser.error`` on bad ones).

    Raises
    ------
    trends_ivae.data.PrepareError
        The runs cannot be found, or a prepare setting is refused.
    """
    n_dims = _check(args, parser)
    setup_logging(args.verbose)
    from ..workflow import OutputSettings  # after parsing

    prog = f"trends-ivae {args.command}"
    kwargs = dict(fit=fit_settings(args, n_jobs=args.n_jobs),
                  output=OutputSettings(layout=args.layout, keep_prepared=args.keep_prepared, report=args.report,
                                        force=args.force),
                  checkpoint_dir=args.checkpoint_dir, stream_rows=args.stream_rows, notify=notifier(prog),
                  command=args.command, arguments=arguments_record(args, n_dims=n_dims),
                  source=args.bids or args.prepared)
    data = args.prepared or prepare_request(args, n_dims)
    return FitJob(data=data, out=Path(args.out), distributed=args.distributed, kwargs=kwargs)


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


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae fit``; returns the exit code."""
    from ..data.errors import PrepareError
    from ..workflow import WorkflowError, fit_distributed, fit_to_folder

    prog = f"trends-ivae {args.command}"
    try:
        job = _job(args, parser)
        if job.distributed:
            result = fit_distributed(job.data, job.out, **job.kwargs)
            if result is None:   # a rank other than 0: trained, wrote nothing
                return 0
        else:
            result = fit_to_folder(job.data, job.out, **job.kwargs)
    except (WorkflowError, PrepareError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print_fit_result(result, prog)
    return 0
