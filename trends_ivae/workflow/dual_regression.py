"""Dual regression to a folder: a fitted group iVAE applied to new runs, no refit.

:func:`dual_regression_to_folder` is what ``pipelines/dual_regression.py`` runs. Each new
run is masked and cleaned exactly as in the fit, as its record (``prepared.h5``) says:
the same mask, detrending, filters at the fit's TR (a run at another TR is refused),
standardisation, confound columns and left-out volumes (``drop_initial``,
non-steady-state volumes), and projected on the group basis; the
encoder q(z|x) gives its time courses (stage 1, the analogue of regressing the group maps
on the data; u is built from the events only when the encoder needs it); each subject's
maps are the regression of its data on its own time courses, z-scored across voxels
(stage 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .fit import WorkflowError

__all__ = ["DualRegressionResult", "dual_regression_to_folder"]


@dataclass
class DualRegressionResult:
    """What :func:`dual_regression_to_folder` wrote.

    Attributes
    ----------
    out_dir : Path
        The folder.
    n_runs, n_subjects, n_components : int
        Runs and subjects written, components per run.
    """

    out_dir: Path
    n_runs: int
    n_subjects: int
    n_components: int


def dual_regression_to_folder(fit_dir: str | Path, runs: Sequence[Any], out: str | Path, *,
                              sources: Sequence[str | Path] = (), device: str = "cpu",
                              force: bool = False, tr: float | None = None) -> DualRegressionResult:
    """Time courses and z-maps of ``runs`` from the fit in ``fit_dir``, written to ``out``.

    Parameters
    ----------
    fit_dir : path
        A ``trends-ivae fit`` output (any layout, with ``prepared.h5``).
    runs : list of RunSpec
        The new runs, on the fit's grid.
    out : path
        The output folder, written whole at the end::

            out/dataset_description.json
            out/sub-<label>/[ses-<label>/]func/<entities>_desc-dualreg_timeseries.tsv   kept volumes x ic01..
            out/sub-<label>/func/sub-<label>_desc-dualreg_components.nii.gz              subject z-maps, 4-D

        Component ``icNN`` is the fit's ``icNN``.
    sources : sequence of path
        The datasets the new runs come from, recorded (with ``fit_dir``) in
        ``dataset_description.json``.
    device : str, default="cpu"
        Where the encoder runs.
    force : bool, default=False
        Replace an existing folder of the tool's outputs.
    tr : float, optional
        The runs' repetition time in seconds, when a file lacks one or its own is wrong.
        Default: the fit's ``--tr`` when it had one, else each run's sidecar, else its
        header. A run whose TR differs from the fit's is refused: it would be filtered
        at the wrong rate.

    Returns
    -------
    DualRegressionResult

    Raises
    ------
    WorkflowError
        The fit cannot be loaded, or a run cannot be cleaned or projected alike (another
        TR than the fit's, no confounds where the fit regressed them, another grid).
    """
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from .. import GroupIVAE
    from ..group.backprojection import back_project
    from ..data.errors import PrepareError
    from ..group.new_runs import reduce_new_runs
    from ..group.spatial import needs_run_u, reduced_timecourses
    from ..export.derivatives import atomic_output_dir, component_names, derivative_stem, unmask
    from ..export.outputs import write_dataset_description

    fit_dir, out = Path(fit_dir), Path(out)
    try:
        model = GroupIVAE.load(fit_dir, device=device)
        p = model.prepared_
        xs, us = reduce_new_runs(model, runs, with_u=needs_run_u(model), tr=tr)
    except (PrepareError, FileNotFoundError, ValueError) as exc:
        raise WorkflowError(str(exc)) from exc
    zs = reduced_timecourses(model, xs, us)   # u only when the encoder needs it
    names = component_names(model.n_components_)
    subjects = list(dict.fromkeys(r.subject for r in runs))
    with atomic_output_dir(out, force=force) as root:
        write_dataset_description(root, sources=[Path(s).resolve().as_uri() for s in [*sources, fit_dir]],
                                  app="dual regression (pipelines/dual_regression.py)")
        for r, z in zip(runs, zs):
            folder, stem = derivative_stem({**r.entities, "path": str(r.img)}, desc="dualreg")
            (root / folder).mkdir(parents=True, exist_ok=True)
            pd.DataFrame(z, columns=names).to_csv(root / folder / f"{stem}_timeseries.tsv", sep="\t",
                                                  index=False, float_format="%.6g")
        for s in subjects:
            idx = [i for i, r in enumerate(runs) if r.subject == s]
            x = np.concatenate([xs[i] * p.scale for i in idx])
            z = np.concatenate([zs[i] for i in idx])
            bp = back_project([x], [z], p.basis, sort=False, fix_signs=False)
            img = unmask(bp.subject_maps(0), model.mask_img_, intent="z score",
                         descrip="trends_ivae dual regression subject z-maps")
            folder = root / f"sub-{s}" / "func"
            folder.mkdir(parents=True, exist_ok=True)
            nib.save(img, folder / f"sub-{s}_desc-dualreg_components.nii.gz")
    return DualRegressionResult(out_dir=out, n_runs=len(runs), n_subjects=len(subjects), n_components=len(names))
