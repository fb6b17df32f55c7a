"""Group maps of real fMRI against canonical networks: the iVAE in both modes against group
ICA (issue 20).

For each method, on one common mask (:func:`real_data.common_mask`: nilearn's
``compute_multi_epi_mask`` of all runs, less the voxels that are not finite or constant in
some run; Haxby: its 25 mm brain mask) and with ``--n-components`` maps:

* ``ivae-temporal``: :class:`trends_ivae.GroupIVAE` in the temporal mode as for resting
  data (``aux="window", window=15``, and ``ica="temporal"`` where the estimator has the
  spatial mode; volumes are the samples, time courses the sources);
* ``ivae-spatial``: ``GroupIVAE(ica="spatial", spatial_aux="segments")`` (voxels are the
  samples, maps the sources, u from space); ``ivae-spatial-nonlinear``: the same with
  ``estimator_params={"linear_decoder": False}``; ``ivae-spatial-linear``: the same with
  ``estimator_params={"linear_decoder": True}``, its linear start. Printed as "not
  available" where ``GroupIVAE`` has no ``ica`` parameter;
* ``canica``, ``dictlearning``: nilearn's ``CanICA`` (``threshold=None``) and
  ``DictLearning``, their defaults otherwise;
* ``fastica-spatial``, ``fastica-temporal``: scikit-learn ``FastICA`` on the prepare
  stage's group reduction (:func:`trends_ivae.reduction.prepare.prepare`, ``n_dims`` =
  the number of components): spatial, on the voxels' rows of the basis (maps are the
  sources); temporal, on the reduced volumes (maps by regression, ``back_project``).

Every method reduces to ``n_dims = n_components``, detrends, and smooths with the same
``--smoothing-fwhm``. Columns: ``coverage`` (per reference network the best |r| over the
maps, averaged over networks), networks with best |r| >= 0.3, ``one-to-one`` (mean |r| of
the Hungarian assignment of maps to networks) -- each the mean over the seeds; split-half
(the MCC of the maps fitted on two halves: subjects 1-3 vs 4-6 for GIFT, runs 1-6 vs 7-12
for Haxby, first seed); seeds (mean pairwise map MCC between the seeds' fits on all data);
fit time (median over the seeds' fits on all data, in this process, imports excluded).
GIFT's reference is its 14-network ``RSN.nii`` (:func:`real_data.rsn_reference`); Haxby
has none, so only split-half and seeds. With a reference the script also prints the
ceiling of coverage for maps that are linear combinations of the group basis
(:func:`real_data.subspace_ceiling`).

Usage::

    python benchmarks/real_networks.py                                  # GIFT, every method, seeds 0 1 2
    python benchmarks/real_networks.py --methods canica fastica-spatial --seeds 0 1 2 --json out.json
    python benchmarks/real_networks.py --dataset haxby

The bar of issue 20 (GIFT, 20 components): the default's coverage >= the best of CanICA,
DictLearning and spatial FastICA + 0.02; split-half >= CanICA's; seeds >= 0.9.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

METHODS = ("ivae-temporal", "ivae-spatial", "ivae-spatial-linear", "ivae-spatial-nonlinear", "canica",
           "dictlearning", "fastica-spatial", "fastica-temporal")
DEFAULT_SMOOTHING = {"gift": 6.0, "haxby": None}


class NotAvailable(Exception):
    """The method cannot run with this version of the package."""


def _real_data():
    if "real_data" not in sys.modules:
        spec = importlib.util.spec_from_file_location("real_data", Path(__file__).with_name("real_data.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["real_data"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["real_data"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("gift", "haxby"), default="gift")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random_state of each fit")
    p.add_argument("--n-components", type=int, default=20)
    p.add_argument("--smoothing-fwhm", type=float, default=None,
                   help=f"mm, every method; default per dataset {DEFAULT_SMOOTHING} (CanICA's own default is 6)")
    p.add_argument("--threshold", type=float, default=0.3, help="|r| at which a network counts as matched")
    p.add_argument("--n-segments", type=int, default=None,
                   help="spatial iVAE: number of segments of u (default: GroupIVAE's)")
    p.add_argument("--no-split", action="store_true", help="skip the split-half fits")
    p.add_argument("--json", default=None, metavar="OUT", help="write every figure (per seed too) here")
    return p


# ----------------------------------------------------------------------------- fits
def _on_mask(maps, own_mask, mask):
    """Maps on ``own_mask`` (3-D bool) as rows on ``mask`` (zeros where ``own_mask`` lacks a voxel)."""
    import numpy as np

    maps = np.asarray(maps, np.float64)
    if own_mask.shape == mask.shape and np.array_equal(own_mask, mask):
        return maps
    vol = np.zeros((maps.shape[0],) + own_mask.shape)
    vol[:, own_mask] = maps
    return vol[:, mask]


def _mask_of(img):
    import numpy as np

    return np.asarray(img.dataobj) > 0


def _prepared(runs, mask_img, k, smoothing, tr):
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    settings = PrepareSettings.from_options(aux="run", n_dims=k, smoothing_fwhm=smoothing)
    return prepare([str(r) for r in runs], settings, mask=mask_img, tr=tr)


def _fit_fastica(kind, runs, mask_img, k, seed, smoothing, tr):
    import numpy as np
    from sklearn.decomposition import FastICA
    from trends_ivae.group.backprojection import back_project

    p = _prepared(runs, mask_img, k, smoothing, tr)
    ica = FastICA(k, random_state=seed, max_iter=2000)
    if kind == "spatial":   # voxels are the samples: sources (n_voxels, k) are the maps
        maps = ica.fit_transform(np.asarray(p.basis, np.float64)).T
    else:                   # volumes are the samples: maps by regression on the time courses
        z = ica.fit_transform(p.x)
        maps = back_project(p.x * p.scale, z, p.basis, subject=p.subject).maps
    return _on_mask(maps, p.mask.astype(bool), _mask_of(mask_img))


def _fit_nilearn(kind, runs, mask_img, k, seed, smoothing, tr):
    from nilearn.decomposition import CanICA, DictLearning

    common = dict(n_components=k, mask=mask_img, random_state=seed, smoothing_fwhm=smoothing, t_r=tr, n_jobs=1)
    est = CanICA(threshold=None, **common) if kind == "canica" else DictLearning(**common)
    est.fit([str(r) for r in runs])
    return _on_mask(est.components_, _mask_of(est.mask_img_), _mask_of(mask_img))


def _fit_ivae(kind, runs, mask_img, k, seed, smoothing, tr, n_segments=None):
    from trends_ivae import GroupIVAE

    common = dict(n_dims=k, mask=mask_img, tr=tr, smoothing_fwhm=smoothing, random_state=seed, device="cpu")
    if kind == "temporal":   # ica="temporal" where the spatial mode exists (its "auto" is spatial at rest)
        try:
            g = GroupIVAE(k, aux="window", window=15, ica="temporal", **common)
        except TypeError:
            g = GroupIVAE(k, aux="window", window=15, **common)
    else:
        # the temporal u is built by the prepare stage in either mode: windows, as for resting data
        spatial = {"ica": "spatial", "spatial_aux": "segments", "aux": "window", "window": 15}
        if n_segments is not None:
            spatial["n_segments"] = n_segments
        if kind in ("spatial-linear", "spatial-nonlinear"):   # either decoder, whatever the default
            common["estimator_params"] = {"linear_decoder": kind == "spatial-linear"}
        try:
            g = GroupIVAE(k, **spatial, **common)
        except TypeError as err:
            raise NotAvailable(f"GroupIVAE rejects the spatial mode: {err}") from None
    g.fit([str(r) for r in runs])
    return _on_mask(g.components_, _mask_of(g.mask_img_), _mask_of(mask_img))


def fit_maps(method, runs, mask_img, k, seed, *, smoothing, tr, n_segments=None):
    """Fit ``method`` on ``runs``: (maps (k, n_voxels of mask_img), seconds)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method.startswith("ivae-"):
            maps = _fit_ivae(method[5:], runs, mask_img, k, seed, smoothing, tr, n_segments)
        elif method.startswith("fastica-"):
            maps = _fit_fastica(method[8:], runs, mask_img, k, seed, smoothing, tr)
        else:
            maps = _fit_nilearn(method, runs, mask_img, k, seed, smoothing, tr)
    return maps, time.perf_counter() - t0


