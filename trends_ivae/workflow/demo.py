"""The demo: fit the shipped sample data (or a simulation like it) and score it against the truth.

:func:`demo_to_folder` is what ``trends-ivae demo`` runs: the sample data's runs
(``sample_data/bids``, a small simulated BIDS dataset with known truth), or, without the
source tree's ``sample_data`` (an installed package), the same kind of dataset simulated
first into a temporary folder; u from task blocks and sliding windows; then
:func:`~trends_ivae.workflow.fit.fit_to_folder`, and the recovered time courses compared
with the simulated truth.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fit import FitResult, FitSettings, OutputSettings, WorkflowError, fit_to_folder

__all__ = ["DemoSettings", "DemoResult", "demo_to_folder", "sample_bids_dir"]


def sample_bids_dir() -> Path | None:
    """``sample_data/bids`` of the source tree, if present."""
    here = Path(__file__).resolve().parents[2] / "sample_data" / "bids"
    return here if (here / "dataset_description.json").is_file() else None


@dataclass
class DemoSettings:
    """The demo's options (``trends-ivae demo``'s flags).

    Attributes
    ----------
    n_components : int, default=8
        Components (and reduced dimensions).
    seed : int, default=0
        The random seed.
    n_init : int, default=3
        Restarts.
    device : str, default="auto"
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    verbose : int, default=1
        Progress output (0: none).
    progress : bool, default=False
        Per-subject progress bars while preparing (on a terminal).
    """

    n_components: int = 8
    seed: int = 0
    n_init: int = 3
    device: str = "auto"
    verbose: int = 1
    progress: bool = False


@dataclass
class DemoResult:
    """What :func:`demo_to_folder` did.

    Attributes
    ----------
    fit : FitResult
        The fit, as :func:`~trends_ivae.workflow.fit.fit_to_folder` returns it.
    data : Path
        The BIDS dataset fitted (the sample data; a simulated one is deleted afterwards).
    simulated : bool
        Whether the data were simulated because ``sample_data/`` was not found.
    truth_mcc : float or None
        Time-course MCC of the fit against the simulated truth (1 = perfect recovery);
        None when the truth or the time courses could not be read.
    """

    fit: FitResult
    data: Path
    simulated: bool
    truth_mcc: float | None


def demo_to_folder(out_dir: str | Path, settings: DemoSettings | None = None, *,
                   arguments: Mapping[str, Any] | None = None,
                   notify: Callable[[str], None] | None = None) -> DemoResult:
    """Fit the sample data into ``out_dir`` (an earlier demo output there is replaced).

    Parameters
    ----------
    out_dir : path
        The output folder.
    settings : DemoSettings, optional
        The demo's options (default ``DemoSettings()``).
    arguments : mapping, optional
        The command-line arguments, recorded in ``model/config.json``.
    notify : callable, optional
        Called with a one-line note on what happens (the simulation fallback, the fit).

    Raises
    ------
    WorkflowError
        As :func:`~trends_ivae.workflow.fit.fit_to_folder`; a preparation problem too.
    """
    from ..data.bids import find_bids_runs
    from ..data.errors import PrepareError
    from ..data.settings import PrepareSettings
    from .prepare import PrepareRequest

    settings = settings or DemoSettings()
    say = notify or (lambda message: None)
    tmp = None
    bids = sample_bids_dir()
    if bids is None:
        from ..simulate import FMRISimParams, simulate_fmri, write_bids

        tmp = Path(tempfile.mkdtemp(prefix="trends_ivae_demo_"))
        say("sample_data/ not found: simulating a small BIDS dataset first ...")
        bids = write_bids(simulate_fmri(FMRISimParams(n_subjects=4, n_volumes=160, n_components=8,
                                                      seed=2024)), tmp / "bids")
    say(f"fitting {settings.n_components} components on {bids}")
    try:
        try:
            request = PrepareRequest(runs=find_bids_runs(bids),
                                     settings=PrepareSettings.from_options(aux="task+window", window=20,
                                                                           n_dims=settings.n_components),
                                     verbose=settings.verbose, progress=settings.progress)
            fit = FitSettings(n_components=settings.n_components, device=settings.device, seed=settings.seed,
                              n_init=settings.n_init, verbose=settings.verbose)
            result = fit_to_folder(request, out_dir, fit=fit, output=OutputSettings(force=True), command="demo",
                                   arguments={**(arguments or {}), "bids": str(bids)}, source=str(bids))
        except PrepareError as exc:
            raise WorkflowError(str(exc)) from exc
        return DemoResult(fit=result, data=bids, simulated=tmp is not None,
                          truth_mcc=truth_mcc(Path(out_dir), bids))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def truth_mcc(out_dir: Path, bids: Path) -> float | None:
    """Time-course MCC of the fit in ``out_dir`` against the simulated truth of ``bids``
    (None when either cannot be read)."""
    import numpy as np
    import pandas as pd

    from ..metrics import mcc
    from ..simulate import load_truth

    try:
        truth = load_truth(bids)
    except (OSError, ValueError, KeyError):
        return None
    est, tru = [], []
    for i, subject in enumerate(truth.subjects):
        tsv = sorted(out_dir.glob(f"sub-{subject}/**/*_desc-ivae_timeseries.tsv"))
        if not tsv:
            return None
        est.append(pd.read_csv(tsv[0], sep="\t").to_numpy())
        tru.append(truth.timecourses[i])
    return float(mcc(np.concatenate(est), np.concatenate(tru)).score)
