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
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._common import (HELP_FORMATTER, Default, add_common_options, add_quiet_option, check_writable,
                      count_or_auto, existing_file, is_auto, resolve_auto_components, resolve_default_aux,
                      setup_logging, training_verbosity)
from .prepare import add_input_arguments, add_prepare_arguments, check_input_arguments, prepare_kwargs, runs_from_args

log = logging.getLogger("trends_ivae.cli.fit")


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
    p.add_argument("--no-keep-prepared", dest="keep_prepared", action="store_false",
                   help="do not copy prepared.h5 into OUT")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write OUT/report.html (write it later with 'trends-ivae report OUT')")
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


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The iVAE options shared by ``fit`` and ``demo``."""
    m = p.add_argument_group("model")
    m.add_argument("--n-components", type=count_or_auto, default=10, metavar="N",
                   help="number of components, or 'auto': estimated from the data by Minka's Laplace PCA "
                        "estimate, as MELODIC -d 0 (printed, and recorded in model/config.json)")
    m.add_argument("--prior", choices=["gauss", "laplace", "normal"], default="gauss",
                   help="conditional prior p(z|u); 'normal' is the vanilla VAE baseline")
    m.add_argument("--estimator", choices=["vae", "flow"], default="vae",
                   help="the iVAE with Gaussian noise (vae), or the exact-likelihood flow started from "
                        "linear ICA (flow)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    m.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    m.add_argument("--n-init", type=int, default=3, metavar="K",
                   help="restarts, the first from linear ICA; the vae keeps the best held-out ELBO, the flow "
                        "the restart most similar to the others")
    m.add_argument("--max-epochs", type=int, metavar="N",
                   help="maximum epochs per restart (default: enough for ~3000 steps, at least IVAE's)")
    m.add_argument("--batch-size", type=int, metavar="N",
                   help="mini-batch size (default: IVAE's, at most a quarter of the training volumes)")
    m.add_argument("--nonlinearity-test", action="store_true",
                   help="after the fit, test whether the data need the nonlinear model: the model and its "
                        "linear counterpart (linear ICA with the same prior) fitted on half the subjects "
                        "and scored on the other half, both ways (4 more fits); the answer goes into the "
                        "summary, the maps' sidecars, model/config.json and the report")


def check_model_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not is_auto(args.n_components) and args.n_components < 1:
        parser.error("--n-components must be >= 1 (or auto)")
    if args.n_init < 1:
        parser.error("--n-init must be >= 1")
    if args.device != "auto":
        import torch  # noqa: PLC0415 - only to check the device

        dev = args.device.split(":")[0]
        if dev == "cuda" and not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available on this machine (use auto or cpu)")
        if dev == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            parser.error(f"--device {args.device}: MPS is not available on this machine")
        if dev not in ("cpu", "cuda", "mps"):
            parser.error(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps")


def ivae_params(args: argparse.Namespace) -> dict:
    """IVAE keyword arguments given on the command line (GroupIVAE fills in the rest)."""
    params = {}
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    return params


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``trends-ivae fit``; returns the exit code."""
    n_sources = sum(bool(v) for v in (args.bids, args.func, args.prepared))
    if n_sources != 1:
        parser.error("give exactly one of --bids DIR, --func FILE ... or --prepared FILE")
    if getattr(args, "distributed", False) and not args.prepared:
        parser.error("--distributed trains on a prepared file: run 'trends-ivae prepare' (or the BIDS App's "
                     "participant level) first and pass --prepared FILE")
    if args.prepared:
        existing_file(parser, args.prepared, "--prepared")
    else:
        check_input_arguments(args, parser)
        if not is_auto(args.n_components) and not is_auto(args.n_dims) and args.n_components > args.n_dims:
            parser.error(f"--n-components ({args.n_components}) is larger than --n-dims ({args.n_dims}), "
                         "the reduced dimension")
    check_model_arguments(args, parser)
    if getattr(args, "stream_rows", None) is not None and args.stream_rows < 1:
        parser.error("--stream-rows must be >= 1")
    out_dir = Path(args.out)
    if out_dir.exists() and not args.force:
        parser.error(f"{str(out_dir)!r} exists; pass --force to overwrite it")
    refuse_foreign_files(parser, out_dir)
    check_writable(parser, out_dir.absolute().parent, "--out")
    if getattr(args, "checkpoint_dir", None):
        check_writable(parser, args.checkpoint_dir, "--checkpoint-dir")
    setup_logging(args.verbose)
    if getattr(args, "distributed", False):
        return _fit_distributed(args, out_dir)
    return fit_and_write(args, out_dir, source=args.bids or args.prepared)


