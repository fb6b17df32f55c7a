"""The checks made on options before any work, on typed values.

Each raises :class:`OptionError` (a :class:`~trends_ivae.workflow.WorkflowError`) whose
message names the option as the command line spells it; the command line turns it into
``parser.error`` (exit code 2, nothing done), the pipelines and the Nipype node into
their own error. One set of checks serves ``trends-ivae fit|prepare``, the BIDS App,
``pipelines/group_ivae.py`` and the Nipype node (:class:`~trends_ivae.workflow.FitOptions`).
No heavy imports: torch is loaded only to check a named ``--device``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .choices import is_auto
from .fit import WorkflowError

__all__ = ["OptionError", "existing_file", "existing_dir", "check_writable", "check_output_folder",
           "check_foreign_files", "check_prepare_values", "check_scheduler", "check_denoise", "check_model_values",
           "check_components_fit"]


class OptionError(WorkflowError):
    """An option refused before any work; the message names it (the command line exits with 2)."""


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; :class:`OptionError` naming ``what`` unless it is a file."""
    p = Path(path)
    if not p.is_file():
        raise OptionError(f"{what} {str(p)!r} does not exist or is not a file")
    return p


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path; :class:`OptionError` naming ``what`` unless it is a folder."""
    p = Path(path)
    if not p.is_dir():
        raise OptionError(f"{what} {str(p)!r} does not exist or is not a directory")
    return p


def check_writable(folder: str | Path, what: str) -> None:
    """:class:`OptionError` unless files can be created in ``folder`` (or where it will be made).

    The nearest existing ancestor of ``folder`` must be a directory in which a file
    can actually be created (tried, then removed): permission bits alone say nothing
    when running as root, and a read-only or full file system only shows on writing.
    """
    target = Path(folder).absolute()
    anc = target
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise OptionError(f"{what} {str(target)!r} cannot be written: {str(anc)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".trends_ivae-write-test-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OptionError(f"{what} {str(target)!r} cannot be written: {str(anc)!r}: "
                          f"{exc.strerror or exc}") from None


def check_foreign_files(out_dir: str | Path, within: Sequence[str] | None = None) -> None:
    """:class:`OptionError` when ``out_dir`` holds files the tool did not write (they are
    named; nothing is deleted). ``within``: only these parts of it."""
    from ..export.outputs import ForeignFilesError, foreign_files

    foreign = foreign_files(out_dir, within=within)
    if foreign:
        raise OptionError(str(ForeignFilesError(Path(out_dir), foreign)))


def check_output_folder(out_dir: str | Path, force: bool, what: str = "--out") -> None:
    """The output folder of a fit: new, or (``force``) one of the tool's own outputs, in a
    place where files can be written.

    A folder holding files the tool did not write is refused first, ``force`` or not (the
    message names them and says to move them or choose another folder); an existing folder
    of the tool's own outputs without ``force`` is refused with a message saying ``--force``,
    which then replaces it."""
    out_dir = Path(out_dir)
    check_foreign_files(out_dir)   # first: with files of the user's in it, --force would not help
    if out_dir.exists() and not force:
        raise OptionError(f"{what} {str(out_dir)!r} exists and holds only trends-ivae's own outputs; pass "
                          "--force to replace it")
    check_writable(out_dir.absolute().parent, what)


def check_prepare_values(n_dims: int | str, tr: float | None, n_jobs: int, scheduler: str,
                         dask_address: str | None) -> None:
    """The prepare options that do not depend on the input: ``--n-dims``, ``--tr`` and the scheduler."""
    if not is_auto(n_dims) and n_dims < 1:
        raise OptionError("--n-dims must be >= 1 (or auto)")
    if tr is not None and tr <= 0:
        raise OptionError("--tr must be positive")
    check_scheduler(n_jobs, scheduler, dask_address)


def check_scheduler(n_jobs: int, scheduler: str, dask_address: str | None) -> None:
    """``--scheduler`` / ``--dask-address`` / ``--n-jobs``: consistent, and dask importable."""
    if n_jobs == 0:
        raise OptionError("--n-jobs must not be 0 (use -1 for all cores)")
    if dask_address and scheduler != "dask":
        raise OptionError("--dask-address goes with --scheduler dask")
    if scheduler == "dask":
        from ..data.parallel import dask_available

        if not dask_available():
            raise OptionError("--scheduler dask needs dask.distributed: pip install 'trends-ivae[dask]'")


def check_denoise(denoise: str | None, confounds: Sequence[str] | None, confounds_file: Sequence | None) -> None:
    """``--denoise`` takes its confounds from fMRIPrep: not with ``--confounds`` or ``--confounds-file``."""
    if denoise:
        if confounds:
            raise OptionError("give either --denoise STRATEGY or --confounds COLUMN ..., not both")
        if confounds_file:
            raise OptionError("--denoise reads each run's fMRIPrep confounds itself; drop --confounds-file")


def check_model_values(n_components: int | str, n_init: int | None, device: str) -> None:
    """``--n-components``, ``--n-init`` and ``--device`` (torch is imported only for a named device)."""
    if not is_auto(n_components) and n_components < 1:
        raise OptionError("--n-components must be >= 1 (or auto)")
    if n_init is not None and n_init < 1:
        raise OptionError("--n-init must be >= 1")
    if device != "auto":
        import torch  # noqa: PLC0415 - only to check the device

        dev = device.split(":")[0]
        if dev == "cuda" and not torch.cuda.is_available():
            raise OptionError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
        if dev == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OptionError(f"--device {device}: MPS is not available on this machine")
        if dev not in ("cpu", "cuda", "mps"):
            raise OptionError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps")


def check_components_fit(n_components: int | str, n_dims: int | str, suffix: str = "",
                         runs: Sequence | None = None) -> None:
    """``--n-components`` at most the reduced dimension (when both are numbers) and, with
    ``runs``, at most the volumes of the smallest subject (read from the headers, before
    any data are).

    Parameters
    ----------
    n_components, n_dims : int or "auto"
    suffix : str
        Appended to the reduced-dimension message.
    runs : sequence of RunSpec, optional
        The runs to fit (their ``subject`` and image); a subject's time courses span no
        more dimensions than its volumes.

    Raises
    ------
    OptionError
        Naming ``--n-components``.
    """
    if not is_auto(n_components) and not is_auto(n_dims) and n_components > n_dims:
        raise OptionError(f"--n-components ({n_components}) is larger than --n-dims ({n_dims}){suffix}")
    if runs and not is_auto(n_components):
        from ..data.images import load_4d
        from ..reduction.order import volumes_per_subject

        volumes = volumes_per_subject((r.subject, load_4d(r.img).shape[3]) for r in runs)
        label = min(volumes, key=volumes.get)
        if int(n_components) > volumes[label]:
            raise OptionError(f"--n-components ({n_components}) is more than the {volumes[label]} volumes of "
                              f"sub-{label}, the smallest subject: its time courses span no more, so its maps "
                              f"would not be identified; give --n-components {volumes[label]} or fewer, or auto")
