"""``trends-ivae demo``: fit the shipped sample data and say where the results are.

Runs :func:`trends_ivae.workflow.fit_to_folder`, as ``trends-ivae fit`` does, on
``sample_data/bids`` (a small simulated BIDS dataset with known truth: 3 task-locked and
several non-stationary resting sources) with u from task blocks and sliding windows, writes ``demo_output/`` and compares the recovered time
courses with the truth. Without the repository's ``sample_data`` (an installed package),
it simulates the same kind of dataset first.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ._common import HELP_FORMATTER, refuse_foreign_files, setup_logging
from .options import arguments_record, print_fit_result

DEFAULT_OUT = "demo_output"


def sample_bids_dir() -> Path | None:
    """``sample_data/bids`` of the source tree, if present."""
    here = Path(__file__).resolve().parents[2] / "sample_data" / "bids"
    return here if (here / "dataset_description.json").is_file() else None


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
    from ..data.bids import find_bids_runs  # after parsing
    from ..data.errors import PrepareError
    from ..data.settings import PrepareSettings
    from ..workflow import FitSettings, OutputSettings, PrepareRequest, WorkflowError, fit_to_folder

    tmp = None
    bids = sample_bids_dir()
    if bids is None:
        from ..simulate import FMRISimParams, simulate_fmri, write_bids

        tmp = Path(tempfile.mkdtemp(prefix="trends_ivae_demo_"))
        print("sample_data/ not found: simulating a small BIDS dataset first ...")
        bids = write_bids(simulate_fmri(FMRISimParams(n_subjects=4, n_volumes=160, n_components=8,
                                                      seed=2024)), tmp / "bids")
    print(f"trends-ivae demo: fitting {args.n_components} components on {bids}")
    try:
        try:
            request = PrepareRequest(runs=find_bids_runs(bids),
                                     settings=PrepareSettings.from_options(aux="task+window", window=20,
                                                                           n_dims=args.n_components),
                                     verbose=args.verbose, progress=args.verbose > 0 and sys.stderr.isatty())
            fit = FitSettings(n_components=args.n_components, device=args.device, seed=args.seed,
                              n_init=args.n_init, verbose=args.verbose)
            result = fit_to_folder(request, out, fit=fit, output=OutputSettings(force=True), command="demo",
                                   arguments=arguments_record(args, bids=str(bids)), source=str(bids))
        except (WorkflowError, PrepareError) as exc:
            print(f"trends-ivae demo: error: {exc}", file=sys.stderr)
            return 1
        print_fit_result(result, "trends-ivae demo")
        _compare_with_truth(out, bids)
        _print_next_steps(out)
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _compare_with_truth(out: Path, bids: Path) -> None:
    """Print the time-course MCC against the simulated truth, when it is there."""
    import numpy as np
    import pandas as pd

    from ..metrics import mcc
    from ..simulate import load_truth

    try:
        truth = load_truth(bids)
    except (OSError, ValueError, KeyError):
        return
    est, tru = [], []
    for i, subject in enumerate(truth.subjects):
        tsv = sorted(out.glob(f"sub-{subject}/**/*_desc-ivae_timeseries.tsv"))
        if not tsv:
            return
        est.append(pd.read_csv(tsv[0], sep="\t").to_numpy())
        tru.append(truth.timecourses[i])
    score = mcc(np.concatenate(est), np.concatenate(tru)).score
    print(f"time courses vs the simulated truth: MCC {score:.2f} (1 = perfect recovery)")


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
