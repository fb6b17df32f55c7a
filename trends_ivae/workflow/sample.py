"""Sample to a file: a fitted model -> a synthetic 4D fMRI run, its events and sidecar.

:func:`sample_to_file` is what ``trends-ivae sample`` runs. It reads the output folder
of a fit (``model/``, ``prepared.h5``), draws the sources from p(z|u) for every volume's
u (:meth:`trends_ivae.group.group_ivae.GroupIVAE.sample`), and writes the run, its
events (when u has a task factor) and a JSON sidecar, each to a temporary name first,
and lists them in the manifest of their folder. Nothing is written when an input is
wrong; an existing file is replaced only with ``force`` and only when the tool wrote it
(:func:`check_sample_outputs`). The run keeps the fit's qform/sform codes and the seed
given (the sidecar's ``RandomSeed``) reproduces it. torch is imported here only when a model is loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .fit import WorkflowError

__all__ = ["SampleSettings", "SampleResult", "NIFTI_SUFFIXES", "sample_companions", "check_sample_outputs",
           "fit_space_image", "sample_to_file"]

#: the file name endings of a NIfTI run
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class SampleSettings:
    """How to sample a run (``trends-ivae sample``'s options).

    Attributes
    ----------
    events : path, optional
        BIDS events of the run: the task label of each volume (not with ``condition``).
    condition : str, optional
        One task condition for every volume.
    n_volumes : int, optional
        Volumes (default: the reference run's).
    subject : str, optional
        Subject label, for a model whose u has a subject factor.
    like_run : int, default=0
        Index of the fitted run whose u (windows, subject, task) is the starting point.
    noise : bool, default=True
        Add the observation and residual noise to the decoded means.
    seed : int, default=0
        The random seed (0 to 2**32 - 1), recorded as the sidecar's ``RandomSeed``: the same
        seed gives the same run.
    device : str, default="cpu"
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    force : bool, default=False
        Replace the tool's own earlier output files (a file it did not write is never
        replaced).
    """

    events: str | Path | None = None
    condition: str | None = None
    n_volumes: int | None = None
    subject: str | None = None
    like_run: int = 0
    noise: bool = True
    seed: int = 0
    device: str = "cpu"
    force: bool = False


@dataclass
class SampleResult:
    """What :func:`sample_to_file` wrote.

    Attributes
    ----------
    out : Path
        The 4D NIfTI run.
    events : Path or None
        Its events TSV (None when u has no task factor).
    sidecar : Path
        Its JSON sidecar.
    n_volumes : int
        Volumes written.
    tr : float
        Repetition time (s).
    estimator : str
        The model that generated the run (the sidecar's ``Model.Estimator``).
    """

    out: Path
    events: Path | None
    sidecar: Path
    n_volumes: int
    tr: float
    estimator: str


def sample_companions(out: str | Path) -> tuple[Path, Path]:
    """The events TSV and JSON sidecar beside ``out`` (BIDS names for ``*_bold.nii[.gz]``)."""
    out = Path(out)
    name = out.name
    stem = name[:-7] if name.endswith(".nii.gz") else name[:-4]
    base = stem[:-5] if stem.endswith("_bold") else stem
    return out.with_name(f"{base}_events.tsv"), out.with_name(f"{stem}.json")


def check_sample_outputs(out: str | Path, force: bool) -> None:
    """Refuse to write a sampled run at ``out`` (and its companions) over files it must not replace.

    A file the tool did not write (not in the manifest of its folder) is never replaced,
    ``force`` or not; the tool's own earlier outputs only with ``force``.

    Raises
    ------
    WorkflowError
        The message names the file and says what to do.
    """
    from ..export.guard import check_output_files

    try:
        check_output_files([Path(out), *sample_companions(out)], force=force, what="--out")
    except FileExistsError as exc:
        raise WorkflowError(str(exc)) from exc


def fit_space_image(fit_dir: str | Path) -> Path | None:
    """The fit's group maps in ``fit_dir`` (BIDS or MELODIC layout), whose qform/sform codes a
    sampled run keeps; None when there are none."""
    from .report import FIT_COMPONENTS

    for name in (FIT_COMPONENTS, Path("melodic_IC.nii.gz")):
        if (Path(fit_dir) / name).is_file():
            return Path(fit_dir) / name
    return None


def sample_to_file(fit_dir: str | Path, out: str | Path, settings: SampleSettings | None = None) -> SampleResult:
    """Sample a synthetic run from the model in ``fit_dir`` and write it to ``out``.

    Parameters
    ----------
    fit_dir : path
        Output folder of ``trends-ivae fit`` (with ``prepared.h5``).
    out : path
        The 4D NIfTI to write (``.nii`` or ``.nii.gz``); the events TSV and the JSON
        sidecar go beside it (:func:`sample_companions`).
    settings : SampleSettings, optional
        Default: ``SampleSettings()``.

    Returns
    -------
    SampleResult

    Raises
    ------
    WorkflowError
        ``out`` is no NIfTI name, an output path holds a file the tool did not write
        (whatever ``settings.force``), one of its own outputs exists and ``settings.force``
        is False, the seed is out of range, the model cannot be read, or a setting does not
        fit it (an unseen condition or subject, a run index out of range); nothing is
        written then.
    """
    import nibabel as nib

    from ..atomic import atomic_path, write_json_atomic
    from ..export.guard import record_output_files
    from ..group.group_ivae import GroupIVAE
    from ..group.sampling import sample_run

    settings = settings or SampleSettings()
    out = Path(out)
    if not out.name.endswith(NIFTI_SUFFIXES):
        raise WorkflowError(f"--out {str(out)!r}: the file name must end in .nii or .nii.gz")
    events_path, sidecar_path = sample_companions(out)
    check_sample_outputs(out, settings.force)
    if not 0 <= int(settings.seed) < 2**32:
        raise WorkflowError(f"--seed {settings.seed}: must be in 0..{2**32 - 1}")
    try:
        model = GroupIVAE.load(fit_dir, device=settings.device)
        sampled = sample_run(model, events=settings.events, n_volumes=settings.n_volumes,
                             condition=settings.condition, subject=settings.subject, like_run=settings.like_run,
                             noise=settings.noise, random_state=int(settings.seed),
                             space_img=fit_space_image(fit_dir))
    except (FileNotFoundError, ValueError, NotImplementedError) as exc:
        raise WorkflowError(f"{fit_dir}: {exc}" if isinstance(exc, NotImplementedError) else str(exc)) from exc
    check_sample_outputs(out, settings.force)   # again: sampling gives a user time to put files there
    sidecar = dict(sampled.sidecar, Sources=str(Path(fit_dir).resolve()))
    with atomic_path(out, suffix=".tmp" + (".nii.gz" if out.name.endswith(".gz") else ".nii")) as tmp:
        nib.save(sampled.img, tmp)
    if sampled.events is not None:
        with atomic_path(events_path) as tmp:
            sampled.events.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    write_json_atomic(sidecar_path, json.loads(json.dumps(sidecar, default=str)))
    record_output_files([out, sidecar_path] + ([events_path] if sampled.events is not None else []))
    return SampleResult(out=out, events=events_path if sampled.events is not None else None,
                        sidecar=sidecar_path, n_volumes=int(sampled.img.shape[-1]), tr=float(sampled.tr),
                        estimator=str(sidecar["Model"]["Estimator"]))
