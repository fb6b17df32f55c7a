"""Spatial iVAE attempts (issue 20): which u, prior and training make the spatial iVAE
beat group ICA on real data? A table of named attempts, each run the same way.

Spatial mode at array level: the group reduction of :func:`trends_ivae.reduction.prepare.prepare`
(MIGP, ``n_dims`` columns, no smoothing, detrend on, as the prepare defaults) gives the
basis V (n_voxels, d). The samples are voxels, x is each voxel's row of V, the sources
(the posterior means E[z | x, u], one column per component) are the maps. u comes from
the voxel coordinates in mm (affine applied to the mask's voxel indices):

* ``km:K``: k-means with K clusters of the coordinates (scikit-learn ``KMeans``,
  ``n_init=3``, ``random_state=0``), one discrete label per voxel;
* ``ms:K1,K2,...``: several such k-means scales as discrete factors (a DataFrame, one
  column per scale: the iVAE's factor prior, an MLP of the concatenated one-hots);
* ``rbf:K``: continuous u, Gaussian radial basis functions of the coordinates centred at
  the K k-means centres, width the mean nearest-centre distance.

x is either ``white`` (V's columns centred and scaled to unit variance, the whitened
reduction) or ``raw`` (V's columns times the singular values, i.e. the reduced data with
its PCA variances kept, passed with ``standardize=False`` so the model sees the variances;
scaled by one global constant).

Every attempt is scored the same way: on the GIFT subjects (``benchmarks/real_data.py``:
common mask, the 14 RSN networks) coverage / networks matched (|r| >= 0.3) / one-to-one of
each seed's maps (mean over seeds), the seed agreement (MCC of seed 0's maps with each other
seed's, mean), split half (subjects 1-3 against 4-6, each reduced on its own, MCC of the
maps, seed 0) and the fit time (mean per fit). ``--data sim`` scores on the simulator
instead (map MCC against the truth maps, one row per data seed), ``--data haxby`` gives
seed and split-half (runs 1-6 / 7-12) agreement only (no reference networks there).

Baselines on the same mask: nilearn CanICA (``threshold=None``) and DictLearning with their
defaults (4 mm smoothing), and spatial FastICA on the whitened reduction, without
(``fastica``) and with 8 mm smoothing in the prepare stage (``fastica-s8``) (``--baselines``).

Usage::

    python benchmarks/spatial_attempts.py --baselines               # CanICA / DL / FastICA
    python benchmarks/spatial_attempts.py --attempts lin-white nl-white raw40-lap
    python benchmarks/spatial_attempts.py --attempts raw40-lap --data sim --seeds 0 1 2
    python benchmarks/spatial_attempts.py --list                    # the attempts' configs

Findings so far: see ``FINDINGS`` below (printed by ``--list``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: name -> config. ``u``: the u spec (see the module docstring); ``n_dims``: the reduction's
#: size; ``x``: "white" or "raw"; ``params``: IVAE parameters over the common ones
#: (``n_components`` = 20, ``device="cpu"``, ``n_threads=1``, ``random_state`` = the seed).
ATTEMPTS: dict[str, dict] = {
    # the issue's prototype: whitened x, k-means segments, IVAE defaults
    "lin-white": {"u": "km:100", "n_dims": 20, "x": "white", "params": {"linear_decoder": True}},
    "nl-white": {"u": "km:100", "n_dims": 20, "x": "white", "params": {}},
    "lin-white-lap": {"u": "km:100", "n_dims": 20, "x": "white",
                      "params": {"linear_decoder": True, "prior": "laplace"}},
    "nl-white-lap": {"u": "km:100", "n_dims": 20, "x": "white", "params": {"prior": "laplace"}},
    "nl-white-lap-km30": {"u": "km:30", "n_dims": 20, "x": "white", "params": {"prior": "laplace"}},
    "nl-white-lap-km300": {"u": "km:300", "n_dims": 20, "x": "white", "params": {"prior": "laplace"}},
    "nl-white-lap-ms": {"u": "ms:10,30,100", "n_dims": 20, "x": "white", "params": {"prior": "laplace"}},
    "nl-white-lap-rbf": {"u": "rbf:50", "n_dims": 20, "x": "white", "params": {"prior": "laplace"}},
    "nl-white-lap-noise0.2": {"u": "km:100", "n_dims": 20, "x": "white",
                              "params": {"prior": "laplace", "decoder_var": 0.2, "decoder_var_start": 0.2}},
    "nl-white-random": {"u": "km:100", "n_dims": 20, "x": "white",
                        "params": {"prior": "laplace", "init": "random", "max_epochs": 200}},
    # the reduced data with its variances kept, more dims than sources, learned noise
    "lin-raw40-lap": {"u": "km:100", "n_dims": 40, "x": "raw",
                      "params": {"linear_decoder": True, "prior": "laplace", "decoder_var": None,
                                 "standardize": False}},
    "raw40-lap": {"u": "km:100", "n_dims": 40, "x": "raw",
                  "params": {"prior": "laplace", "decoder_var": None, "standardize": False}},
    "raw20-lap": {"u": "km:100", "n_dims": 20, "x": "raw",
                  "params": {"prior": "laplace", "decoder_var": None, "standardize": False}},
    # the same with the prepare stage's smoothing (8 mm FWHM, about one voxel of GIFT's)
    "lin-raw40-lap-s8": {"u": "km:100", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                         "params": {"linear_decoder": True, "prior": "laplace", "decoder_var": None,
                                    "standardize": False}},
    "raw40-lap-s8": {"u": "km:100", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                     "params": {"prior": "laplace", "decoder_var": None, "standardize": False}},
    # controls for u: one segment (u carries nothing: a noisy Laplace ICA), finer segments
    "lin-raw40-lap-s8-u1": {"u": "km:1", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                            "params": {"linear_decoder": True, "prior": "laplace", "decoder_var": None,
                                       "standardize": False}},
    "lin-raw40-lap-s8-km300": {"u": "km:300", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                               "params": {"linear_decoder": True, "prior": "laplace", "decoder_var": None,
                                          "standardize": False}},
    # the same started at the most central of 10 FastICA runs (IVAE linear_restarts)
    "lin-raw40-lap-s8-c10": {"u": "km:100", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                             "params": {"linear_decoder": True, "prior": "laplace", "decoder_var": None,
                                        "standardize": False, "linear_restarts": 10}},
    "raw40-lap-s8-c10": {"u": "km:100", "n_dims": 40, "x": "raw", "fwhm": 8.0,
                         "params": {"prior": "laplace", "decoder_var": None, "standardize": False,
                                    "linear_restarts": 10}},
}

#: the baselines: nilearn's defaults (4 mm smoothing), spatial FastICA on the whitened
#: reduction without and with the prepare stage's 8 mm smoothing
BASELINES = ("canica", "dictlearning", "fastica", "fastica-s8")

FINDINGS = """\
Findings (issue 20; GIFT: 6 subjects x 50 volumes, common mask of 3185 voxels, 14 RSN
networks, 20 components; model seeds 0 1 2; split half seed 0; 2 shared CPU cores, so the
times are inflated by a load of about 12).

