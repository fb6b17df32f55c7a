"""Simulate to a folder: simulator parameters -> a BIDS dataset with its known truth.

:func:`simulate_to_folder` is what ``trends-ivae simulate`` runs
(:func:`trends_ivae.simulate.simulate_fmri`, then :func:`trends_ivae.simulate.write_bids`).
An existing folder is replaced only with ``force``, and never when it holds files the
tool did not write. Never imports torch.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .fit import WorkflowError

if TYPE_CHECKING:
    from ..simulate.params import FMRISimParams

__all__ = ["SimulateResult", "simulate_to_folder"]

log = logging.getLogger(__name__)


@dataclass
class SimulateResult:
    """What :func:`simulate_to_folder` wrote.

    Attributes
    ----------
    out_dir : Path
        The BIDS dataset.
    truth_dir : Path
        Its truth (``derivatives/truth``; read with :func:`trends_ivae.simulate.load_truth`).
    n_subjects : int
        Subjects simulated.
    n_voxels : int
        In-mask voxels.
    """

    out_dir: Path
    truth_dir: Path
    n_subjects: int
    n_voxels: int


def simulate_to_folder(out_dir: str | Path, params: FMRISimParams, *, dtype: str = "float32",
                       force: bool = False) -> SimulateResult:
    """Simulate a multi-subject fMRI dataset and write it as BIDS with its truth.

    Parameters
    ----------
    out_dir : path
        The dataset folder to create.
    params : FMRISimParams
        The simulator's parameters (checked here).
    dtype : {"float32", "int16"}, default="float32"
        Data type of the BOLD images.
    force : bool, default=False
        Replace an existing folder of the tool's own outputs.

    Returns
    -------
    SimulateResult

    Raises
    ------
    WorkflowError
        ``out_dir`` exists and ``force`` is False, it holds files the tool did not write
        (they are named), or a parameter is invalid; nothing is written then.
    """
    from ..export.outputs import refuse_existing_dir

    out_dir = Path(out_dir)
    try:
        refuse_existing_dir(out_dir, force)   # files of the user's first: --force would not help
    except FileExistsError as exc:
        raise WorkflowError(str(exc)) from exc
    try:
        params.validate()
    except ValueError as exc:
        raise WorkflowError(str(exc)) from exc
    from ..simulate.fmri import simulate_fmri, write_bids

    log.info("simulating %d subjects x %d volumes, %d components", params.n_subjects,
             params.n_volumes, params.n_components)
    sim = simulate_fmri(params)
    write_bids(sim, out_dir, dtype=dtype, force=force)
    log.debug("parameters: %s", json.dumps(params.to_dict()))
    return SimulateResult(out_dir=out_dir, truth_dir=out_dir / "derivatives" / "truth",
                          n_subjects=int(params.n_subjects), n_voxels=int(sim.truth.n_voxels))
