"""The nonlinear decoder's attempts that run without the regime map (issue 24).

Two parts, each printing its figures:

* ``arrays``: a small MLP-mixed case with high SNR (3 sources, 3-layer MLP mixing,
  20 segments x 150 samples, noise SD 0.05; ``make_segment_data``), fitted by the
  temporal ``GroupIVAE``'s array estimator (``make_estimator("vae", ...)``, one restart)
  in several variants (``VARIANTS``), with the supervised linear and MLP read-out
  ceilings of ``benchmarks/fmri_ceiling.py`` (groups: blocks of 5 segments);
* ``dims``: the default fMRI simulation (``FMRISimParams``, 12 sources), prepared to
  several ``n_dims`` and fitted by ``GroupIVAE(12, n_init=3)`` (time-course MCC);
* ``wide``: the array case (2 layers, noise 0.1) with 3 pure-noise dimensions appended,
  standardised per dimension or by one scale.

Usage::

    python benchmarks/nonlinear_decoder.py arrays --seeds 0 1 --variants default linear long linear-long
    python benchmarks/nonlinear_decoder.py dims --seeds 0 1 --n-dims 12 18 24
    python benchmarks/nonlinear_decoder.py wide --seeds 0 1
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

LONG = {"max_epochs": 300, "patience": 300}
#: estimator_params of each variant (all: the group defaults, 60 epochs unless said)
VARIANTS = {
    "default": {}, "linear": {"linear_decoder": True},
    "frozen": {"affine_path": "frozen"}, "anneal": {"affine_path": "anneal"},
    "long": LONG, "linear-long": {"linear_decoder": True, **LONG},
    "anneal-long": {"affine_path": "anneal", **LONG},
    "random": {"init": "random"}, "random-long": {"init": "random", **LONG},
    "linear-random-long": {"linear_decoder": True, "init": "random", **LONG},
}


def _ceiling_module():
    spec = importlib.util.spec_from_file_location("bench_fmri_ceiling", Path(__file__).with_name("fmri_ceiling.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def arrays(seeds, variants, layers: int = 3, noise: float = 0.05) -> None:
    from trends_ivae.group.training import make_estimator
    from trends_ivae.metrics import mcc
    from trends_ivae.simulate.synthetic import make_segment_data

    print("| seed | variant | MCC | held-out ELBO | fit (s) |\n|---:|---|---:|---:|---:|")
    for seed in seeds:
        d = make_segment_data(3, n_segments=20, n_per_segment=150, n_layers=layers, noise_std=noise,
                              random_state=seed, n_draws_for_threshold=1000)
        c = _ceiling_module().readout_scores(d.X, d.S, d.u // 5, folds=4, names=("tc_linear", "tc_mlp"))
        print(f"| {seed} | *ceiling* linear / MLP | {c['tc_linear']:.3f} / {c['tc_mlp']:.3f} | | |", flush=True)
        for name in variants:
            t = time.perf_counter()
            est = make_estimator("vae", 3, len(d.X), n_init=1, params={"max_epochs": 60, **VARIANTS[name]},
                                 random_state=0, device="cpu")
            est.fit(d.X, d.u)
            print(f"| {seed} | {name} | {mcc(est.transform(d.X, d.u), d.S).score:.3f} | {est.elbo_:.3f} | "
                  f"{time.perf_counter() - t:.1f} |", flush=True)


def wide(seeds) -> None:
    import numpy as np

    from trends_ivae.group.training import make_estimator
    from trends_ivae.metrics import mcc
    from trends_ivae.simulate.synthetic import make_segment_data

    print("| seed | d | standardize | MCC |\n|---:|---:|---|---:|")
    for seed in seeds:
        d = make_segment_data(3, n_segments=20, n_per_segment=150, n_layers=2, noise_std=0.1, random_state=seed)
        x = d.X / d.X.std(0)
        noise = 0.3 * np.random.default_rng(seed + 100).standard_normal((len(x), 3)).astype(np.float32)
        for dims, data, std in [(3, x, True), (6, np.hstack([x, noise]), True), (6, np.hstack([x, noise]), "global")]:
            est = make_estimator("vae", 3, len(data), n_init=1, params={"max_epochs": 40, "standardize": std},
                                 random_state=0, device="cpu")
            est.fit(data, d.u)
            print(f"| {seed} | {dims} | {std} | {mcc(est.transform(data, d.u), d.S).score:.3f} |", flush=True)


def dims(seeds, n_dims) -> None:
    import numpy as np

    from trends_ivae import GroupIVAE
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.metrics import mcc
    from trends_ivae.reduction.prepare import prepare
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
    from trends_ivae.simulate.fmri import load_truth

    print("| seed | n_dims | time-course MCC | fit (s) |\n|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            bids = write_bids(simulate_fmri(FMRISimParams(seed=seed)), Path(tmp) / f"seed{seed}")
            truth, runs = load_truth(bids), find_bids_runs(bids)
            k = len(truth.component_names)
            index = {s: i for i, s in enumerate(truth.subjects)}
            for d in n_dims:
                p = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20, n_dims=d, hrf_delay=5))
                t = time.perf_counter()
                g = GroupIVAE(k, aux="task+window", window=20, n_dims=d, hrf_delay=5, n_init=3, random_state=0,
                              device="cpu").fit_prepared(p)
                tc = np.mean([mcc(np.asarray(z), truth.timecourses[index[r["subject"]]]).score
                              for r, z in zip(p.runs, g.timecourses_)])
                print(f"| {seed} | {d} | {tc:.3f} | {time.perf_counter() - t:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["arrays", "dims", "wide"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["default", "linear", "long", "linear-long"])
    ap.add_argument("--n-dims", type=int, nargs="+", default=[12, 18, 24])
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    if args.part == "arrays":
        arrays(args.seeds, args.variants)
    elif args.part == "wide":
        wide(args.seeds)
    else:
        dims(args.seeds, args.n_dims)
    return 0


if __name__ == "__main__":
    sys.exit(main())