# ----------------------------------------------------------------------------- the table
def evaluate(method, data: dict, args) -> dict:
    """Every figure of one method: per-seed network scores, split-half, seeds, fit time."""
    import numpy as np

    rd = _real_data()
    opts = dict(smoothing=data["smoothing"], tr=data["tr"], n_segments=args.n_segments)
    k = args.n_components
    row: dict = {"method": method, "per_seed": []}
    fits = []
    for seed in args.seeds:
        maps, wall = fit_maps(method, data["runs"], data["mask"], k, seed, **opts)
        fits.append(maps)
        entry = {"seed": seed, "fit_s": wall}
        if data["reference"] is not None:
            s = rd.network_scores(maps, data["reference"], args.threshold)
            entry.update(coverage=s["coverage"], n_matched=s["n_matched"], one_to_one=s["one_to_one"],
                         best=[float(b) for b in s["best"]])
        row["per_seed"].append(entry)
        print(f"#   {method} seed {seed}: " + ", ".join(f"{key} {v:.3f}" if isinstance(v, float) else f"{key} {v}"
                                                      for key, v in entry.items() if key not in ("seed", "best")),
              flush=True)
    for key in ("coverage", "n_matched", "one_to_one"):
        if data["reference"] is not None:
            row[key] = float(np.mean([e[key] for e in row["per_seed"]]))
    row["fit_s"] = float(np.median([e["fit_s"] for e in row["per_seed"]]))
    if len(fits) > 1:
        row["seeds"] = float(np.mean([rd.map_agreement(fits[i], fits[j])
                                      for i in range(len(fits)) for j in range(i + 1, len(fits))]))
    if not args.no_split:
        halves = [fit_maps(method, half, data["mask"], k, args.seeds[0], **opts)[0] for half in data["halves"]]
        row["split_half"] = rd.map_agreement(*halves)
    return row