Baselines (this script, --baselines):
  method        coverage  matched  seeds  split   time
  CanICA           0.177     0      0.885  0.346   15 s
  DictLearning     0.220     3.7    0.662  0.216    7 s
  FastICA          0.159     0      0.867  0.358  0.4 s
  FastICA 8 mm     0.170     0      0.863  0.376  0.3 s
The bar: coverage >= 0.240, split >= 0.346, seeds >= 0.9.

Ceiling of the reduction: the best |r| of ANY linear combination of the 20 whitened basis
columns (plus a constant) with each network, averaged over networks, is 0.249 (0.260 with
8 mm smoothing; 0.287 with 30 dims, 0.315 with 40). Maps that are linear in x (FastICA,
a linear encoder) cannot pass 0.249, and 20 maps covering 14 networks at once stay far
below it; DictLearning's sparse codes leave the span. Rectifying FastICA's maps
(max(z - t, 0), skew made positive) lifts its coverage 0.172 -> 0.191 (seed 0).

Attempts, screening (seed 0 only, whitened x, 20 dims, IVAE defaults unless named):
  u km:30 / km:100 / km:300 / ms:10,30,100 / rbf:50, Laplace, linear decoder:
      0.147 / 0.159 / 0.158 / 0.159 / 0.159; the nonlinear decoder equal to 3 decimals
      (0.147 / 0.159 / - / 0.159 / -): the prototype's "stays at its linear start".
  Gaussian prior, km:30: linear 0.145, nonlinear 0.145.
  decoder_var 0.05 / 0.2 / learned (km:100, Laplace): linear 0.161 / 0.168 / 0.161,
      nonlinear - / 0.170 / 0.164 (more noise: a shrinking posterior mean, a little sparser).
  40 or 30 whitened dims, decoder_var 0.2: 0.155 / 0.154 (whitening the extra dims makes
      their noise as loud as the signal).
  raw x (PCA variances kept, standardize=False, decoder_var learned), km:100, Laplace:
      20 dims 0.184 (linear 0.184), 40 dims 0.185 (linear 0.186), Gaussian prior 0.185;
      + voxel z-scoring in prepare 0.157; + 8 mm smoothing in prepare 0.196.
  The linear starts themselves: FastICA seeds 0 / 1 0.172 / 0.152; nonstationary ICA
      (joint diagonalisation of the km:100 covariances, deterministic) 0.141.

