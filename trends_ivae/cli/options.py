"""The option groups that several commands share, their checks, and argv -> settings.

``add_*_arguments`` add a group to a parser; ``check_*`` refuse inconsistent options with
``parser.error`` (exit code 2, nothing done); :func:`prepare_request` and
:func:`fit_settings` turn a parsed ``argparse.Namespace`` into the workflow layer's
settings objects (:mod:`trends_ivae.workflow`), so that no Namespace goes further. No
heavy imports: ``--help`` and the parsing stay fast, and never load torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..data.settings import PrepareSettings
    from ..workflow import FitResult, FitSettings, PrepareRequest
    from ..workflow.fit_options import RunSelection

from ._common import Default, count_or_auto, existing_file, parser_checked, training_verbosity, wants_progress

#: nilearn's fMRIPrep strategies (trends_ivae.data.settings.DENOISE_STRATEGIES; not imported for --help)
DENOISE_CHOICES = ("simple", "scrubbing", "compcor", "ica_aroma")


def add_input_arguments(p: argparse.ArgumentParser, title: str = "input (either --bids or --func)") -> None:
    """The input options (``--bids`` and its filters, or ``--func`` with its files)."""
    src = p.add_argument_group(title)
    src.add_argument("--bids", metavar="DIR", help="BIDS dataset (or fMRIPrep derivatives) root")
    src.add_argument("--task", help="BIDS task label to keep")
    src.add_argument("--session", help="BIDS session label to keep")
    src.add_argument("--run", nargs="+", help="BIDS run labels to keep")
    src.add_argument("--participant-label", nargs="+", metavar="L", help="subjects to keep (with or without 'sub-')")
    src.add_argument("--space", help="keep only files with this space- entity (derivatives)")
    src.add_argument("--func", nargs="+", metavar="FILE", help="4D NIfTI runs")
    src.add_argument("--events", nargs="+", metavar="FILE", help="events TSV, one per --func")
    src.add_argument("--confounds-file", nargs="+", metavar="FILE", help="confounds TSV/TXT, one per --func")
    src.add_argument("--subject", nargs="+", metavar="L",
                     help="subject label of each --func (default: sub- entity of the name, else one subject per file)")
    src.add_argument("--participants", metavar="FILE", help="participants.tsv for --func input")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """The u, masking/cleaning and reduction options of the prepare stage."""
    aux = p.add_argument_group("auxiliary variable u")
    aux.add_argument("--aux", default="task",
                     help="factors joined with '+': task, window, subject, run or a participants.tsv column "
                          "(fit and the BIDS App: window when no run has events and --aux is not given)")
    aux.add_argument("--aux-combine", choices=["concat", "product"], default="concat",
                     help="several factors as concatenated one-hot columns (continuous u), or as "
                          "one discrete label per combination (needs many volumes per combination)")
    aux.add_argument("--window", type=int, metavar="N", help="sliding-window length in volumes")
    aux.add_argument("--step", type=int, metavar="N", help="sliding-window step in volumes (default: --window)")
    aux.add_argument("--hrf-delay", type=float, default=0.0, metavar="S", help="seconds added to event onsets")
    aux.add_argument("--min-event-duration", type=float, metavar="S",
                     help="lengthen shorter events to this (default: zero-duration events mark their volume)")

    cl = p.add_argument_group("masking and cleaning")
    cl.add_argument("--tr", type=float, metavar="S", help="repetition time; overrides sidecars and headers")
    cl.add_argument("--mask", metavar="FILE", help="brain mask (default: intersection of EPI masks)")
    cl.add_argument("--resample-to-first", action="store_true",
                    help="resample runs/mask on another grid to the first run's grid instead of failing")
    cl.add_argument("--confounds", nargs="+", metavar="COLUMN",
                    help="confound columns to regress (patterns allowed; default: all columns of --confounds-file)")
    cl.add_argument("--denoise", choices=DENOISE_CHOICES, metavar="STRATEGY",
                    help="fMRIPrep denoising by nilearn's load_confounds_strategy: "
                         f"{', '.join(DENOISE_CHOICES)}; regresses the strategy's confounds and leaves the "
                         "volumes it censors (non-steady-state; scrubbing: high motion) out of x and u. "
                         "Needs fMRIPrep outputs (*_desc-confounds_timeseries.tsv and .json next to each "
                         "run); instead of --confounds")
    cl.add_argument("--drop-initial", type=int, default=0, metavar="N",
                    help="drop the first N volumes of every run before cleaning (non-steady state); the time "
                         "courses then have N fewer volumes per run. Volumes flagged by fMRIPrep's "
                         "non_steady_state_outlier* confound columns are dropped whenever confounds are given")
    cl.add_argument("--detrend", action=argparse.BooleanOptionalAction, default=True, help="linear detrending")
    cl.add_argument("--standardize", action="store_true", help="z-score each voxel's time series per run")
    cl.add_argument("--high-pass", type=float, metavar="HZ", help="high-pass cut-off")
    cl.add_argument("--low-pass", type=float, metavar="HZ", help="low-pass cut-off")
    cl.add_argument("--smoothing-fwhm", type=float, metavar="MM", help="spatial smoothing")

    red = p.add_argument_group("reduction")
    red.add_argument("--n-dims", type=count_or_auto, default=None, metavar="D",
                     help="dimension of the shared basis, or 'auto' (the estimated model order; see "
                          "docs/prepare.md) (default: --n-components where there is one, i.e. fit and the "
                          "BIDS App; 30 for prepare). More dimensions than components cost the temporal iVAE "
                          "time, not accuracy: see docs/prepare.md")
    red.add_argument("--whiten", action="store_true", help="scale components to unit variance")
    red.add_argument("--n-keep", type=int, metavar="M", help="MIGP running rows (default max(4 D, 100))")
    red.add_argument("--subject-dims", type=int, metavar="K", help="compress each subject to K components first")
    red.add_argument("--n-jobs", type=int, default=1, metavar="N", help="subjects processed in parallel")
    red.add_argument("--cache-dir", metavar="DIR", help="where cleaned subject data are cached (default: temp)")
    red.add_argument("--scheduler", choices=["joblib", "dask"], default="joblib",
                     help="what runs the per-subject work: joblib on this machine, or Dask "
                          "(pip install 'trends-ivae[dask]'; see docs/scale.md)")
    red.add_argument("--dask-address", metavar="ADDR",
                     help="a running Dask scheduler, e.g. tcp://node1:8786 (default with --scheduler dask: "
                          "a local cluster of --n-jobs workers)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The iVAE options of ``fit`` and the BIDS App."""
    m = p.add_argument_group("model")
    m.add_argument("--n-components", type=count_or_auto, default=10, metavar="N",
                   help="number of components, or 'auto': estimated from the data by Minka's Laplace PCA "
                        "estimate, as MELODIC -d 0 (printed, and recorded in model/config.json)")
    m.add_argument("--prior", choices=["gauss", "laplace", "normal"], default="gauss",
                   help="conditional prior p(z|u); 'normal' is the vanilla VAE baseline")
    m.add_argument("--ica", choices=["auto", "temporal", "spatial"], default="auto",
                   help="temporal ICA (volumes are the samples, time courses the sources, u from events or "
                        "windows) or spatial ICA (voxels are the samples, maps the sources, u from space, as "
                        "GIFT, MELODIC and CanICA); auto: temporal for runs with task events, else spatial")
    m.add_argument("--spatial-aux", default="segments", metavar="SPEC",
                   help="the spatial u (--ica spatial): segments (k-means of the voxel coordinates), atlas "
                        "(the parcels of --aux-atlas), rbf (radial basis functions of position), or several "
                        "joined by '+'")
    m.add_argument("--n-segments", type=int, nargs="+", default=100, metavar="N",
                   help="number of k-means segments of the spatial u; several numbers: one factor per scale")
    m.add_argument("--aux-atlas", metavar="FILE",
                   help="a label image on the data's grid whose parcels are the levels of --spatial-aux atlas")
    m.add_argument("--n-rbf", type=int, default=32, metavar="N",
                   help="number of radial basis functions of --spatial-aux rbf")
    m.add_argument("--estimator", choices=["vae", "flow"], default="vae",
                   help="the iVAE with Gaussian noise (vae), or the exact-likelihood flow started from "
                        "linear ICA (flow)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    m.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    m.add_argument("--n-init", type=int, default=None, metavar="K",
                   help="restarts, the first from linear ICA; the vae keeps the best held-out ELBO, the flow "
                        "the restart most similar to the others (default: 3 in the temporal mode, 1 in the "
                        "spatial mode, where restarts from random starts won on ELBO with worse maps, and "
                        "1 for --estimator flow)")
    m.add_argument("--max-epochs", type=int, metavar="N",
                   help="maximum epochs per restart (default: enough for ~3000 steps, at least IVAE's)")
    m.add_argument("--batch-size", type=int, metavar="N",
                   help="mini-batch size (default: IVAE's, at most a quarter of the training volumes)")
    m.add_argument("--nonlinearity-test", action="store_true",
                   help="after the fit, test whether the data need the nonlinear model: the model and its "
                        "linear counterpart (linear ICA with the same prior) fitted on half the subjects "
                        "and scored on the other half, both ways (4 more fits); the answer goes into the "
                        "summary, the maps' sidecars, model/config.json and the report")