def load_dataset(name: str, smoothing) -> dict:
    """Runs, the common mask, the reference (or None), the two halves, TR and smoothing."""
    rd = _real_data()
    if name == "gift":
        folder = rd.gift_dir()
        if folder is None:
            raise FileNotFoundError("GIFT's development data are absent (set TRENDS_IVAE_GIFT_DIR)")
        runs = rd.gift_runs(folder)
        mask = rd.common_mask(runs)
        reference, names = rd.rsn_reference(mask, folder)
        tr, half = rd.GIFT_TR, len(runs) // 2
    else:
        if rd.haxby_dir() is None:
            raise FileNotFoundError("Haxby subject 1 is absent (../shared/data/real/haxby2001_sub001)")
        runs, brain = rd.haxby_runs()
        mask = rd.common_mask(runs, mask=brain)
        reference, names, tr, half = None, [], rd.HAXBY_TR, 6
    return {"runs": runs, "mask": mask, "reference": reference, "networks": names, "tr": tr,
            "halves": (runs[:half], runs[half:]), "smoothing": smoothing}


def _fmt(v, nd=3) -> str:
    if v is None:
        return "—"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def print_table(rows, data, args) -> None:
    n_net = len(data["networks"])
    print(f"\n| method | coverage | networks with \\|r\\| ≥ {args.threshold} | one-to-one | split-half | "
          f"seeds ({len(args.seeds)}) | fit time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['error']} | | | | | |")
            continue
        matched = f"{r['n_matched']:.1f} / {n_net}" if "n_matched" in r else "—"
        print(f"| {r['method']} | {_fmt(r.get('coverage'))} | {matched} | {_fmt(r.get('one_to_one'))} | "
              f"{_fmt(r.get('split_half'))} | {_fmt(r.get('seeds'))} | {r['fit_s']:.1f} |")


def _machine() -> str:
    import numpy

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
            f"{numpy.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    import numpy as np

    if any(m.startswith("ivae-") for m in args.methods):   # torch only when a model needs it
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    smoothing = args.smoothing_fwhm if args.smoothing_fwhm is not None else DEFAULT_SMOOTHING[args.dataset]
    try:
        data = load_dataset(args.dataset, smoothing)
    except FileNotFoundError as err:   # the real data are never committed: absent means skipped
        print(f"({err}; skipped)")
        return 0
    print(f"# benchmarks/real_networks.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# machine: {_machine()}")
    print(f"# {args.dataset}: {len(data['runs'])} runs, mask of {int(np.asarray(data['mask'].dataobj).sum())} "
          f"voxels, {len(data['networks'])} reference networks, TR {data['tr']} s, smoothing {smoothing} mm, "
          f"{args.n_components} components, seeds {args.seeds}")
    ceiling = None
    if data["reference"] is not None:   # what maps linear in the group basis can reach at best
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            basis = _prepared(data["runs"], data["mask"], args.n_components, smoothing, data["tr"]).basis
        ceiling = _real_data().subspace_ceiling(basis, data["reference"])
        print(f"# ceiling of coverage for maps in the span of the {args.n_components}-dimensional group basis: "
              f"{ceiling.mean():.3f} (per network {', '.join(f'{c:.2f}' for c in ceiling)})")
    rows = []
    for method in args.methods:
        try:
            rows.append(evaluate(method, data, args))
        except NotAvailable as err:
            print(f"#   {method}: not available ({err})", flush=True)
            rows.append({"method": method, "error": "not available"})
        except Exception as err:   # one method's failure is a row of the table, not the end of it
            traceback.print_exc()
            rows.append({"method": method, "error": f"error: {type(err).__name__}"})
    print_table(rows, data, args)
    if args.json:
        out = {"dataset": args.dataset, "networks": data["networks"], "n_components": args.n_components,
               "seeds": args.seeds, "smoothing_fwhm": smoothing, "machine": _machine(), "rows": rows,
               "subspace_ceiling": None if ceiling is None else [float(c) for c in ceiling]}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
