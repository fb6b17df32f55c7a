"""The analysis layer's bar: known dFNC states recovered, the reference computations, the cost.

For each seed, the default 8-subject fMRI simulation with time-varying coupling
(``coupling_block`` volumes per state, two states alternating: one pair of resting
sources at +0.5 then -0.5, another at +0.4 then 0; :mod:`trends_ivae.simulate.coupling`)
is written as BIDS, fitted with ``trends-ivae fit`` (12 components, the defaults; the
analysis hook off, to time the fit alone), then:

1. **Recovered states.** dFNC (GIFT's defaults, 2 states) of three sets of time courses:
   the model's own (``model``), spatial regression of the fit's group maps
   (``dualreg``), and a CanICA + dual-regression baseline on the same files (nilearn's
   ``CanICA``, 12 components). Each set is matched to the true sources (Hungarian
   assignment on |correlation|, signs fixed), the centroids are put in the truth's
   order and signs, each true state is matched to a centroid, and we print the
   correlation between each true state matrix and its centroid (upper triangles) and
   the largest error over subjects of the fraction of time in each state (truth: the
   state at each window's centre volume). Bar: both correlations >= 0.8, errors <= 0.1.
   The same on the true sources themselves is the ceiling of the dFNC method on these
   data, whatever recovered the components.
2. **Reference computations.** Static FNC against nilearn's
   ``ConnectivityMeasure(kind="correlation")`` (empirical covariance) + ``arctanh`` on
   the same post-processed time courses; spectra against a plain FFT multitaper with
   ``scipy.signal.windows.dpss``. Bar: 1e-6.
3. **Cost.** ``trends-ivae analyze`` without and with ``--dfnc`` (its defaults: both
   kinds, states by the elbow) against the fit's wall time, with the process CPU time
   (the analysis is single-threaded: its CPU time is its wall time on a quiet machine) (bar: <= 10 % without, <= 1 min with, on 2 cores), and the peak traced
   memory of dFNC on 4 and on 8 subjects (flat: subjects are windowed one at a time).

Usage::

    python benchmarks/connectivity.py --seeds 0            # the development seed
    python benchmarks/connectivity.py --seeds 1 2          # fresh seeds, reported apart
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np


def _match(est: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimated column per true source, sign) by Hungarian assignment on |corr|."""
    from scipy.optimize import linear_sum_assignment

    k = truth.shape[1]
    c = np.corrcoef(est.T, truth.T)[:est.shape[1], est.shape[1]:]
    rows, cols = linear_sum_assignment(-np.abs(c))
    order = np.empty(k, int)
    signs = np.ones(k)
    for r, t in zip(rows, cols):
        order[t], signs[t] = r, np.sign(c[r, t])
    return order, signs


def _state_scores(res, order, signs, true_mats, true_fraction) -> tuple[list, float]:
    """(correlation of each true state with its matched centroid, max fraction error)."""
    from scipy.optimize import linear_sum_assignment

    iu = np.triu_indices(len(order), 1)
    flip = np.outer(signs, signs)
    cents = [(c[np.ix_(order, order)] * flip)[iu] for c in res.centroids]
    truth = [np.arctanh(np.clip(m, -0.99, 0.99))[iu] for m in true_mats]
    r = np.array([[np.corrcoef(t, c)[0, 1] for c in cents] for t in truth])
    rows, cols = linear_sum_assignment(-r)
    err = max(float(np.max(np.abs(res.fraction[:, cols[i]] - true_fraction[:, rows[i]]))) for i in range(len(rows)))
    return [float(r[i, j]) for i, j in zip(rows, cols)], err