#: the help of ``--no-report``, the same in ``fit`` and the BIDS App
NO_REPORT_HELP = ("do not write report.html beside the results (it is written for the BIDS layout only; "
                  "write it later with 'trends-ivae report DIR')")


def add_output_arguments(p: Any) -> None:
    """``--no-keep-prepared`` and ``--no-report``, one meaning in ``fit`` and the BIDS App
    (``p``: a parser or one of its argument groups)."""
    p.add_argument("--no-keep-prepared", dest="keep_prepared", action="store_false",
                   help="do not keep prepared.h5 with the results")
    p.add_argument("--no-report", dest="report", action="store_false", help=NO_REPORT_HELP)


def n_dims_of(args: argparse.Namespace, default: int | str) -> int | str:
    """``--n-dims``, or ``default`` when not given (fit and the BIDS App: ``--n-components``)."""
    return default if args.n_dims is None else args.n_dims


def check_prepare_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser, n_dims: int | str) -> None:
    """The prepare options that do not depend on the input: ``--n-dims``, ``--tr`` and the scheduler."""
    from ..workflow import checks

    parser_checked(parser, checks.check_prepare_values, n_dims, args.tr, args.n_jobs, args.scheduler,
                   args.dask_address)


def check_input_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser, n_dims: int | str) -> None:
    """Refuse inconsistent input and prepare options (``parser.error``, exit code 2)."""
    parser_checked(parser, run_selection(args).check)
    if args.mask:
        existing_file(parser, args.mask, "--mask")
    check_denoise_arguments(args, parser, args.confounds_file)
    check_prepare_arguments(args, parser, n_dims)


