"""``trends-ivae demo``: fit the shipped sample data and say where the results are.

Runs :func:`trends_ivae.workflow.demo_to_folder`: :func:`~trends_ivae.workflow.fit_to_folder`, as ``trends-ivae fit`` does, on
``sample_data/bids`` (a small simulated BIDS dataset with known truth: 3 task-locked and
several non-stationary resting sources) with u from task blocks and sliding windows, writes ``demo_output/`` and compares the recovered time
courses with the truth. Without the repository's ``sample_data`` (an installed package),
it simulates the same kind of dataset first.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import HELP_FORMATTER, refuse_foreign_files, setup_logging
from .options import arguments_record, print_fit_result

DEFAULT_OUT = "demo_output"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="fit the shipped sample data and write demo_output/",
        description="Fit a group iVAE on the shipped sample data (u = task blocks + windows) and "
                    "write maps and time courses to OUT.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="output folder (a previous demo output there is replaced)")
    p.add_argument("--n-components", type=int, default=8, metavar="N", help="number of components")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    p.add_argument("--n-init", type=int, default=3, metavar="K", help="iVAE restarts")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("-v", "--verbose", action="count", default=1, help="more progress output")
    p.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose", help="no progress output")
    return p


def _is_demo_output(path: Path) -> bool:
    desc = path / "dataset_description.json"
    return desc.is_file() and "trends_ivae" in desc.read_text()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae demo``; returns the exit code."""
    out = Path(args.out)
    if out.exists() and not _is_demo_output(out):
        parser.error(f"{str(out)!r} exists and is not a trends_ivae output; choose another --out")
    refuse_foreign_files(parser, out)   # an earlier demo output is replaced, nothing else in it
    setup_logging(0)
    from ..workflow import DemoSettings, WorkflowError, demo_to_folder  # after parsing

    settings = DemoSettings(n_components=args.n_components, seed=args.seed, n_init=args.n_init,
                            device=args.device, verbose=args.verbose,
                            progress=args.verbose > 0 and sys.stderr.isatty())
    try:
        result = demo_to_folder(out, settings, arguments=arguments_record(args),
                                notify=lambda message: print(f"trends-ivae demo: {message}"))
    except WorkflowError as exc:
        print(f"trends-ivae demo: error: {exc}", file=sys.stderr)
        return 1
    print_fit_result(result.fit, "trends-ivae demo")
    if result.truth_mcc is not None:
        print(f"time courses vs the simulated truth: MCC {result.truth_mcc:.2f} (1 = perfect recovery)")
    _print_next_steps(out)
    return 0


def _print_next_steps(out: Path) -> None:
    print(f"""
outputs in {out}/:
  report.html                          the HTML report: open it in any browser
  group/desc-ivae_components.nii.gz   group z-maps, one volume per component
  group/desc-ivae_effects.nii.gz      decoder-effect maps
  sub-*/func/*_desc-ivae_timeseries.tsv  time courses (one column per component)
  model/                               checkpoint, configuration, ELBO curve
look at them:
  fsleyes {out}/group/desc-ivae_components.nii.gz
  python -c "from nilearn import plotting; plotting.plot_prob_atlas('{out}/group/desc-ivae_components.nii.gz'); plotting.show()"
""", file=sys.stdout)