Attempts, full rows (this script, 3 seeds + split half):
  attempt               coverage  matched  seeds  split   ELBO/voxel  time
  lin-white (prototype)    0.157     0      0.857  0.383   -18.59      98 s
  nl-white  (prototype)    0.157     0      0.856  0.383   -18.52     136 s
  lin-raw40-lap            0.175     0      0.843  0.429     2.59      60 s
  raw40-lap                0.177     0      0.827  0.408     8.88      86 s
  lin-raw40-lap-s8         0.188     0.3    0.866  0.437     3.82      90 s
  raw40-lap-s8             0.189     0      0.851  0.424    11.34     104 s
  lin-raw40-lap-s8-c10     0.180     0      0.817  0.470     3.99     165 s
  raw40-lap-s8-c10         0.179     0      0.802  0.453    11.19     191 s
Best: raw x with 40 dims, Laplace prior per k-means segment (100 segments of the mm
coordinates), learned noise, 8 mm smoothing: coverage +0.012 over CanICA, +0.019 over
FastICA with the same smoothing, split half 0.42-0.44 (CanICA 0.346: passes), but below
DictLearning's 0.220 and the bar's 0.240, seeds 0.85-0.87 (< 0.9). The nonlinear decoder
raises the held-out ELBO by 7.5 nats per voxel over its linear counterpart yet moves the
maps by nothing measurable (coverage 0.189 vs 0.188): what it models is not in the maps.
The prototype (whitened x, 20 dims) stays exactly at its linear start (0.157 both).

Controls for u (seeds 0 1 2, no split): one segment, i.e. u carries nothing and the model
is a noisy Laplace ICA (lin-raw40-lap-s8-u1): coverage 0.180, seeds 0.875, ELBO -2.64;
100 segments 0.188 (ELBO 3.82); 300 segments (lin-raw40-lap-s8-km300) 0.183 (ELBO 6.18).
u adds likelihood and about 0.008 coverage; the raw x and the smoothing add more.

Fresh model seeds 3 4 5 (not used for any choice; split half with seed 3):
  method              coverage  matched  seeds  split
  CanICA                 0.169     0      0.873  0.366
  DictLearning           0.215     3.0    0.603  0.200
  FastICA                0.164     0      0.879  0.365
  FastICA 8 mm           0.178     0      0.851  0.398
  lin-raw40-lap-s8       0.189     0      0.842  0.448
  raw40-lap-s8           0.188     0.3    0.831  0.436

Simulator (simulate_fmri defaults: 8 subjects, 12 sources, saturating response; map MCC
with the truth; data seeds 0 / 1 / 2, none used for any choice above):
  CanICA 0.744 / 0.800 / 0.795, DictLearning 0.740 / 0.792 / 0.844,
  FastICA 0.907 / 0.914 / 0.921 (8 mm: 0.905 / 0.914 / 0.922),
  lin-raw40-lap-s8 0.929 / 0.943 / 0.944, raw40-lap-s8 0.895 / 0.912 / 0.923,
  lin-white 0.576, nl-white 0.519 (seed 0).
The whitened x with more dims than sources fails on the simulator (decoder_var 1e-3 forces
the 12 sources to explain the whitened noise dims); the raw x with learned noise does not,
and beats CanICA and FastICA there; the nonlinear decoder again has the higher ELBO and
the lower map MCC.

Seed agreement: FastICA's maps agree 0.87-0.90 between seeds; the most central of 10
FastICA restarts (ICASSO-style) agrees 0.92-0.95 with the central one of 10 other seeds
(0.88-0.95 with 8 mm smoothing). But starting the iVAE there (IVAE(linear_restarts=10),
the -c10 rows) did not carry through training: seeds 0.80-0.82, coverage 0.18. The
trained raw-x model moves far from its start (learned noise), so its seed spread comes
from training, not from the start.
"""


def _load_real_data():
    name = "real_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "real_data.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


# ----------------------------------------------------------------------------- u
def voxel_coords_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(n_voxels, 3) world coordinates of the mask's voxels, in mask order."""
    ijk = np.argwhere(np.asarray(mask) > 0)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def build_u(spec: str, xyz: np.ndarray):
    """u from the voxel coordinates: ``km:K``, ``ms:K1,K2,...`` or ``rbf:K``."""
    from sklearn.cluster import KMeans

    kind, _, arg = spec.partition(":")

    def km(k: int):
        if k > len(xyz):
            raise ValueError(f"u {spec!r}: {k} segments for {len(xyz)} voxels")
        return KMeans(k, n_init=3, random_state=0).fit(xyz)

    if kind == "km":
        return km(int(arg)).labels_
    if kind == "ms":
        import pandas as pd

        return pd.DataFrame({f"k{k}": km(int(k)).labels_ for k in arg.split(",")})
    if kind == "rbf":
        centres = km(int(arg)).cluster_centers_
        dist = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
        width = np.sort(dist, axis=1)[:, 1].mean()
        d2 = ((xyz[:, None, :] - centres[None]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * width ** 2)).astype(np.float32)
    raise ValueError(f"unknown u spec {spec!r}")