def check_denoise_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser,
                            confounds_file: list | None = None) -> None:
    """``--denoise`` takes its confounds from fMRIPrep: not with ``--confounds`` or ``--confounds-file``."""
    from ..workflow import checks

    parser_checked(parser, checks.check_denoise, args.denoise, args.confounds, confounds_file)


def check_scheduler_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--scheduler`` / ``--dask-address`` / ``--n-jobs``: consistent, and dask importable."""
    from ..workflow import checks

    parser_checked(parser, checks.check_scheduler, args.n_jobs, args.scheduler, args.dask_address)


def check_model_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--n-components``, ``--n-init`` and ``--device`` (torch is imported only for a named device)."""
    from ..workflow import checks

    parser_checked(parser, checks.check_model_values, args.n_components, args.n_init, args.device)


def check_components_fit(args: argparse.Namespace, parser: argparse.ArgumentParser, n_dims: int | str,
                         suffix: str = "") -> None:
    """``--n-components`` at most the reduced dimension (when both are numbers)."""
    from ..workflow import checks

    parser_checked(parser, checks.check_components_fit, args.n_components, n_dims, suffix)


# -- argv -> settings ---------------------------------------------------------------------
def run_selection(args: argparse.Namespace) -> "RunSelection":
    """The :class:`~trends_ivae.workflow.RunSelection` of the input options."""
    from ..workflow.fit_options import RunSelection

    return RunSelection(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunSelection)})


