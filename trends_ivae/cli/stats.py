"""``trends-ivae stats``: a group GLM over a fit's subject maps, FNC edges and spectra.

Examples::

    trends-ivae stats results/ --participants participants.tsv --design "group + age" \\
        --contrast "group[patient] - group[control]"
    trends-ivae stats results/ --participants participants.tsv --design "age + C(site)" --contrast age \\
        --n-perm 5000 --out results/stats-age

Design and contrast: a small subset of patsy's syntax (``a + b``, ``C(x)``, ``name[level]``),
described in ``docs/labels_denoise_stats.md``. The work is
:func:`trends_ivae.workflow.group_stats.group_stats`.
"""
from __future__ import annotations

import argparse
import sys

from ._common import HELP_FORMATTER, existing_dir, existing_file, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats", help="group GLM over subject maps, FNC and spectra (t, z, p, FDR; permutations)",
        description="Fit one GLM over the fit's subjects (participants.tsv, a formula design) and test one "
                    "contrast on every voxel of the subject maps, every static FNC edge and each component's "
                    "fALFF, with FDR per family and optional permutations.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("fit_dir", metavar="FIT_DIR", help="output folder of 'trends-ivae fit' (BIDS layout)")
    p.add_argument("--participants", required=True, metavar="FILE",
                   help="participants.tsv: participant_id (with or without sub-) and the design's columns")
    p.add_argument("--design", required=True, metavar="FORMULA",
                   help="'group + age': columns joined with +; text columns or C(name) are factors, coded "
                        "against their first level")
    p.add_argument("--contrast", required=True, metavar="EXPR",
                   help="'group[patient] - group[control]', 'age', '0.5*site[B] - 0.5*site[A]'")
    p.add_argument("--out", metavar="DIR", help="output folder (default: FIT_DIR/stats)")
    p.add_argument("--n-perm", type=int, default=0, metavar="N",
                   help="permutations for family-wise p values (nilearn permuted_ols); 0: none")
    p.add_argument("--alpha", type=float, default=0.05, help="FDR level of the thresholded maps and the counts")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--force", action="store_true", help="replace an earlier output folder of trends-ivae's")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae stats``; returns the exit code."""
    fit_dir = existing_dir(parser, args.fit_dir, "FIT_DIR")
    existing_file(parser, args.participants, "--participants")
    if args.n_perm < 0:
        parser.error("--n-perm must be >= 0")
    if not 0 < args.alpha < 1:
        parser.error("--alpha must be between 0 and 1")
    setup_logging(args.verbose)
    from ..workflow.fit import WorkflowError
    from ..workflow.group_stats import StatsSettings, group_stats

    settings = StatsSettings(participants=args.participants, design=args.design, contrast=args.contrast,
                             out=args.out, n_perm=args.n_perm, alpha=args.alpha, random_state=args.seed,
                             force=args.force)
    try:
        result = group_stats(fit_dir, settings)
    except (WorkflowError, FileExistsError) as exc:
        print(f"trends-ivae stats: error: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{fam} {n}" for fam, n in result.significant.items())
    print(f"tests with q < {args.alpha}: {counts}; wrote {result.out}")
    return 0
