"""``trends-ivae sample``: generate a synthetic fMRI run from a fitted model.

Examples::

    trends-ivae sample results/ --out synth/sub-01_task-sim_bold.nii.gz
    trends-ivae sample results/ --events run-1_events.tsv --out synth/sub-01_task-sim_bold.nii.gz
    trends-ivae sample results/ --condition motor --n-volumes 60 --out motor_bold.nii.gz

Reads the output folder of ``trends-ivae fit`` (``model/estimator.pt``, ``prepared.h5``),
draws the sources from p(z|u) for every volume's u, decodes them with the model's noise
and maps them through the group basis to voxels. Writes the 4D NIfTI (``--out``), its
events (``*_events.tsv``, when u has a task factor) and a JSON sidecar marking the run as
synthetic and naming the model (its ``RandomSeed`` is ``--seed``, which gives the same run
again). The run keeps the qform/sform codes of the fit's maps. The tool's own earlier
files are replaced only with ``--force``, and a file it did not write never; nothing is
written when an input is wrong. See ``docs/cli.md``.

This module parses and checks the options; the work is
:func:`trends_ivae.workflow.sample_to_file`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import HELP_FORMATTER, existing_dir, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sample", help="generate a synthetic fMRI run from a fitted model",
        description="Sample a synthetic 4D fMRI run from the model in a 'trends-ivae fit' output "
                    "folder: z ~ p(z|u), decoded, mapped to voxels with the model's noise.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("fit_dir", metavar="FIT",
                   help="output folder of 'trends-ivae fit' (with prepared.h5)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the 4D NIfTI to write (.nii or .nii.gz); the events TSV and JSON sidecar go beside it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--events", metavar="TSV", help="BIDS events of the run: the task label of each volume")
    src.add_argument("--condition", metavar="LABEL", help="one task condition for every volume")
    p.add_argument("--n-volumes", type=int, metavar="N", help="volumes (default: the reference run's)")
    p.add_argument("--subject", metavar="LABEL", help="subject label, for a model whose u has a subject factor")
    p.add_argument("--like-run", type=int, default=0, metavar="I",
                   help="index of the fitted run whose u (windows, subject, task) is the starting point")
    p.add_argument("--no-noise", dest="noise", action="store_false",
                   help="decoded means without the observation and residual noise")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed (0 to 2**32 - 1), recorded as the sidecar's RandomSeed: the same seed "
                        "gives the same run")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps")
    p.add_argument("--force", action="store_true",
                   help="replace the tool's own earlier output files (a file it did not write is never replaced)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae sample``; returns the exit code (2, nothing written, for a bad input)."""
    from ..workflow.fit import WorkflowError
    from ..workflow.sample import NIFTI_SUFFIXES, SampleSettings, sample_to_file

    setup_logging(args.verbose)
    existing_dir(parser, args.fit_dir, "FIT")
    out = Path(args.out)
    if not out.name.endswith(NIFTI_SUFFIXES):
        parser.error(f"--out {str(out)!r}: the file name must end in .nii or .nii.gz")
    if args.events is not None and not Path(args.events).is_file():
        parser.error(f"--events {args.events!r}: no such file")
    settings = SampleSettings(events=args.events, condition=args.condition, n_volumes=args.n_volumes,
                              subject=args.subject, like_run=args.like_run, noise=args.noise, seed=args.seed,
                              device=args.device, force=args.force)
    try:
        result = sample_to_file(args.fit_dir, out, settings)
    except WorkflowError as exc:
        parser.error(str(exc))
    print(f"wrote {out}: {result.n_volumes} synthetic volumes (TR {result.tr:g} s) from "
          f"{result.estimator} in {args.fit_dir}"
          + (f"; events in {result.events}" if result.events is not None else ""))
    return 0
