"""``trends-ivae analyze``: static FNC, spectra, dFNC and the prior's dynamics of a fit.

Examples::

    trends-ivae analyze results/                    # rewrite results/analysis/ (fit writes it too)
    trends-ivae analyze results/ --dfnc --force     # add dynamic FNC (replaces the analysis fit wrote)
    trends-ivae analyze results/ --dfnc --n-states 4 --out dfnc/

Reads the fit folder (BIDS or MELODIC layout: the per-run time courses, the group maps,
``prepared.h5`` and ``model/prior.npz``) and writes ``FIT_DIR/analysis/`` (or ``--out``)
whole or not at all; an existing folder is replaced only with ``--force`` and only when
it holds nothing but the tool's own files. The files are described in
``docs/analysis.md``; the work is :func:`trends_ivae.workflow.analyze.analyze_folder`.
"""
from __future__ import annotations

import argparse
import sys

from ._common import HELP_FORMATTER, count_or_auto, existing_dir, is_auto


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze", help="FNC, dFNC, spectra and the prior's dynamics of a fit (FIT_DIR/analysis/)",
        description="Network connectivity (static and dynamic), spectra and the model's prior over time, "
                    "from the output folder of 'trends-ivae fit' (BIDS or MELODIC layout).",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("fit_dir", metavar="FIT_DIR", help="output folder of 'trends-ivae fit'")
    p.add_argument("--out", metavar="DIR", help="where to write (default: FIT_DIR/analysis)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing analysis folder of the tool's own files (never other files)")
    p.add_argument("--kinds", nargs="+", choices=("model", "dualreg"), default=["model", "dualreg"],
                   help="time courses analysed: the model's own (model) and/or spatial regression of the group "
                        "maps onto each run (dualreg, needs prepared.h5)")
    p.add_argument("--no-prior", dest="prior", action="store_false",
                   help="leave out the prior's mean and variance per volume")
    g = p.add_argument_group("post-processing (before FNC and spectra)")
    g.add_argument("--detrend", type=int, default=3, metavar="DEGREE",
                   help="degree of the polynomial removed per run (-1: none)")
    g.add_argument("--no-despike", dest="despike", action="store_false", help="do not despike")
    g.add_argument("--low-pass", type=float, default=0.15, metavar="HZ",
                   help="Butterworth low-pass cut-off at each run's TR (0: none; spectra never use it)")
    d = p.add_argument_group("dynamic FNC (--dfnc)")
    d.add_argument("--dfnc", action="store_true", help="compute dynamic FNC (sliding windows, k-means states)")
    d.add_argument("--window", type=int, default=22, metavar="TRS", help="window length in volumes")
    d.add_argument("--sigma", type=float, default=3.0, metavar="TRS", help="Gaussian taper's SD in volumes")
    d.add_argument("--n-states", type=count_or_auto, default="auto", metavar="K",
                   help="number of states, or auto (the elbow over 2..8)")
    d.add_argument("--metric", choices=("cityblock", "euclidean"), default="cityblock",
                   help="k-means distance")
    d.add_argument("--seed", type=int, default=0, help="k-means seed")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae analyze``; returns the exit code."""
    fit_dir = existing_dir(parser, args.fit_dir, "FIT_DIR")
    if args.window < 3:
        parser.error("--window must be >= 3 volumes")
    if not is_auto(args.n_states) and int(args.n_states) < 1:
        parser.error("--n-states must be >= 1 or auto")
    if args.low_pass < 0:
        parser.error("--low-pass must be >= 0 Hz")
    from ..workflow.analyze import AnalyzeSettings, DFNCSettings, PostprocessSettings, analyze_folder
    from ..workflow.fit import WorkflowError

    settings = AnalyzeSettings(
        postprocess=PostprocessSettings(detrend=None if args.detrend < 0 else args.detrend, despike=args.despike,
                                        low_pass=args.low_pass or None),
        dfnc=DFNCSettings(window=args.window, sigma=args.sigma, metric=args.metric, random_state=args.seed,
                          n_states=None if is_auto(args.n_states) else int(args.n_states)) if args.dfnc else None,
        kinds=tuple(dict.fromkeys(args.kinds)), prior=args.prior)
    try:
        result = analyze_folder(fit_dir, out=args.out, settings=settings, force=args.force)
    except WorkflowError as exc:
        print(f"trends-ivae analyze: error: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    parts = [f"static FNC ({', '.join(result.fnc)})", "spectra"]
    if result.dfnc:
        parts.append("dFNC (" + ", ".join(f"{k}: {d.n_states} states" for k, d in result.dfnc.items()) + ")")
    if result.prior is not None:
        parts.append("the prior's dynamics")
    print(f"wrote {result.out_dir}: {', '.join(parts)}; {len(result.files)} files in {result.seconds:.1f} s")
    return 0