# ----------------------------------------------------------------------------- data
def reduce_runs(runs, mask_img, n_dims: int, tr: float, fwhm: float | None = None) -> dict:
    """The group reduction: basis V, singular values, mask, affine (``fwhm``: smoothing)."""
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = prepare([str(r) if isinstance(r, Path) else r for r in runs],
                     PrepareSettings.from_options(aux="run", n_dims=n_dims, smoothing_fwhm=fwhm), mask=mask_img, tr=tr)
    return {"basis": np.asarray(pr.basis, np.float64), "sv": np.asarray(pr.singular_values, np.float64),
            "mask": np.asarray(pr.mask) > 0, "affine": np.asarray(pr.affine)}


def design(red: dict, kind: str) -> np.ndarray:
    """x per voxel: ``white`` (unit-variance columns) or ``raw`` (the PCA variances kept)."""
    V = red["basis"] - red["basis"].mean(0)
    if kind == "white":
        return V / V.std(0)
    if kind == "raw":
        X = V * red["sv"]
        return X / X[:, 0].std()
    raise ValueError(f"unknown x {kind!r}")


def fit_attempt(cfg: dict, red: dict, seed: int, n_components: int = 20) -> tuple[np.ndarray, float, float]:
    """Maps (n_components, n_voxels) of one attempt on one reduction, the fit time and the
    held-out ELBO per voxel."""
    import torch

    from trends_ivae.estimators.ivae import IVAE

    torch.set_num_threads(1)
    X = design(red, cfg.get("x", "white"))
    u = build_u(cfg["u"], voxel_coords_mm(red["mask"], red["affine"]))
    params = {"n_components": n_components, "device": "cpu", "n_threads": 1, "random_state": seed}
    params.update(cfg.get("params", {}))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = IVAE(**params).fit(X, u)
        z = est.transform(X, u)
    return z.T, time.perf_counter() - t0, float(est.elbo_)


def fit_fastica(red: dict, seed: int, n_components: int = 20) -> tuple[np.ndarray, float]:
    """Spatial FastICA on the whitened reduction."""
    from sklearn.decomposition import FastICA

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = FastICA(n_components, whiten="unit-variance", random_state=seed,
                    max_iter=2000).fit_transform(design(red, "white"))
    return z.T, time.perf_counter() - t0, float("nan")


def fit_nilearn(name: str, runs, mask_img, seed: int, n_components: int = 20):
    """CanICA (``threshold=None``) or DictLearning maps on ``mask_img``, and the time."""
    from nilearn.decomposition import CanICA, DictLearning

    cls, extra = (CanICA, {"threshold": None}) if name == "canica" else (DictLearning, {})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = cls(n_components=n_components, mask=mask_img, random_state=seed, n_jobs=1, **extra)
        est.fit([str(r) if isinstance(r, Path) else r for r in runs])
    return np.asarray(est.components_, np.float64), time.perf_counter() - t0, float("nan")


