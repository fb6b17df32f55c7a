"""``trends-ivae label``: name a fit's components (templates) and call each a network or an artifact.

Examples::

    trends-ivae label results/ --templates NeuroMark_fMRI_1.0.nii --key NeuroMark_labels.txt
    trends-ivae label results/ --templates RSN.nii --key RSN.txt --order-by-domain
    trends-ivae label results/                     # the network-or-artifact class only

Adds columns to ``OUT/group/desc-ivae_labels.tsv`` (``network``, ``domain``,
``network_r``, ``best_network``, ``best_network_r``; ``class``, ``class_reasons``) and writes
``desc-ivae_templatematch.tsv``, ``desc-ivae_templatefit.tsv`` and
``desc-ivae_features.tsv`` beside it. See ``docs/labels_denoise_stats.md``.

The work is :func:`trends_ivae.workflow.labels.label_fit_folder`.
"""
from __future__ import annotations

import argparse
import sys

from ._common import HELP_FORMATTER, existing_dir, existing_file, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "label", help="name components from templates; network or artifact (into labels.tsv)",
        description="Match a fit's group maps with template maps or an atlas (spatial correlation, best and "
                    "one-to-one), and call each component a network, an artifact or uncertain.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("out", metavar="FIT_DIR", help="output folder of 'trends-ivae fit' (BIDS layout)")
    p.add_argument("--templates", metavar="FILE",
                   help="4-D template maps, 4-D ROIs (with a network list as --key) or a 3-D label atlas, "
                        "in the maps' space (resampled to their grid)")
    p.add_argument("--key", metavar="FILE",
                   help="the templates' names: a labels TSV, a GIFT/NeuroMark 'INDEX NAME [DOMAIN]' .txt, one "
                        "name per line, or 'NAME, ROI, ROI, ...' lines (GIFT RSN.txt)")
    p.add_argument("--min-r", type=float, default=0.2, metavar="R",
                   help="spatial correlation a one-to-one match needs to name a network")
    p.add_argument("--order-by-domain", action="store_true",
                   help="add a domain_order column (components ordered by domain, then network)")
    p.add_argument("--no-classify", dest="classify", action="store_false",
                   help="skip the network-or-artifact features and class")
    p.add_argument("--no-tissue", dest="tissue", action="store_false", default=None,
                   help="leave out the grey/white matter/CSF shares (used by default when the maps are in MNI space)")
    p.add_argument("--force", action="store_true", help="replace this command's own earlier files")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae label``; returns the exit code."""
    out = existing_dir(parser, args.out, "FIT_DIR")
    if args.templates:
        existing_file(parser, args.templates, "--templates")
    if args.key:
        if not args.templates:
            parser.error("--key needs --templates")
        existing_file(parser, args.key, "--key")
    if not args.templates and not args.classify:
        parser.error("nothing to do: give --templates, or drop --no-classify")
    if not -1.0 <= args.min_r <= 1.0:
        parser.error("--min-r must be a correlation, between -1 and 1")
    setup_logging(args.verbose)
    from ..workflow.fit import WorkflowError
    from ..workflow.labels import LabelSettings, label_fit_folder

    settings = LabelSettings(templates=args.templates, key=args.key, min_r=args.min_r,
                             order_by_domain=args.order_by_domain, classify=args.classify, tissue=args.tissue,
                             force=args.force)
    try:
        result = label_fit_folder(out, settings)
    except (WorkflowError, FileExistsError) as exc:
        print(f"trends-ivae label: error: {exc}", file=sys.stderr)
        return 1
    table = result.labels
    if "network" in table:
        found = int(result.template_fit["found"].sum())
        print(f"templates: {found} of {len(result.template_fit)} found (r >= {args.min_r}); "
              f"{int(table['network'].notna().sum())} of {len(table)} components named")
    if "class" in table:
        counts = table["class"].value_counts()
        print("classes: " + ", ".join(f"{counts.get(c, 0)} {c}" for c in ("network", "artifact", "uncertain")))
    print(f"wrote {len(result.written)} files in {out}/group")
    return 0
