"""``trends-ivae report``: the HTML report of a fit.

Examples::

    trends-ivae report results/
    trends-ivae report results/ --subject 03 --atlas atlas_dseg.nii.gz --atlas-labels atlas_dseg.tsv

Writes ``OUT/report.html`` (or ``--output``): one self-contained page (figures and the
interactive viewer embedded, no network) with a summary, the training curve, a table of
components with peak coordinates (and atlas regions), and per component the maps, glass
brain, time course, power spectrum and learned prior. ``trends-ivae fit`` writes it at
the end unless ``--no-report``. See ``docs/report.md``.

This module parses and checks the options; the work is
:func:`trends_ivae.workflow.report_for_folder`.
"""
from __future__ import annotations

import argparse
import sys

from ._common import HELP_FORMATTER, existing_dir, existing_file, setup_logging


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="write the HTML report of a fit (OUT/report.html)",
        description="Build a self-contained HTML report from the output folder of 'trends-ivae fit'.",
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("out", metavar="OUT", help="output folder of 'trends-ivae fit'")
    p.add_argument("--output", metavar="FILE",
                   help="where to write the page (default: OUT/report.html); an existing file there is "
                        "replaced only when trends-ivae wrote it")
    p.add_argument("--subject", metavar="LABEL",
                   help="subject whose time course and spectrum are shown (default: the first)")
    p.add_argument("--atlas", metavar="FILE",
                   help="atlas image in the maps' space (3-D labels or 4-D maps): region of each peak")
    p.add_argument("--atlas-labels", metavar="FILE",
                   help="the atlas's names: TSV with index and name columns or a lookup table "
                        "(default: a .tsv next to the atlas image)")
    p.add_argument("--threshold", type=float, default=2.0, metavar="Z",
                   help="|z| below which maps are transparent in the figures and the viewer")
    p.add_argument("--dpi", type=int, default=120, metavar="N",
                   help="resolution of the figures (shown at the same size whatever the dpi: "
                        "higher is sharper, and a larger page)")
    p.add_argument("--no-viewer", dest="interactive", action="store_false",
                   help="leave out the interactive slice viewer")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae report``; returns the exit code."""
    from ..workflow.report import ReportSettings, fit_folder_problem

    out = existing_dir(parser, args.out, "OUT")
    problem = fit_folder_problem(out)
    if problem:
        parser.error(problem)
    if args.atlas:
        existing_file(parser, args.atlas, "--atlas")
    if args.atlas_labels:
        if not args.atlas:
            parser.error("--atlas-labels needs --atlas")
        existing_file(parser, args.atlas_labels, "--atlas-labels")
    if args.dpi < 10:
        parser.error("--dpi must be >= 10")
    from ..workflow.fit import WorkflowError
    from ..workflow.report import check_report_page, report_for_folder, report_page

    try:   # before any work: a file the tool did not write is never replaced
        check_report_page(report_page(out, args.output), "--output" if args.output else "the report page")
    except WorkflowError as exc:
        parser.error(str(exc))
    setup_logging(args.verbose)

    settings = ReportSettings(output=args.output, subject=args.subject, atlas=args.atlas,
                              atlas_labels=args.atlas_labels, threshold=args.threshold, dpi=args.dpi,
                              interactive=args.interactive, verbose=args.verbose)
    try:
        result = report_for_folder(out, settings)
    except WorkflowError as exc:
        print(f"trends-ivae report: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.page} ({result.size / 1e6:.1f} MB) in {result.seconds:.1f} s")
    return 0
