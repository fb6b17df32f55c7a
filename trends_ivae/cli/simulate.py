"""``trends-ivae simulate``: write a simulated BIDS dataset with known truth.

Example::

    trends-ivae simulate sim_bids --subjects 4 --scans 120 --components 8 --seed 1

writes ``sim_bids/`` (BIDS: bold, events, sidecars, participants.tsv) and the truth under
``sim_bids/derivatives/truth/`` (``truth.npz``, maps, mask; read with
:func:`trends_ivae.simulate.load_truth`). This module parses the options; the work is
:func:`trends_ivae.workflow.simulate_to_folder`.
"""
from __future__ import annotations

import argparse

from ._common import HELP_FORMATTER, add_common_options, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate", formatter_class=HELP_FORMATTER,
        help="write a simulated BIDS dataset with known sources and maps",
        description="Simulate multi-subject fMRI (SimTB-like: blob maps, task-locked and "
                    "non-stationary resting sources, saturating voxel response, drift, noise) "
                    "and write it as BIDS with the truth under derivatives/truth/.")
    p.add_argument("out", metavar="OUT", help="dataset folder to create")
    p.add_argument("--subjects", type=int, default=8, help="number of subjects")
    p.add_argument("--scans", type=int, default=180, help="volumes per subject")
    p.add_argument("--components", type=int, default=12, help="number of sources")
    p.add_argument("--task-components", type=int, default=3,
                   help="how many sources are task-locked (one per condition)")
    p.add_argument("--tr", type=float, default=2.0, help="repetition time (s)")
    p.add_argument("--segment-length", type=int, default=20,
                   help="volumes per non-stationarity segment of the resting sources")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--nonlinear", dest="nonlinear", action="store_true", default=True,
                       help="saturating (tanh) voxel response")
    group.add_argument("--linear", dest="nonlinear", action="store_false",
                       help="linear voxel response")
    p.add_argument("--mixing-layers", type=int, default=0,
                   help="layers of nonlinear source mixing (0 none, 1 linear, >=2 MLP)")
    p.add_argument("--snr", type=float, default=1.0, help="signal-to-noise ratio")
    p.add_argument("--dtype", choices=("float32", "int16"), default="float32",
                   help="data type of the BOLD images")
    add_common_options(p)
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run ``trends-ivae simulate``; returns the exit code (a refused folder or parameter: 2)."""
    setup_logging(args.verbose)
    from ..simulate.params import FMRISimParams
    from ..workflow.fit import WorkflowError
    from ..workflow.simulate import simulate_to_folder

    params = FMRISimParams(
        n_subjects=args.subjects, n_volumes=args.scans, n_components=args.components,
        n_task=min(args.task_components, args.components), tr=args.tr,
        segment_length=args.segment_length, nonlinear=args.nonlinear,
        mixing_layers=args.mixing_layers, snr=args.snr, seed=args.seed)
    try:
        result = simulate_to_folder(args.out, params, dtype=args.dtype, force=args.force)
    except WorkflowError as exc:
        if parser is not None:
            parser.error(str(exc))
        raise SystemExit(f"trends-ivae simulate: error: {exc}") from None
    print(f"wrote {result.out_dir} ({result.n_subjects} subjects, {result.n_voxels} voxels, "
          f"truth in {result.truth_dir})")
    return 0
