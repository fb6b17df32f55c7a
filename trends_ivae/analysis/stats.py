"""Group statistics on arrays: designs from formulas, contrasts, the GLM, FDR and permutations.

No formula package (patsy, formulaic) is installed here, so a small, documented subset of
their syntax is read:

Design (:func:`design_matrix`)
    ``a + b + C(c)``: an intercept (always), then each term. A numeric column enters as
    it is; a text column, or any column wrapped in ``C(...)``, is treatment-coded against
    its first level in sorted order (patsy's default): one column ``name[level]`` per
    other level. Interactions (``a:b``, ``a*b``) are not read.
Contrast (:func:`contrast_vector`)
    A signed sum of terms with optional numeric weights: ``group[patient] - group[control]``,
    ``age``, ``0.5*site[B] - 0.5*site[A]``. ``name[level]`` stands for the cell mean of
    that level (the intercept plus its column; the reference level is the intercept
    alone), so a difference of two levels is the difference of their columns, as in patsy.

The model is nilearn's :class:`nilearn.glm.OLSModel` (the same ordinary least squares as
``nilearn.glm.second_level``), one fit for all tests; p values are two-sided, z the
standard normal value of the same p with the sign of t, ``q`` the Benjamini-Hochberg FDR
of the p values (:func:`scipy.stats.false_discovery_control`) over all the tests given
together, ``d`` the effect in units of the residual standard deviation (Cohen's d for a
two-group contrast). :func:`permutation_test` adds family-wise p values from
:func:`nilearn.mass_univariate.permuted_ols` (max-statistic, the contrast's regressor
tested with the rest of the design as confounds).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["DesignError", "design_matrix", "contrast_vector", "glm_contrast", "permutation_test", "subjects_in_table"]

_TERM = re.compile(r"^\s*C\(\s*([A-Za-z_][\w.]*)\s*\)\s*$|^\s*([A-Za-z_][\w.]*)\s*$")
_CONTRAST = re.compile(r"([+-]?)\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*?\s*)?([A-Za-z_][\w.]*)(?:\[([^\]]+)\])?")


class DesignError(ValueError):
    """A design or contrast that cannot be used (the message says which term and why)."""


def design_matrix(table: pd.DataFrame, formula: str) -> tuple[pd.DataFrame, dict]:
    """The design matrix of ``formula`` over the rows of ``table``.

    Returns
    -------
    design : DataFrame (n_rows, n_columns)
        ``intercept`` first, then the terms' columns.
    factors : dict
        For each categorical term: its levels, the reference (first) level first.

    Raises
    ------
    DesignError
        An unknown column, a term outside the subset read, missing values, a factor with
        one level, or a rank-deficient design.
    """
    cols = {"intercept": np.ones(len(table))}
    factors: dict = {}
    terms = [t for t in formula.replace("1 +", "").split("+") if t.strip() and t.strip() != "1"]
    if not terms:
        raise DesignError(f"the design {formula!r} names no term")
    for term in terms:
        m = _TERM.match(term)
        if not m:
            raise DesignError(f"design term {term.strip()!r} is not read here: terms are column names, or C(name), "
                              "joined with + (no interactions)")
        name = m.group(1) or m.group(2)
        if name in factors or name in cols:
            raise DesignError(f"design term {name!r} appears twice in {formula!r}")
        if name not in table:
            raise DesignError(f"design term {name!r} is not a column of the participants table "
                              f"({', '.join(map(str, table.columns))})")
        values = table[name]
        if values.isna().any():
            missing = list(table.index[values.isna()])
            raise DesignError(f"column {name!r} has no value for {', '.join(map(str, missing[:8]))}")
        categorical = m.group(1) is not None or not pd.api.types.is_numeric_dtype(values)
        if categorical:
            levels = sorted(values.astype(str).unique())
            if len(levels) < 2:
                raise DesignError(f"factor {name!r} has one level ({levels[0]}): nothing to compare")
            factors[name] = levels
            for lev in levels[1:]:
                cols[f"{name}[{lev}]"] = (values.astype(str) == lev).to_numpy(float)
        else:
            cols[name] = values.to_numpy(float)
    design = pd.DataFrame(cols, index=table.index)
    rank = np.linalg.matrix_rank(design.to_numpy())
    if rank < design.shape[1]:
        raise DesignError(f"the design {formula!r} is rank deficient (rank {rank} for {design.shape[1]} columns: "
                          f"{', '.join(design.columns)}): a column repeats or combines others")
    if design.shape[0] <= design.shape[1]:
        raise DesignError(f"{design.shape[0]} subjects for {design.shape[1]} design columns: no residual degrees "
                          "of freedom")
    return design, factors


def contrast_vector(design: pd.DataFrame, factors: dict, contrast: str) -> np.ndarray:
    """The weights over ``design``'s columns of ``contrast`` (see the module's docstring).

    Raises
    ------
    DesignError
        An unknown term or level (the message lists the known ones), or an empty contrast.
    """
    text = contrast.strip()
    weights = np.zeros(design.shape[1])
    columns = list(design.columns)
    pos, found = 0, False
    while pos < len(text):
        m = _CONTRAST.match(text, pos)
        if not m or m.end() == pos:
            raise DesignError(f"cannot read the contrast {contrast!r} at {text[pos:]!r}")
        sign = -1.0 if m.group(1) == "-" else 1.0
        w = sign * (float(m.group(2)) if m.group(2) else 1.0)
        name, level = m.group(3), m.group(4)
        if level is not None:
            if name not in factors:
                raise DesignError(f"contrast term {name}[{level}]: {name!r} is not a factor of the design "
                                  f"(factors: {', '.join(factors) or 'none'})")
            if level not in factors[name]:
                raise DesignError(f"contrast term {name}[{level}]: unknown level {level!r}; "
                                  f"{name} has {', '.join(factors[name])}")
            weights[0] += w
            if level != factors[name][0]:
                weights[columns.index(f"{name}[{level}]")] += w
        elif name in columns:
            weights[columns.index(name)] += w
        else:
            raise DesignError(f"contrast term {name!r} is not in the design ({', '.join(columns)}; a factor's "
                              "levels as name[level])")
        found = True
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    if not found or not np.any(weights):
        raise DesignError(f"the contrast {contrast!r} weighs nothing (a level minus itself?)")
    return weights


def glm_contrast(design: np.ndarray, data: np.ndarray, contrast: np.ndarray) -> pd.DataFrame:
    """One t contrast for every column of ``data`` (subjects x tests).

    Returns
    -------
    DataFrame (n_tests rows)
        ``effect``, ``se``, ``t``, ``p`` (two-sided), ``z``, ``q`` (FDR over these tests), ``d``.
    """
    from nilearn.glm import OLSModel
    from scipy import stats

    X = np.asarray(design, float)
    Y = np.asarray(data, float)
    res = OLSModel(X).fit(Y)
    con = res.Tcontrast(np.asarray(contrast, float))
    t = np.atleast_1d(np.asarray(con.t, float)).ravel()
    df = float(np.ravel(con.df_den)[0]) if np.ndim(con.df_den) else float(con.df_den)
    p = np.clip(2 * stats.t.sf(np.abs(t), df), 1e-300, 1.0)
    z = np.sign(t) * stats.norm.isf(p / 2)
    sigma = np.sqrt(np.atleast_1d(res.dispersion).ravel())
    effect = np.atleast_1d(np.asarray(con.effect, float)).ravel()
    ok = np.isfinite(p)
    q = np.full_like(p, np.nan)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok])
    return pd.DataFrame({"effect": effect, "se": np.atleast_1d(np.asarray(con.sd, float)).ravel(), "t": t,
                         "p": p, "z": z, "q": q, "d": effect / np.where(sigma > 0, sigma, np.nan)})


def permutation_test(design: np.ndarray, data: np.ndarray, contrast: np.ndarray, n_perm: int,
                     random_state: int | None = 0) -> np.ndarray:
    """Family-wise p values (max-t over all tests) of the contrast, by permutation.

    The contrast's regressor is ``X c / (c.c)`` and the confounds are ``X`` times a basis of
    the space orthogonal to ``c`` (Smith et al. 2007), handed to
    :func:`nilearn.mass_univariate.permuted_ols` (two-sided).
    """
    from nilearn.mass_univariate import permuted_ols
    from scipy.linalg import null_space

    X = np.asarray(design, float)
    c = np.asarray(contrast, float)
    tested = X @ c[:, None] / (c @ c)
    confounds = X @ null_space(c[None, :])
    out = permuted_ols(tested, np.asarray(data, float), confounding_vars=confounds if confounds.size else None,
                       model_intercept=False, n_perm=int(n_perm), two_sided_test=True,
                       random_state=random_state, output_type="dict")
    return np.power(10.0, -np.asarray(out["logp_max_t"], float)).ravel()


def subjects_in_table(table: pd.DataFrame, subjects: Sequence[str], source: str) -> pd.DataFrame:
    """The rows of a participants table (``participant_id`` with or without ``sub-``) for
    ``subjects``, in their order; refuses subjects it lacks."""
    if "participant_id" not in table:
        raise DesignError(f"{source}: no participant_id column")
    ids = table["participant_id"].astype(str).str.replace(r"^sub-", "", regex=True)
    indexed = table.set_axis(ids, axis=0)
    missing = [s for s in subjects if s not in indexed.index]
    if missing:
        raise DesignError(f"{source}: subjects of the fit missing from the table: "
                          f"{', '.join('sub-' + s for s in missing[:10])}")
    return indexed.loc[list(subjects)]
