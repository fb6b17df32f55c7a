"""Group statistics of a fit: ``trends-ivae stats FIT_DIR --participants ... --design ... --contrast ...``.

:func:`group_stats` fits one GLM (:mod:`trends_ivae.analysis.stats`) over the fit's
subjects, for three families of tests, each with its own FDR:

``maps``
    every in-mask voxel of every component's subject map: dual regression's stage 2 with
    variance-normalised time courses (each subject's data regressed on its unit-variance
    time courses, in data units: amplitude and shape; FSL ``dual_regression``'s
    ``--des_norm``), from ``prepared.h5``; without it, the written z-scored subject maps
    (shape only: an amplitude difference is then invisible);
``amplitude``
    each component's subject map averaged over the voxels where the group map's z > 2
    (one test per component: the map's strength where the network is);
``fnc``
    static FNC edges: per subject, the correlation of the component time courses (each
    run z-scored, runs concatenated), Fisher z, every pair ``i < j``;
``spectra``
    each component's fALFF per subject (:mod:`trends_ivae.analysis.features`).

Written to ``OUT`` (default ``FIT_DIR/stats``), one folder that appears whole:
``design.tsv``; ``desc-<label>_stat-<t|z|p|fdrz>_statmap.nii.gz`` (4-D, one volume per
component; ``fdrz`` is z where q < alpha, else 0; ``fwep`` with permutations);
``desc-<label>_maps.tsv``, ``desc-<label>_amplitude.tsv``, ``desc-<label>_fnc.tsv``, ``desc-<label>_spectra.tsv`` (+ JSON
sidecars) and ``stats.json`` (the formula, contrast, weights, subjects and counts).
``<label>`` is the contrast in letters and digits. A folder inside the fit folder is added
to the fit's manifest. Never imports torch.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .fit import WorkflowError
from .labels import read_fit_folder

__all__ = ["StatsSettings", "StatsResult", "group_stats", "subject_fnc", "RESULT_COLUMNS"]

RESULT_COLUMNS = {
    "effect": "The contrast's estimate (c' beta)", "se": "Its standard error", "t": "t statistic",
    "p": "Two-sided p value", "z": "Standard normal value of p, with the sign of t",
    "q": "Benjamini-Hochberg FDR over the tests of this file (scipy.stats.false_discovery_control)",
    "d": "Effect over the residual standard deviation (Cohen's d for a two-group contrast)",
    "p_fwe": "Family-wise p value by permutation (max-t, nilearn permuted_ols); n/a without --n-perm",
}


@dataclass
class StatsSettings:
    """Options of ``trends-ivae stats``.

    Attributes
    ----------
    participants : path
        ``participants.tsv`` (``participant_id``, with or without ``sub-``).
    design : str
        ``"group + age"`` (see :func:`~trends_ivae.analysis.stats.design_matrix`).
    contrast : str
        ``"group[patient] - group[control]"``.
    out : path, optional
        Output folder (default ``FIT_DIR/stats``).
    n_perm : int, default=0
        Permutations for family-wise p values (0: none).
    alpha : float, default=0.05
        FDR level of the thresholded maps and of the counts.
    random_state : int, default=0
    force : bool, default=False
    """

    participants: str | os.PathLike
    design: str
    contrast: str
    out: str | os.PathLike | None = None
    n_perm: int = 0
    alpha: float = 0.05
    random_state: int = 0
    force: bool = False


@dataclass
class StatsResult:
    """The tables and the counts of tests with q < alpha per family."""

    out: Path
    tables: dict = field(default_factory=dict)
    significant: dict = field(default_factory=dict)


def subject_fnc(runs: list) -> np.ndarray:
    """Fisher-z correlation matrix (k, k) of a subject's runs (each z-scored, concatenated)."""
    z = np.concatenate([(r - r.mean(0)) / (r.std(0) + 1e-12) for r in runs])
    return np.arctanh(np.clip(np.corrcoef(z.T), -0.999999, 0.999999))


def _written_maps(folder, subjects: list) -> np.ndarray:
    """The subject maps the fit wrote (z-scored: their shape, not their amplitude)."""
    import nibabel as nib

    mask = np.asarray(folder.mask_img.dataobj) > 0
    out = []
    for s in subjects:
        files = sorted(folder.root.glob(f"sub-{s}/**/sub-{s}_*desc-ivae_components.nii.gz"))
        if not files:
            raise WorkflowError(f"{folder.root}/sub-{s}: no subject maps (*_desc-ivae_components.nii.gz)")
        out.append(np.mean([np.asarray(nib.load(str(f)).dataobj)[mask].T for f in files], axis=0))
    return np.stack(out)


