"""How well can the simulated sources be read out of the prepared data at all? (issue 5)

A supervised ceiling for the time-course MCC of ``benchmarks/fmri.py``: for each data
seed, simulate the default fMRI data (``FMRISimParams``; ``--linear`` for
``nonlinear=False``), prepare it as the iVAE benchmark does (``task+window``, 20-volume
windows, one 12-dimensional group basis), then predict each true source time course from
the reduced data ``x`` with ridge regression fitted on the *truth*, cross-validated
across subjects (4 folds, so each subject is predicted by a model that never saw it),
and score the prediction as the benchmark scores a method: mean |r| over sources, per
subject, then averaged. Three read-outs: linear, cubic polynomial features, and a small
MLP (scikit-learn's ``MLPRegressor``, two hidden layers of 64, early stopping; issue 24):
the MLP ceiling minus the linear one is the *nonlinear headroom* that a nonlinear model
could add over its linear counterpart (``benchmarks/regime.py`` reports the share of it
that the iVAE captures).

``prepared_ceiling`` is the same read-out for any prepared data set (plus a map
ceiling); ``benchmarks/regime.py`` computes it for every cell of the regime map.

No unsupervised method working from the same reduced data should be expected to exceed
these numbers by much; CanICA works from the voxels, but reads out through a linear
model of the same data.

Usage::

    python benchmarks/fmri_ceiling.py                 # seeds 0-4, saturating and linear (~1 min)
    python benchmarks/fmri_ceiling.py --seeds 0 1 --cases saturating
    python benchmarks/fmri_ceiling.py --seeds 0 --cases mlp2   # the regime map's MLP mixing
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path


#: simulation overrides of each ``--cases`` value (``mlp2``: the regime map's 2-layer MLP mixing)
CASES = {"saturating": {"nonlinear": True}, "linear": {"nonlinear": False},
         "mlp2": {"nonlinear": False, "mixing_layers": 2, "snr": 1.0}}


def ceiling(seed: int, case: str, root: Path) -> dict:
    """Cross-validated supervised read-out scores for one simulated data set."""
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
    from trends_ivae.simulate.fmri import load_truth

    bids = write_bids(simulate_fmri(FMRISimParams(seed=seed, **CASES[case])), root / f"seed{seed}-{case}")
    truth = load_truth(bids)
    runs = find_bids_runs(bids)
    p = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20,
                                                   n_dims=len(truth.component_names), hrf_delay=5))
    out = prepared_ceiling(p, truth, folds=4, maps=False)
    return {"linear": out["tc_linear"], "cubic": out["tc_cubic"], "mlp": out["tc_mlp"]}


def true_sources(prepared, truth):
    """The true sources on the prepared data's rows (n, k), matched by subject label and volume."""
    import numpy as np

    index = {s: i for i, s in enumerate(truth.subjects)}
    rows = np.array([index[str(prepared.subjects[i])] for i in prepared.subject])
    return np.asarray(truth.timecourses, np.float64)[rows, prepared.volume]


def readouts(random_state: int = 0) -> dict:
    """The supervised read-out models, by name: ``tc_linear``, ``tc_cubic``, ``tc_mlp``."""
    import numpy as np
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    mlp = MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-3, learning_rate_init=3e-3, batch_size=256,
                       max_iter=300, early_stopping=True, n_iter_no_change=15, random_state=random_state)
    return {
        "tc_linear": make_pipeline(StandardScaler(), RidgeCV(np.logspace(-3, 3, 13))),
        "tc_cubic": make_pipeline(StandardScaler(), PolynomialFeatures(3), StandardScaler(),
                                  RidgeCV(np.logspace(-1, 5, 13))),
        "tc_mlp": TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler()),
    }


def readout_scores(x, S, groups, *, folds: int = 4, names=("tc_linear", "tc_cubic", "tc_mlp")) -> dict:
    """Each column of the truth ``S`` (n, k) predicted from ``x`` (n, d) by each read-out,
    cross-validated over ``groups`` (subjects; ``folds`` folds), scored like a method: mean
    |r| over sources per group, then averaged over groups."""
    import numpy as np
    from sklearn.model_selection import GroupKFold, cross_val_predict

    S = np.asarray(S, np.float64)
    groups = np.asarray(groups)
    cv = GroupKFold(min(folds, len(np.unique(groups))))
    models = readouts()
    out = {}
    for name in names:
        pred = cross_val_predict(models[name], x, S, groups=groups, cv=cv)
        per_subject = [np.mean([abs(np.corrcoef(pred[groups == s][:, k], S[groups == s][:, k])[0, 1])
                                for k in range(S.shape[1])]) for s in np.unique(groups)]
        out[name] = float(np.mean(per_subject))
    return out


def prepared_ceiling(prepared, truth, *, folds: int = 4, maps: bool = True) -> dict:
    """The supervised ceiling of one prepared data set (``benchmarks/regime.py`` uses it per cell).

    ``tc_linear`` / ``tc_cubic`` / ``tc_mlp``: each true source predicted from the reduced
    data ``x`` by ridge regression (on x, or on its cubic polynomial features) or by a
    small MLP, fitted on the truth, cross-validated across subjects (``folds`` folds),
    scored like a method (:func:`readout_scores`). ``map``: the group maps that
    regressing the data on the *true* time courses gives (``back_project``, as FastICA's
    maps are made), scored against the truth maps (effect maps with mixing) like a
    method's maps.
    """
    import numpy as np

    S = true_sources(prepared, truth)
    out = readout_scores(prepared.x, S, prepared.subject, folds=folds)
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
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=["saturating", "linear"])
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np

    print("| case | seed | linear read-out | cubic read-out | MLP read-out |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            rows = []
            for seed in args.seeds:
                r = ceiling(seed, case, Path(tmp))
                rows.append((r["linear"], r["cubic"], r["mlp"]))
                print(f"| {case} | {seed} | {r['linear']:.3f} | {r['cubic']:.3f} | {r['mlp']:.3f} |", flush=True)
            m = np.mean(rows, axis=0)
            print(f"| {case} | mean | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