# ----------------------------------------------------------------------------- data sets
class Dataset:
    """Runs, a common mask, a reference (or None), the split halves and the TR."""

    def __init__(self, which: str, sim_seed: int = 0) -> None:
        rd = _load_real_data()
        self.which, self.truth = which, None
        if which == "gift":
            root = rd.gift_dir()
            if root is None:
                raise SystemExit("GIFT data absent: nothing to do")
            self.runs, self.tr = rd.gift_runs(root), rd.GIFT_TR
            self.mask_img = rd.common_mask(self.runs)
            self.reference, _ = rd.rsn_reference(self.mask_img, root)
            self.halves = (self.runs[:3], self.runs[3:])
        elif which == "haxby":
            if rd.haxby_dir() is None:
                raise SystemExit("Haxby data absent: nothing to do")
            self.runs, mask = rd.haxby_runs()
            self.tr = rd.HAXBY_TR
            self.mask_img = rd.common_mask(self.runs, mask)
            self.reference = None
            self.halves = (self.runs[:6], self.runs[6:])
        elif which == "sim":
            from trends_ivae.simulate import simulate_fmri

            sim = simulate_fmri(seed=sim_seed)
            self.runs, self.tr = sim.imgs, sim.params.tr
            self.mask_img = sim.truth.mask_img()
            self.truth = sim.truth.maps                     # (k, n_voxels) on the truth mask
            self.reference = None
            half = len(self.runs) // 2
            self.halves = (self.runs[:half], self.runs[half:])
        else:
            raise ValueError(which)

    def score(self, maps: np.ndarray) -> dict:
        rd = _load_real_data()
        if self.reference is not None:
            s = rd.network_scores(maps, self.reference)
            return {k: s[k] for k in ("coverage", "n_matched", "one_to_one")}
        if self.truth is not None:
            return {"map_mcc": rd.map_agreement(maps, self.truth)}
        return {}


def run_method(name: str, ds: Dataset, seeds, n_components: int, split: bool) -> dict:
    """One attempt or baseline: scores per seed (averaged), seed agreement, split half, time."""
    rd = _load_real_data()
    cache: dict = {}

    def reduced(key, runs, n_dims, fwhm=None):
        if (key, n_dims, fwhm) not in cache:
            cache[key, n_dims, fwhm] = reduce_runs(runs, ds.mask_img, n_dims, ds.tr, fwhm)
        return cache[key, n_dims, fwhm]

    def fit(runs, key, seed):
        if name in ("canica", "dictlearning"):
            return fit_nilearn(name, runs, ds.mask_img, seed, n_components)
        if name.startswith("fastica"):
            fwhm = 8.0 if name == "fastica-s8" else None
            return fit_fastica(reduced(key, runs, n_components, fwhm), seed, n_components)
        cfg = ATTEMPTS[name]
        red = reduced(key, runs, cfg.get("n_dims", n_components), cfg.get("fwhm"))
        return fit_attempt(cfg, red, seed, n_components)

    maps, times, scores, elbos = [], [], [], []
    for seed in seeds:
        m, t, elbo = fit(ds.runs, "all", seed)
        maps.append(m)
        times.append(t)
        elbos.append(elbo)
        scores.append(ds.score(m))
    row = {"method": name, **{k: float(np.mean([s[k] for s in scores])) for k in scores[0]}}
    if np.isfinite(elbos).all():
        row["elbo"] = float(np.mean(elbos))
    if len(maps) > 1:
        row["seeds"] = float(np.mean([rd.map_agreement(maps[0], m) for m in maps[1:]]))
    if split:
        a = fit(ds.halves[0], "h1", seeds[0])[0]
        b = fit(ds.halves[1], "h2", seeds[0])[0]
        row["split_half"] = rd.map_agreement(a, b)
    row["time_s"] = float(np.mean(times))
    return row


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", choices=("gift", "haxby", "sim"), default="gift")
    p.add_argument("--attempts", nargs="*", default=[], help=f"attempt names: {list(ATTEMPTS)}")
    p.add_argument("--baselines", action="store_true", help="also CanICA, DictLearning, spatial FastICA")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="model seeds (with --data sim: data seeds; the model seed is 0)")
    p.add_argument("--n-components", type=int, default=20)
    p.add_argument("--no-split", action="store_true", help="skip the split-half fits")
    p.add_argument("--json", default=None, help="append each row as a JSON line to this file")
    p.add_argument("--list", action="store_true", help="print the attempts and the findings, then exit")
    return p


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    if args.list:
        for name, cfg in ATTEMPTS.items():
            print(f"{name:28s} {json.dumps(cfg)}")
        print(FINDINGS)
        return 0
    bad = [a for a in args.attempts if a not in ATTEMPTS]
    if bad:
        raise SystemExit(f"unknown attempts {bad}; known: {list(ATTEMPTS)}")
    methods = (list(BASELINES) if args.baselines else []) + list(args.attempts)
    k = 12 if args.data == "sim" and args.n_components == 20 else args.n_components
    data_seeds = args.seeds if args.data == "sim" else [None]
    model_seeds = [0] if args.data == "sim" else args.seeds
    for ds_seed in data_seeds:
        ds = Dataset(args.data, sim_seed=ds_seed or 0)
        for name in methods:
            row = run_method(name, ds, model_seeds, k, split=not args.no_split)
            row = {"data": args.data if ds_seed is None else f"sim{ds_seed}", **row}
            print("  ".join(f"{key}={val:.3f}" if isinstance(val, float) else f"{key}={val}"
                            for key, val in row.items()), flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