def _subject_maps(folder, subjects: list) -> tuple[np.ndarray, str]:
    """(n_subjects, k, n_voxels) subject maps in data units, and what they are.

    Dual regression's stage 2 with variance-normalised time courses (FSL's ``--des_norm``):
    each subject's reduced data (``prepared.h5``) regressed on its centred, unit-variance
    time courses, back to voxels through the basis, so that a map carries the component's
    amplitude as well as its shape. Without ``prepared.h5`` (or when its mask is not the
    maps'), the written z-scored maps, which carry the shape only.
    """
    from ..data.store import read_prepared

    path = folder.root / "prepared.h5"
    mask = np.asarray(folder.mask_img.dataobj) > 0
    if not path.is_file():
        return _written_maps(folder, subjects), "written subject maps (z-scored: shape only)"
    p = read_prepared(path)
    if p.basis.shape[0] != int(mask.sum()):
        return _written_maps(folder, subjects), "written subject maps (z-scored: shape only)"
    series = {str(src): data for src, data in _run_sources(folder)}
    x, run = np.asarray(p.x, np.float64), np.asarray(p.run)
    basis = np.asarray(p.basis, np.float64) * np.asarray(p.scale, np.float64)[None, :]
    out = []
    for s in subjects:
        xs, zs = [], []
        for i, r in enumerate(p.runs):
            if str(r["subject"]) != s or str(r.get("file")) not in series:
                continue
            xs.append(x[run == i])
            zs.append(series[str(r.get("file"))])
        if not xs or any(len(a) != len(b) for a, b in zip(xs, zs)):
            return _written_maps(folder, subjects), "written subject maps (z-scored: shape only)"
        X, Z = np.concatenate(xs), np.concatenate(zs)
        Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-12)
        beta, *_ = np.linalg.lstsq(Z, X - X.mean(0), rcond=None)      # (k, d)
        out.append(beta @ basis.T)
    return np.stack(out), "dual regression stage 2, variance-normalised time courses (amplitude and shape)"


def _run_sources(folder) -> list:
    """(input file, time courses) of every run of the fit folder."""
    out = []
    for tsv in sorted(folder.root.glob("sub-*/**/*_desc-ivae_timeseries.tsv")):
        side = tsv.with_suffix(".json")
        sources = json.loads(side.read_text()).get("Sources") if side.is_file() else None
        if sources:
            out.append((sources[0], pd.read_csv(tsv, sep="\t")[folder.names].to_numpy(float)))
    return out


def _families(folder) -> tuple[list, dict]:
    from ..analysis.features import temporal_features

    by_subject: dict = {}
    for subject, _, tr, data in folder.timecourses():
        by_subject.setdefault(subject, []).append((data, tr))
    subjects = sorted(by_subject)
    k = len(folder.names)
    iu = np.triu_indices(k, 1)
    fnc = np.stack([subject_fnc([d for d, _ in by_subject[s]])[iu] for s in subjects])
    edges = [f"{folder.names[i]}-{folder.names[j]}" for i, j in zip(*iu)]
    fams = {"fnc": (fnc, pd.DataFrame({"edge": edges, "i": [folder.names[i] for i in iu[0]],
                                       "j": [folder.names[j] for j in iu[1]]}))}
    if all(tr for runs in by_subject.values() for _, tr in runs):
        falff = np.stack([temporal_features(by_subject[s])["falff"].to_numpy() for s in subjects])
        fams["spectra"] = (falff, pd.DataFrame({"name": folder.names, "measure": "falff"}))
    return subjects, fams


