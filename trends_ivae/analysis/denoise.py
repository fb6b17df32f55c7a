"""Remove components from data, on arrays: ``fsl_regfilt``-style regression and the choice of components.

:func:`regfilt` is FSL's ``fsl_regfilt`` on arrays: the data (volumes x voxels) are
regressed on all the component time courses at once (both centred in time), and only the
fitted contribution of the removed components is subtracted ("non-aggressive", the
default; the other components keep their share of the variance). ``aggressive=True``
regresses on the removed time courses alone and subtracts all of it (``fsl_regfilt -a``).
Each voxel keeps its mean.

Denoising through a nonlinear decoder (``f(z) - f(z with the removed components at their
conditional prior mean)``) needs the model, so it lives in
:mod:`trends_ivae.workflow.denoise_components`; this module never imports torch.
:func:`components_to_remove` turns what a user names (``ic03``, ``3``, ``artifacts``) into
indices.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["regfilt", "components_to_remove"]


def regfilt(data: np.ndarray, timecourses: np.ndarray, remove: Sequence[int], *,
            aggressive: bool = False) -> np.ndarray:
    """Subtract the removed components' fitted contribution from ``data``.

    Parameters
    ----------
    data : ndarray (n_volumes, n_voxels)
    timecourses : ndarray (n_volumes, n_components)
        The design (MELODIC's ``melodic_mix``; here the component time courses).
    remove : sequence of int
        Columns of ``timecourses`` to remove (0-based).
    aggressive : bool, default=False
        Regress on the removed time courses only (``fsl_regfilt -a``).

    Returns
    -------
    ndarray (n_volumes, n_voxels), float64
    """
    Y = np.asarray(data, np.float64)
    X = np.asarray(timecourses, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"data {Y.shape} and time courses {X.shape} must be 2-D with one row per volume")
    remove = list(remove)
    if any(not 0 <= r < X.shape[1] for r in remove):
        raise ValueError(f"components {remove} out of range 0..{X.shape[1] - 1}")
    X = X - X.mean(axis=0)
    mean = Y.mean(axis=0)
    design = X[:, remove] if aggressive else X
    beta, *_ = np.linalg.lstsq(design, Y - mean, rcond=None)
    fitted = design @ beta if aggressive else X[:, remove] @ beta[remove]
    return Y - fitted


def components_to_remove(names: Sequence[str], remove: Sequence[str], classes: Sequence[str] | None = None
                         ) -> list[int]:
    """0-based indices of the components named in ``remove``.

    Parameters
    ----------
    names : sequence of str
        The fit's component names (``ic01``...).
    remove : sequence of str
        Names, 1-based numbers, or ``artifacts`` (every component whose class is
        ``artifact``).
    classes : sequence of str, optional
        The ``class`` column of the labels (needed for ``artifacts``).

    Raises
    ------
    ValueError
        An unknown name or number (the message lists the known names), ``artifacts``
        without classes, or nothing to remove.
    """
    names = [str(n) for n in names]
    out: list[int] = []
    for item in remove:
        item = str(item).strip()
        if item.lower() in ("artifact", "artifacts"):
            if classes is None:
                raise ValueError("'artifacts' needs the class column of labels.tsv: run 'trends-ivae label' first")
            out += [i for i, c in enumerate(classes) if str(c) == "artifact"]
        elif item in names:
            out.append(names.index(item))
        elif item.isdigit() and 1 <= int(item) <= len(names):
            out.append(int(item) - 1)
        else:
            raise ValueError(f"unknown component {item!r}; the fit's components are {', '.join(names)} "
                             "(or their numbers from 1, or 'artifacts')")
    out = sorted(set(out))
    if not out:
        raise ValueError("no component to remove (no component is labelled 'artifact')")
    if len(out) == len(names):
        raise ValueError("removing every component leaves nothing of the model: name fewer")
    return out
