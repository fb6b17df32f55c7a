"""How well can the simulated sources be read out of the prepared data at all? (issue 5)

A supervised ceiling for the time-course MCC of ``benchmarks/fmri.py``: for each data
seed, simulate the default fMRI data (``FMRISimParams``; ``--linear`` for
``nonlinear=False``), prepare it as the iVAE benchmark does (``task+window``, 20-volume
windows, one 12-dimensional group basis), then predict each true source time course from
the reduced data ``x`` with ridge regression fitted on the *truth*, cross-validated
across subjects (4 folds, so each subject is predicted by a model that never saw it),
and score the prediction as the benchmark scores a method: mean |r| over sources, per
subject, then averaged. Two read-outs: linear, and cubic polynomial features.

``prepared_ceiling`` is the same read-out for any prepared data set (plus a map
ceiling); ``benchmarks/regime.py`` computes it for every cell of the regime map.

No unsupervised method working from the same reduced data should be expected to exceed
these numbers by much; CanICA works from the voxels, but reads out through a linear
model of the same data.

Usage::

    python benchmarks/fmri_ceiling.py                 # seeds 0-4, saturating and linear (~1 min)
    python benchmarks/fmri_ceiling.py --seeds 0 1 --cases saturating
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path


def ceiling(seed: int, nonlinear: bool, root: Path) -> dict:
    """Cross-validated supervised read-out scores for one simulated data set."""
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
    from trends_ivae.simulate.fmri import load_truth

    bids = write_bids(simulate_fmri(FMRISimParams(seed=seed, nonlinear=nonlinear)),
                      root / f"seed{seed}-{'sat' if nonlinear else 'lin'}")
    truth = load_truth(bids)
    runs = find_bids_runs(bids)
    p = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20,
                                                   n_dims=len(truth.component_names), hrf_delay=5))
    out = prepared_ceiling(p, truth, folds=4, maps=False)
    return {"linear": out["tc_linear"], "cubic": out["tc_cubic"]}


def true_sources(prepared, truth):
    """The true sources on the prepared data's rows (n, k), matched by subject label and volume."""
    import numpy as np

    index = {s: i for i, s in enumerate(truth.subjects)}
    rows = np.array([index[str(prepared.subjects[i])] for i in prepared.subject])
    return np.asarray(truth.timecourses, np.float64)[rows, prepared.volume]


def prepared_ceiling(prepared, truth, *, folds: int = 4, maps: bool = True) -> dict:
    """The supervised ceiling of one prepared data set (``benchmarks/regime.py`` uses it per cell).

    ``tc_linear`` / ``tc_cubic``: each true source predicted from the reduced data ``x``
    by ridge regression (on x, or on its cubic polynomial features) fitted on the truth,
    cross-validated across subjects (``folds`` folds), scored like a method (mean |r| over
    sources per subject, then averaged). ``map``: the group maps that regressing the data
    on the *true* time courses gives (``back_project``, as FastICA's maps are made),
    scored against the truth maps (effect maps with mixing) like a method's maps.
    """
    import numpy as np
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    S = true_sources(prepared, truth)
    groups = prepared.subject
    readouts = {
        "tc_linear": make_pipeline(StandardScaler(), RidgeCV(np.logspace(-3, 3, 13))),
        "tc_cubic": make_pipeline(StandardScaler(), PolynomialFeatures(3), StandardScaler(),
                                  RidgeCV(np.logspace(-1, 5, 13))),
    }
    out = {}
    cv = GroupKFold(min(folds, len(np.unique(groups))))
    for name, model in readouts.items():
        pred = cross_val_predict(model, prepared.x, S, groups=groups, cv=cv)
        per_subject = [np.mean([abs(np.corrcoef(pred[groups == s][:, k], S[groups == s][:, k])[0, 1])
                                for k in range(S.shape[1])]) for s in np.unique(groups)]
        out[name] = float(np.mean(per_subject))
    if maps:
        from trends_ivae.group.backprojection import back_project

        spec = importlib.util.spec_from_file_location("bench_fmri", Path(__file__).with_name("fmri.py"))
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        bp = back_project(prepared.x * prepared.scale, S, prepared.basis, subject=prepared.subject)
        mask = np.asarray(prepared.mask_img().get_fdata()) > 0
        target = truth.effect_maps if truth.params.get("mixing_layers", 0) else truth.maps
        out["map"] = float(bench.map_mcc(bp.maps, mask, target, truth.mask))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--cases", nargs="+", choices=["saturating", "linear"], default=["saturating", "linear"])
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np

    print("| case | seed | linear read-out | cubic read-out |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            rows = []
            for seed in args.seeds:
                r = ceiling(seed, case == "saturating", Path(tmp))
                rows.append((r["linear"], r["cubic"]))
                print(f"| {case} | {seed} | {r['linear']:.3f} | {r['cubic']:.3f} |", flush=True)
            m = np.mean(rows, axis=0)
            print(f"| {case} | mean | {m[0]:.3f} | {m[1]:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