def _label(contrast: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", contrast.replace("-", " minus ").replace("+", " plus "))
    return "".join(w[:1].upper() + w[1:] for w in words)[:60] or "contrast"


def group_stats(fit_dir: str | os.PathLike, settings: StatsSettings) -> StatsResult:
    """Run the GLM of ``settings`` over a fit folder's subjects (see the module's docstring).

    Raises
    ------
    WorkflowError
        Subjects missing from the participants table, a rank-deficient design, an unknown
        term or level in the contrast, or too few subjects (nothing is written).
    """
    import nibabel as nib

    from ..analysis.stats import (DesignError, contrast_vector, design_matrix, glm_contrast, permutation_test,
                                  subjects_in_table)
    from ..export.outputs import atomic_output_dir, read_manifest, record_outputs, refuse_existing_dir
    from .labels import write_table

    s = settings
    folder = read_fit_folder(fit_dir)
    root = folder.root
    out = Path(s.out) if s.out is not None else root / "stats"
    refuse_existing_dir(out, s.force)
    subjects, fams = _families(folder)
    table = pd.read_csv(s.participants, sep="\t", dtype={"participant_id": str})
    try:
        rows = subjects_in_table(table, subjects, str(s.participants))
        design, factors = design_matrix(rows, s.design)
        weights = contrast_vector(design, factors, s.contrast)
    except DesignError as exc:
        raise WorkflowError(str(exc)) from None
    X = design.to_numpy()
    maps, maps_kind = _subject_maps(folder, subjects)           # (n, k, v)
    n, k, v = maps.shape
    group = np.asarray(folder.maps_img.dataobj)[np.asarray(folder.mask_img.dataobj) > 0].T.reshape(k, v)
    zg = (group - group.mean(1, keepdims=True)) / (group.std(1, keepdims=True) + 1e-12)
    amplitude = np.stack([[m[c][zg[c] > 2].mean() if (zg[c] > 2).any() else np.nan for c in range(k)] for m in maps])
    fams = {"maps": (maps.reshape(n, k * v), pd.DataFrame({"name": np.repeat(folder.names, v)})),
            "amplitude": (amplitude, pd.DataFrame({"name": folder.names, "measure": "mean over the group map's z > 2"})),
            **fams}
    result = StatsResult(out=out)
    for fam, (data, index) in fams.items():
        res = glm_contrast(X, data, weights)
        res["p_fwe"] = permutation_test(X, data, weights, s.n_perm, s.random_state) if s.n_perm else np.nan
        result.tables[fam] = pd.concat([index.reset_index(drop=True), res], axis=1)
        result.significant[fam] = int((res["q"] < s.alpha).sum())
    label = _label(s.contrast)
    mask_img = folder.mask_img
    mask = np.asarray(mask_img.dataobj) > 0
    vox = result.tables["maps"]
    summary = pd.DataFrame([{"name": c, "n_voxels_fdr": int((g["q"] < s.alpha).sum()),
                             "max_abs_z": float(g["z"].abs().max()), "min_q": float(g["q"].min()),
                             "mean_d": float(g["d"].mean())} for c, g in vox.groupby("name", sort=False)])
    with atomic_output_dir(out, force=s.force) as tmp:
        for stat, values in (("t", vox["t"]), ("z", vox["z"]), ("p", vox["p"]),
                             ("fdrz", np.where(vox["q"] < s.alpha, vox["z"], 0.0)),
                             *((("fwep", vox["p_fwe"]),) if s.n_perm else ())):
            vol = np.zeros(mask.shape + (k,), np.float32)
            vol[mask] = np.asarray(values, np.float32).reshape(k, v).T
            nib.save(nib.Nifti1Image(vol, mask_img.affine), tmp / f"desc-{label}_stat-{stat}_statmap.nii.gz")
        write_table(tmp, Path(f"desc-{label}_maps.tsv"), summary,
                    {"name": "Component", "n_voxels_fdr": f"Voxels with q < {s.alpha}",
                     "max_abs_z": "Largest |z|", "min_q": "Smallest q", "mean_d": "Mean d over the mask"})
        for fam in ("amplitude", "fnc", "spectra"):
            if fam in result.tables:
                write_table(tmp, Path(f"desc-{label}_{fam}.tsv"), result.tables[fam], RESULT_COLUMNS)
        pd.concat([pd.Series(["sub-" + x for x in subjects], name="participant_id", index=design.index), design],
                  axis=1).to_csv(tmp / "design.tsv", sep="\t", index=False)
        (tmp / "stats.json").write_text(json.dumps({
            "Design": s.design, "Contrast": s.contrast, "ContrastWeights": dict(zip(design.columns, weights.tolist())),
            "Subjects": subjects, "SubjectMaps": maps_kind, "Alpha": s.alpha, "Permutations": s.n_perm,
            "SignificantFDR": result.significant, "Participants": str(s.participants),
            "Model": "OLS (nilearn.glm.OLSModel), one t contrast; FDR per family"}, indent=2) + "\n")
    if root.absolute() in out.absolute().parents and read_manifest(root) is not None:
        record_outputs(root, [p for p in out.rglob("*") if p.is_file()])
    return result