def _true_fraction(res, state_of_volume: np.ndarray, window: int) -> np.ndarray:
    """(n_subjects, 2): fraction of each subject's windows whose centre volume is in each state."""
    return np.array([[np.mean(state_of_volume[st + window // 2] == s) for s in (0, 1)] for st in res.window_start])


def _canica_timecourses(bids: Path, k: int, seed: int) -> list[np.ndarray]:
    """CanICA's per-run time courses: each run (masked and cleaned by CanICA's own masker)
    regressed on the group maps (dual regression stage 1)."""
    from nilearn.decomposition import CanICA

    runs = sorted(str(p) for p in bids.glob("sub-*/func/*_bold.nii.gz"))
    ica = CanICA(n_components=k, random_state=seed, standardize="zscore_sample", threshold=None, n_jobs=1)
    ica.fit(runs)
    pinv = np.linalg.pinv(np.asarray(ica.components_, np.float64))   # (n_voxels, k)
    return [ica.masker_.transform(r) @ pinv for r in runs]


def _references(tcs, trs) -> tuple[float, float]:
    """(max |FNC - nilearn|, max relative |spectra - plain multitaper|)."""
    from nilearn.connectome import ConnectivityMeasure
    from scipy.signal.windows import dpss
    from sklearn.covariance import EmpiricalCovariance

    from trends_ivae.analysis import PostprocessSettings, postprocess, spectra, static_fnc

    fnc = static_fnc(tcs, [str(i) for i in range(len(tcs))], trs)
    clean = [postprocess(t, tr) for t, tr in zip(tcs, trs)]
    ref = ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance()).fit_transform(clean)
    off = ~np.eye(ref.shape[1], dtype=bool)
    d_fnc = float(np.max(np.abs(fnc.z[:, off] - np.arctanh(ref[:, off]))))
    sp = spectra(tcs, [str(i) for i in range(len(tcs))], trs)
    worst = 0.0
    for i, (t, tr) in enumerate(zip(tcs, trs)):
        x = postprocess(t, tr, PostprocessSettings().for_spectra())
        tapers = dpss(len(x), 3.0, Kmax=5)
        p = np.mean([np.abs(np.fft.rfft(x * w[:, None], axis=0)) ** 2 for w in tapers], axis=0) * 2 * tr
        p[0] /= 2
        if len(x) % 2 == 0:
            p[-1] /= 2
        worst = max(worst, float(np.max(np.abs(sp.power[i] - p) / np.max(p, axis=0))))
    return d_fnc, worst


def run_seed(seed: int, block: int, work: Path) -> dict:
    from trends_ivae.analysis import DFNCSettings, dynamic_fnc
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
    from trends_ivae.simulate.coupling import coupling_states
    from trends_ivae.workflow import OutputSettings, fit_to_folder
    from trends_ivae.workflow.analyze import AnalyzeSettings, analyze_folder, timecourses_from_folder
    from trends_ivae.workflow.fit_options import FitOptions

    params = FMRISimParams(seed=seed, coupling_block=block)
    sim = simulate_fmri(params)
    bids = write_bids(sim, work / f"bids{seed}")
    state, mats = coupling_states(params)
    truth = sim.truth.timecourses                                    # (S, T, K)
    k = truth.shape[2]
    fit_dir = work / f"fit{seed}"
    options = FitOptions(bids=str(bids), out=str(fit_dir), n_components=k, seed=seed, report=False)
    job = options.job(options.check())
    t0 = time.perf_counter()
    fit_to_folder(job.data, fit_dir, fit=job.fit, output=OutputSettings(report=False, analyze=False))
    fit_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    analyze_folder(fit_dir)
    cheap_s, cheap_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()   # the default command: both kinds, states by the elbow
    analyze_folder(fit_dir, out=work / f"dfnc{seed}", settings=AnalyzeSettings(dfnc=DFNCSettings()))
    dfnc_s, dfnc_cpu = time.perf_counter() - t0, time.process_time() - c0
    dfnc = DFNCSettings(n_states=2)
    tcs = timecourses_from_folder(fit_dir)
    sets = {"model": tcs.timecourses["model"], "dualreg": tcs.timecourses["dualreg"],
            "canica+dualreg": _canica_timecourses(bids, k, seed), "true sources": list(truth)}
    out = {"seed": seed, "fit_s": fit_s, "analyze_s": cheap_s, "analyze_dfnc_s": dfnc_s,
           "analyze_cpu": cheap_cpu, "analyze_dfnc_cpu": dfnc_cpu}
    for name, runs in sets.items():
        order, signs = _match(np.concatenate(runs), truth.reshape(-1, k))
        mcc = float(np.mean([abs(np.corrcoef(np.concatenate(runs)[:, order[j]], truth.reshape(-1, k)[:, j])[0, 1])
                             for j in range(k)]))
        res = dynamic_fnc(runs, tcs.subjects, tcs.trs, settings=dfnc, kind="model")
        out[name] = (*_state_scores(res, order, signs, mats, _true_fraction(res, state, dfnc.window)), mcc)
    out["fnc_vs_nilearn"], out["spectra_vs_scipy"] = _references(sets["model"], tcs.trs)
    peaks = {}
    for n in (4, 8):
        tracemalloc.start()
        dynamic_fnc(sets["model"][:n], tcs.subjects[:n], tcs.trs[:n], settings=dfnc)
        peaks[n] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    out["peak_mb"] = peaks
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--block", type=int, default=30, help="volumes per coupling state")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:   # pragma: no cover
        pass
    print("seed | time courses | MCC with the truth | state r (1, 2) | max fraction error")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_seed(seed, args.block, Path(tmp))
        for name in ("model", "dualreg", "canica+dualreg", "true sources"):
            (ra, rb), err, mcc = r[name]
            print(f"{seed} | {name} | {mcc:.2f} | {ra:.2f}, {rb:.2f} | {err:.3f}")
        print(f"{seed} | cost: fit {r['fit_s']:.1f} s wall; analyze {r['analyze_s']:.1f} s wall "
              f"({100 * r['analyze_s'] / r['fit_s']:.1f} % of the fit), {r['analyze_cpu']:.1f} s CPU; analyze --dfnc "
              f"{r['analyze_dfnc_s']:.1f} s wall, {r['analyze_dfnc_cpu']:.1f} s CPU")
        print(f"{seed} | static FNC vs nilearn + arctanh: max |diff| {r['fnc_vs_nilearn']:.2e}; spectra vs plain "
              f"multitaper: max relative diff {r['spectra_vs_scipy']:.2e}; dFNC peak traced memory "
              f"{r['peak_mb'][4]:.1f} MB (4 subjects), {r['peak_mb'][8]:.1f} MB (8 subjects)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
