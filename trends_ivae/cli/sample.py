"""``trends-ivae sample``: generate a synthetic fMRI run from a fitted model.

Examples::

    trends-ivae sample results/ --out synth/sub-01_task-sim_bold.nii.gz
    trends-ivae sample results/ --events run-1_events.tsv --out synth/sub-01_task-sim_bold.nii.gz
    trends-ivae sample results/ --condition motor --n-volumes 60 --out motor_bold.nii.gz

Reads the output folder of ``trends-ivae fit`` (``model/ivae.pt``, ``prepared.h5``),
draws the sources from p(z|u) for every volume's u, decodes them with the model's noise
and maps them through the group basis to voxels. Writes the 4D NIfTI (``--out``), its
events (``*_events.tsv``, when u has a task factor) and a JSON sidecar marking the run as
synthetic and naming the model. Existing files are not overwritten without ``--force``;
nothing is written when an input is wrong. See ``docs/cli.md``.
"""
from __future__ import annotations

import argparse
import json
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
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress output (-v)")
    return p


def _companions(out: Path) -> tuple[Path, Path]:
    """The events TSV and JSON sidecar beside ``out`` (BIDS names for ``*_bold.nii[.gz]``)."""
    name = out.name
    stem = name[:-7] if name.endswith(".nii.gz") else name[:-4]
    base = stem[:-5] if stem.endswith("_bold") else stem
    return out.with_name(f"{base}_events.tsv"), out.with_name(f"{stem}.json")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import nibabel as nib

    from ..atomic import atomic_path, write_json_atomic
    from ..group.group_ivae import GroupIVAE

    setup_logging(args.verbose)
    existing_dir(parser, args.fit_dir, "FIT")
    out = Path(args.out)
    if not out.name.endswith((".nii", ".nii.gz")):
        parser.error(f"--out {str(out)!r}: the file name must end in .nii or .nii.gz")
    if args.events is not None and not Path(args.events).is_file():
        parser.error(f"--events {args.events!r}: no such file")
    events_path, sidecar_path = _companions(out)
    if not args.force:
        existing = [str(p) for p in (out, events_path, sidecar_path) if p.exists()]
        if existing:
            parser.error(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    try:
        model = GroupIVAE.load(args.fit_dir, device=args.device)
        sampled = model.sample(args.events, n_volumes=args.n_volumes, condition=args.condition,
                               subject=args.subject, like_run=args.like_run, noise=args.noise,
                               random_state=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    sidecar = dict(sampled.sidecar, Sources=str(Path(args.fit_dir).resolve()))
    with atomic_path(out, suffix=".tmp" + (".nii.gz" if out.name.endswith(".gz") else ".nii")) as tmp:
        nib.save(sampled.img, tmp)
    if sampled.events is not None:
        with atomic_path(events_path) as tmp:
            sampled.events.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    write_json_atomic(sidecar_path, json.loads(json.dumps(sidecar, default=str)))
    print(f"wrote {out}: {sampled.img.shape[-1]} synthetic volumes (TR {sampled.tr:g} s) from "
          f"{sidecar['Model']['Estimator']} in {args.fit_dir}"
          + (f"; events in {events_path}" if sampled.events is not None else ""))
    return 0
