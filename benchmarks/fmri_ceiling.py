"""How well can the simulated sources be read out of the prepared data at all? (issue 5)

A supervised ceiling for the time-course MCC of ``benchmarks/fmri.py``: for each data
seed, simulate the default fMRI data (``FMRISimParams``; ``--linear`` for
``nonlinear=False``), prepare it as the iVAE benchmark does (``task+window``, 20-volume
windows, one 12-dimensional group basis), then predict each true source time course from
the reduced data ``x`` with ridge regression fitted on the *truth*, cross-validated
across subjects (4 folds, so each subject is predicted by a model that never saw it),
and score the prediction as the benchmark scores a method: mean |r| over sources, per
subject, then averaged. Two read-outs: linear, and cubic polynomial features.

No unsupervised method working from the same reduced data should be expected to exceed
these numbers by much; CanICA works from the voxels, but reads out through a linear
model of the same data.

Usage::

    python benchmarks/fmri_ceiling.py                 # seeds 0-4, saturating and linear (~1 min)
    python benchmarks/fmri_ceiling.py --seeds 0 1 --cases saturating
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path


def ceiling(seed: int, nonlinear: bool, root: Path) -> dict:
    """Cross-validated supervised read-out scores for one simulated data set."""
    import numpy as np
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from trends_ivae.io import find_bids_runs, prepare
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
    from trends_ivae.simulate.fmri import load_truth

    bids = write_bids(simulate_fmri(FMRISimParams(seed=seed, nonlinear=nonlinear)),
                      root / f"seed{seed}-{'sat' if nonlinear else 'lin'}")
    truth = load_truth(bids)
    runs = find_bids_runs(bids)
    p = prepare(runs, aux="task+window", window=20, n_dims=len(truth.component_names), hrf_delay=5)
    index = {s: i for i, s in enumerate(truth.subjects)}
    S = np.concatenate([truth.timecourses[index[r.subject]] for r in runs])
    groups = p.subject
    readouts = {
        "linear": make_pipeline(StandardScaler(), RidgeCV(np.logspace(-3, 3, 13))),
        "cubic": make_pipeline(StandardScaler(), PolynomialFeatures(3), StandardScaler(),
                               RidgeCV(np.logspace(-1, 5, 13))),
    }
    out = {}
    for name, model in readouts.items():
        pred = cross_val_predict(model, p.x, S, groups=groups, cv=GroupKFold(4))
        per_subject = [np.mean([abs(np.corrcoef(pred[groups == s][:, k], S[groups == s][:, k])[0, 1])
                                for k in range(S.shape[1])]) for s in np.unique(groups)]
        out[name] = float(np.mean(per_subject))
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