def refuse_foreign_files(parser: argparse.ArgumentParser, out_dir: Path,
                         within: Sequence[str] | None = None) -> None:
    """Stop (``parser.error``) when ``--force`` would replace a folder holding files the tool did
    not write: they are named, and nothing is deleted (``within``: only these parts of it)."""
    from ..io.export import ForeignFilesError, foreign_files

    foreign = foreign_files(out_dir, within=within)
    if foreign:
        parser.error(str(ForeignFilesError(out_dir, foreign)))


def _fit_distributed(args: argparse.Namespace, out_dir: Path) -> int:
    """``fit --distributed`` under torchrun: every rank trains on its rows, rank 0 also writes."""
    from .. import distributed
    from ..decomposition import GroupIVAE
    from ..io.store import n_rows, read_aux, read_meta, read_rows

    prog = f"trends-ivae {args.command}"
    try:
        distributed.init_from_env(args.device)
        comm = distributed.ProcessGroupComm()   # passed to the fit explicitly
    except RuntimeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        meta = read_meta(args.prepared)
        problem = resolve_auto_components(args, meta["parameters"], int(meta["parameters"]["n_dims"]), prog,
                                          announce=distributed.rank() == 0)
        if problem:
            print(f"{prog}: error: {problem}", file=sys.stderr)
            return 1
        rows = distributed.row_share(n_rows(args.prepared))
        if distributed.rank() == 0:
            return fit_and_write(args, out_dir, source=args.prepared, rows=rows, comm=comm)
        share = read_rows(args.prepared, rows, names=("x",))
        u = read_aux(args.prepared, rows)   # as GroupIVAE.model_u on rank 0 (factors as their codes)
        model = GroupIVAE(n_components=args.n_components, prior=args.prior, n_init=args.n_init,
                          estimator=getattr(args, "estimator", "vae"),
                          ivae_params=ivae_params(args), device=args.device, random_state=args.seed,
                          verbose=0)
        model.fit_rows(share["x"], u, n_rows(args.prepared),
                       checkpoint_dir=getattr(args, "checkpoint_dir", None),
                       stream_rows=getattr(args, "stream_rows", None), comm=comm)
        return 0
    finally:
        distributed.shutdown()


class _RunMaps(Sequence):
    """Each run's subject maps, made when indexed (the writer then holds one at a time)."""

    def __init__(self, subject_maps, subject_of_run: list[int]) -> None:
        self._maps, self._subject = subject_maps, subject_of_run

    def __len__(self) -> int:
        return len(self._subject)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._maps[self._subject[i]]


def summary_line(model, prepared, n_components: int) -> str:
    """The fit's one-line result: the variance all components explain, the ELBO per volume
    (data units, as ``model/elbo.tsv`` and the report) and the stability across restarts, or
    why there is none (one restart)."""
    n_init = int(getattr(model.ivae_, "n_init", 0) or 0)
    stability = model.restart_agreement_
    if n_init < 2 or stability is None or not math.isfinite(float(stability)):
        stab = "stability not computed (it needs two or more restarts, --n-init 2 or more)"
    else:
        stab = f"stability across {n_init} restarts {stability:.2f}"
    total = getattr(model, "total_explained_variance_", None)
    explained = (f"together explaining {100 * total:.1f}% of the cleaned data's variance; "
                 if total is not None and math.isfinite(float(total)) else "")
    return (f"{n_components} components from {prepared.n_subjects} subject(s), {len(prepared.runs)} run(s), "
            f"{explained}held-out ELBO per volume {model.elbo_:.2f} (data units), {stab}")


