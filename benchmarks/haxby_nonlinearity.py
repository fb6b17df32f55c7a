"""Does Haxby's subject 1 need nonlinear ICA? Task relatedness, split-half maps and the
held-out nonlinearity test, at 25 mm and on the one-slice version (issue 15).

For each version: ``GroupIVAE`` (u = task + window, HRF delay 5 s, ``--estimator``)
on the 12 runs gives

* task relatedness: mean over the 8 conditions of the best |r| between a component time
  course and the condition's HRF-convolved regressor (``benchmarks/fmri.py``);
* split-half reproducibility: map MCC between fits on runs 1-6 and runs 7-12;
* the held-out test (``GroupIVAE.test_nonlinearity``): the model and its linear
  counterpart fitted on 6 runs and scored on the other 6, both ways (one subject: runs
  are the held-out unit); the difference in nats per volume with its 95 % interval
  across the 12 runs.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/haxby_nonlinearity.py [--versions 25mm 1slice]
        [--estimators vae flow] [--n-components 10] [--seed 0]

Needs ``../shared/data/real/haxby2001_sub001``; prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fmri import HAXBY, haxby_regressors, map_mcc, task_relatedness  # noqa: E402

VERSIONS = {"25mm": ("bold_25mm.nii.gz", Path("sub001") / "masks" / "25mm" / "brain.nii.gz"),
            "1slice": ("bold_1slice.nii.gz", Path("mask_1slice.nii.gz"))}


def _runs(version: str, run_ids):
    from trends_ivae.data.bids import runs_from_files

    fname, mask = VERSIONS[version]
    dirs = [HAXBY / "sub001" / "BOLD" / f"task001_run{i:03d}" for i in run_ids]
    runs = runs_from_files([str(d / fname) for d in dirs], events=[str(d / "bold_events.tsv") for d in dirs],
                           subjects=["001"] * len(dirs))
    return runs, str(HAXBY / mask)


def _fit(version, run_ids, k, seed, estimator):
    import numpy as np
    from trends_ivae import GroupIVAE
    from trends_ivae.reduction.prepare import prepare

    runs, mask = _runs(version, run_ids)
    g = GroupIVAE(n_components=k, aux="task+window", window=20, hrf_delay=5.0, mask=mask, tr=2.5,
                  random_state=seed, estimator=estimator)
    prepared = prepare(runs, g.prepare_settings(), mask=g.mask, tr=g.tr)
    g.fit_prepared(prepared)
    mask_arr = np.asarray(g.mask_img_.dataobj) > 0
    return g, prepared, np.asarray(g.components_, np.float64), mask_arr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="+", choices=list(VERSIONS), default=list(VERSIONS))
    ap.add_argument("--estimators", nargs="+", choices=["vae", "flow"], default=["vae"])
    ap.add_argument("--n-components", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not HAXBY.is_dir():
        print(f"{HAXBY} is absent; nothing to do")
        return 0
    warnings.simplefilter("ignore")
    all_runs = list(range(1, 13))
    regs, _ = haxby_regressors(all_runs)
    print(f"# benchmarks/haxby_nonlinearity.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print("\n| version | estimator | task r | split-half map MCC | held-out difference (nats/volume) "
          "| 95% CI | margin | verdict | wall (s) |")
    print("|---|---|---:|---:|---:|---|---:|---|---:|")
    for version in args.versions:
        for est in args.estimators:
            t0 = time.perf_counter()
            g, prepared, maps, mask = _fit(version, all_runs, args.n_components, args.seed, est)
            rel, _ = task_relatedness(g.timecourses_, regs)
            _, _, ma, ka = _fit(version, all_runs[:6], args.n_components, args.seed, est)
            _, _, mb, kb = _fit(version, all_runs[6:], args.n_components, args.seed, est)
            split = map_mcc(ma, ka, mb, kb)
            test = g.test_nonlinearity(prepared)
            wall = time.perf_counter() - t0
            print(f"| {version} | {est} | {rel:.3f} | {split:.3f} | {test.difference:+.4f} | "
                  f"{test.ci_low:+.4f} to {test.ci_high:+.4f} | {test.margin:.2f} | {test.verdict} | "
                  f"{wall:.0f} |", flush=True)
            print(f"<!-- {version}/{est}: {test.summary()}; per run {['%+.3f' % d for d in test.group_differences]} -->",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
