"""One tiny fitted folder shared by the analysis tests (labels, denoise): fitted once per session.

The fit is cached at module level (``functools.cache``) in a temporary folder removed at
exit, so that ``test_analysis_labels.py`` and ``test_analysis_denoise.py`` pay for one fit.
Tests copy it before changing it.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import warnings
from pathlib import Path

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "8",
        "--batch-size", "32", "--seed", "0"]


@functools.cache
def fitted_folder() -> tuple[Path, Path, object]:
    """(fit folder, BIDS root, the simulation) of a 2-subject, 3-component fit."""
    from trends_ivae.cli.main import main
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    root = Path(tempfile.mkdtemp(prefix="trends-ivae-analysis-"))
    atexit.register(shutil.rmtree, root, True)
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=5))
    bids = write_bids(sim, root / "bids")
    out = root / "fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), "--no-report", *FAST]) == 0
    return out, bids, sim