def fit_and_write(args: argparse.Namespace, out_dir: Path, source: str | None = None,
                  rows: slice | None = None, shown_dir: Path | None = None, comm=None) -> int:
    """Prepare or read, fit, map back, and write ``out_dir``; the exit code.

    ``rows``, ``comm``: train on these rows only, in this process group (rank 0 of a
    distributed fit, :class:`trends_ivae.distributed.ProcessGroupComm`). ``shown_dir``: the
    folder printed as written (the BIDS App writes into a temporary ``out_dir`` and moves
    it there afterwards); default ``out_dir``.
    """
    from .. import __version__
    from ..decomposition import GroupIVAE
    from ..io.layouts import write_layout
    from ..io.images import PrepareError
    from ..io.preparation import prepare
    from ..io.store import read_prepared, write_prepared

    t0 = time.perf_counter()
    prog = f"trends-ivae {args.command}"
    try:
        if getattr(args, "prepared", None):
            try:
                prepared = read_prepared(args.prepared)
            except (OSError, KeyError, ValueError) as exc:
                print(f"{prog}: error: cannot use --prepared {args.prepared!r}: {exc}", file=sys.stderr)
                return 1
            problem = resolve_auto_components(args, prepared.parameters, prepared.n_dims, prog)
            if problem:
                print(f"{prog}: error: {problem} ({args.prepared!r})", file=sys.stderr)
                return 1
            if args.n_components > prepared.n_dims:
                print(f"{prog}: error: --n-components ({args.n_components}) is larger than the reduced "
                      f"dimension of {args.prepared!r} ({prepared.n_dims})", file=sys.stderr)
                return 1
        else:
            runs = runs_from_args(args)
            resolve_default_aux(args, [r.events is not None for r in runs], prog)
            prepared = prepare(runs, **prepare_kwargs(args))
            resolve_auto_components(args, prepared.parameters, prepared.n_dims, prog)   # recorded just now
            if args.n_components > prepared.n_dims:
                print(f"{prog}: error: --n-components ({args.n_components}) is larger than the reduced "
                      f"dimension ({prepared.n_dims}, lowered from --n-dims by the data size)", file=sys.stderr)
                return 1
    except PrepareError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1

    params = ivae_params(args)
    model = GroupIVAE(n_components=args.n_components, prior=args.prior, n_init=args.n_init,
                      estimator=getattr(args, "estimator", "vae"),
                      ivae_params=params, device=args.device, random_state=args.seed,
                      verbose=training_verbosity(args), n_jobs=getattr(args, "n_jobs", 1),
                      **GroupIVAE.prepare_params(prepared))   # the options that ran, for the records
    try:
        model.fit_prepared(prepared, checkpoint_dir=getattr(args, "checkpoint_dir", None), rows=rows,
                           stream_rows=getattr(args, "stream_rows", None),
                           **({} if comm is None else {"comm": comm}))
    except (ValueError, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:   # the only files written while fitting are the checkpoints
        print(f"{prog}: error: could not write a checkpoint in {str(args.checkpoint_dir)!r}: {exc} "
              "(free some space and rerun: training resumes from the last checkpoint)", file=sys.stderr)
        return 1
    fit_seconds = time.perf_counter() - t0
    nonlinearity = None
    if getattr(args, "nonlinearity_test", False):
        nonlinearity = model.test_nonlinearity(prepared).to_dict()

    config = {
        "command": args.command,
        "arguments": {k: v for k, v in vars(args).items() if k != "command"},
        "model": {k: v for k, v in model.get_params().items() if k not in ("mask",)},
        "ivae": model.ivae_.get_params(),
        "prepare": prepared.parameters,
        "aux": {"spec": prepared.aux.get("spec"), "kind": prepared.u_kind, "n_levels": len(prepared.u_names)},
        "results": {"elbo": model.elbo_, "elbo_unit": "per volume, data units (as model/elbo.tsv)",
                    "total_explained_variance": model.total_explained_variance_,
                    "explained_variance_unit": "fraction of the cleaned data's variance (0 to 1)",
                    "estimator": getattr(args, "estimator", "vae"),
                    "stability": model.restart_agreement_,
                    "component_stability": [float(v) for v in model.stability_],
                    "restart_elbos": [float(v) for v in model.ivae_.restart_elbos_],
                    "n_epochs": model.ivae_.n_iter_, "device": str(model.ivae_.device_),
                    "seconds": fit_seconds, "nonlinearity_test": nonlinearity},
        "version": __version__,
        "versions": prepared.versions,
    }

    def extra(root: Path) -> None:
        mdir = root / "model"
        mdir.mkdir(parents=True, exist_ok=True)
        model.ivae_.save(mdir / "ivae.pt")
        (mdir / "config.json").write_text(json.dumps(config, indent=2, default=str))
        hist = model.ivae_.history_
        lines = ["epoch\ttrain_elbo\tval_elbo"]
        lines += [f"{i + 1}\t{t:.6g}\t{v:.6g}" for i, (t, v) in enumerate(zip(hist["train_elbo"], hist["val_elbo"]))]
        (mdir / "elbo.tsv").write_text("\n".join(lines) + "\n")
        if args.keep_prepared:
            write_prepared(root / "prepared.h5", prepared)

    runs = [{**r.get("entities", {}), "sub": r["subject"], "path": r.get("file"), "tr": r.get("tr")}
            for r in prepared.runs]
    for r in runs:
        if not r["path"] or str(r["path"]).startswith("<"):
            r.pop("path")
    subject_maps = _RunMaps(model.subject_maps_, [r["subject_index"] for r in prepared.runs])
    try:
        write_layout(getattr(args, "layout", "bids"), out_dir, mask_img=model.mask_img_,
                     mean_img=getattr(args, "mean_img", None), group_maps=model.components_,
                     effect_maps=model.effects_, runs=runs, timecourses=model.timecourses_,
                     subject_maps=subject_maps, params=config["model"] | {"ivae": config["ivae"]},
                     explained_variance=model.explained_variance_,
                     total_explained_variance=model.total_explained_variance_,
                     stability=model.stability_, source=source, extra=extra,
                     force=args.force, nonlinearity_test=nonlinearity)
    except (OSError, ValueError) as exc:
        kept = " (the previous contents are untouched)" if out_dir.exists() else " (nothing was written)"
        print(f"{prog}: error: could not write {str(out_dir)!r}: {exc}{kept}", file=sys.stderr)
        return 1
    shown = out_dir if shown_dir is None else Path(shown_dir)
    print(f"wrote {shown}: {summary_line(model, prepared, args.n_components)}, "
          f"{time.perf_counter() - t0:.1f} s")
    if nonlinearity is not None:
        print(f"nonlinearity test: {nonlinearity['summary']}")
    if getattr(args, "report", True) and getattr(args, "layout", "bids") == "bids":
        try:  # the fit outputs are written; a report failure must not lose them
            from ..report import build_report

            page = build_report(out_dir)
            print(f"report: {shown / Path(page).relative_to(out_dir)}")
        except Exception as exc:  # noqa: BLE001
            print(f"{prog}: warning: the fit outputs are complete, but the report failed "
                  f"({type(exc).__name__}: {exc}); retry with 'trends-ivae report {out_dir}'",
                  file=sys.stderr)
    return 0