def runs_from_args(args: argparse.Namespace) -> list:
    """The runs named by the input options, as ``RunSpec`` objects.

    Raises
    ------
    trends_ivae.data.PrepareError
        No run matches (the message lists what there is), or a file is unusable.
    """
    return run_selection(args).runs(with_confounds=bool(args.confounds))


def prepare_settings(args: argparse.Namespace, n_dims: int | str) -> "PrepareSettings":
    """The :class:`~trends_ivae.data.settings.PrepareSettings` of the prepare options.

    Raises
    ------
    trends_ivae.data.PrepareError
        A value the settings refuse (the message names it).
    """
    from ..data.settings import PrepareSettings
    from ..workflow.fit_options import PREPARE_OPTIONS

    return PrepareSettings.from_options(aux=str(args.aux), n_dims=n_dims,
                                        **{name: getattr(args, name) for name in PREPARE_OPTIONS})


def prepare_request(args: argparse.Namespace, n_dims: int | str) -> "PrepareRequest":
    """The :class:`~trends_ivae.workflow.PrepareRequest` of the input and prepare options.

    ``choose_aux`` is set when ``--aux`` was left at a :class:`~._common.Default`.

    Raises
    ------
    trends_ivae.data.PrepareError
        As :func:`runs_from_args` and :func:`prepare_settings`.
    """
    from ..workflow import PrepareRequest

    return PrepareRequest(runs=runs_from_args(args), settings=prepare_settings(args, n_dims), mask=args.mask,
                          tr=args.tr, verbose=args.verbose, progress=wants_progress(args),
                          choose_aux=isinstance(args.aux, Default))


def fit_settings(args: argparse.Namespace, n_jobs: int = 1) -> "FitSettings":
    """The :class:`~trends_ivae.workflow.FitSettings` of the model options."""
    from ..workflow import FitSettings

    return FitSettings.from_options(args, verbose=training_verbosity(args), n_jobs=n_jobs)


def arguments_record(args: argparse.Namespace, **resolved: Any) -> dict:
    """The parsed options as recorded in the configuration files (``command`` apart; paths as
    strings), with the values resolved since parsing (``resolved``)."""
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "command"}
    return record | resolved


def notifier(prog: str) -> Callable[[str], None]:
    """A ``notify`` for the workflows: each note on stderr after the command's name."""
    def notify(message: str) -> None:
        print(f"{prog}: {message}", file=sys.stderr)
    return notify


def print_fit_result(result: "FitResult", prog: str) -> None:
    """The fit's summary line, and where the report is (or, on stderr, why it failed)."""
    print(f"wrote {result.out_dir}: {result.summary}, {result.seconds:.1f} s")
    if result.nonlinearity is not None:
        print(f"nonlinearity test: {result.nonlinearity['summary']}")
    if result.report is not None:
        print(f"report: {result.report}")
    elif result.report_error:
        print(f"{prog}: warning: the fit outputs are complete, but the report failed "
              f"({result.report_error}); retry with 'trends-ivae report {result.out_dir}'", file=sys.stderr)
