"""The spatial iVAE against spatial group ICA on the fMRI simulator, whose maps are known
(issue 20).

For each data seed the simulator (:func:`trends_ivae.simulate.fmri.simulate_fmri`, its
defaults: 8 subjects x 180 volumes, 12 sources of which 3 task-locked, saturating voxel
response, SNR 1; ``--quick`` a smaller grid and 4 subjects) writes a BIDS dataset to a
temporary folder. Every method fits the written runs on one common mask
(:func:`real_data.common_mask`) with as many components as there are true sources and
the same smoothing, through :func:`real_networks.fit_maps`:

* ``ivae-spatial``: ``GroupIVAE(ica="spatial", spatial_aux="segments")`` (printed as "not
  available" where ``GroupIVAE`` has no ``ica`` parameter); ``ivae-spatial-linear``: the
  same with a linear decoder (its linear start);
* ``canica``: nilearn's ``CanICA`` (``threshold=None``);
* ``fastica-spatial``: scikit-learn ``FastICA`` on the voxels' rows of the prepare stage's
  group basis (``n_dims`` = the number of sources);
* ``ivae-temporal``, ``fastica-temporal`` (not run by default): the temporal mode and
  temporal FastICA, for context.

Score: the map MCC (Hungarian-matched mean |r|) between the group maps and the true
group maps (``truth.maps``), on the voxels in both the common mask and the truth mask.

Seeds. ``--seeds`` are the data seeds; the model seed is ``--model-seed``. The defaults
101 102 103 are the report seeds: no choice of the spatial model was made on them. Make
choices on the tuning seeds 1 2 3 (``--seeds 1 2 3``) and report them apart.

Fit time. ``--timing`` prints the two commands that the bar times side by side on the
8-subject simulation (whole processes, medians of paired runs): ``trends-ivae fit --ica
spatial`` and ``benchmarks/canica_script.py`` on the same BIDS folder; ``--time-pairs N``
also runs them N times, alternating, and prints the medians and the median paired ratio.

Usage::

    python benchmarks/spatial_simulation.py                         # report seeds 101 102 103
    python benchmarks/spatial_simulation.py --seeds 1 2 3           # tuning seeds
    python benchmarks/spatial_simulation.py --quick --methods canica fastica-spatial
    python benchmarks/spatial_simulation.py --timing --keep /tmp/sim8 [--time-pairs 3]

The bar of issue 20: the spatial mode's map MCC >= CanICA's and >= spatial FastICA's on 3
data seeds not used for choices; its fit time <= 1.5 x CanICA's.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("ivae-spatial", "ivae-spatial-linear", "canica", "fastica-spatial", "ivae-temporal",
           "fastica-temporal", "ivae-spatial-nonlinear")
DEFAULT_METHODS = METHODS[:4]
REPORT_SEEDS = (101, 102, 103)
TUNING_SEEDS = (1, 2, 3)
QUICK = {"n_subjects": 4, "n_volumes": 120, "shape": (20, 24, 20)}


def _module(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(REPORT_SEEDS),
                   help=f"data seeds (report seeds; tuning seeds are {list(TUNING_SEEDS)})")
    p.add_argument("--model-seed", type=int, default=0, help="random_state of every method")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    p.add_argument("--quick", action="store_true", help=f"a smaller simulation: {QUICK}")
    p.add_argument("--smoothing-fwhm", type=float, default=6.0, help="mm, every method (CanICA's default)")
    p.add_argument("--n-segments", type=int, default=None,
                   help="spatial iVAE: number of segments of u (default: GroupIVAE's)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="write the simulated datasets here (kept) instead of a temporary folder")
    p.add_argument("--timing", action="store_true",
                   help="print the side-by-side timing commands for the 8-subject simulation (first seed)")
    p.add_argument("--time-pairs", type=int, default=0, metavar="N",
                   help="with --timing, also run the two commands N times, alternating")
    p.add_argument("--json", default=None, metavar="OUT", help="write every figure here")
    return p


def simulate(seed: int, root: Path, quick: bool) -> Path:
    """Write the simulation of data seed ``seed`` under ``root``; its BIDS folder."""
    from trends_ivae.simulate.fmri import FMRISimParams, simulate_fmri, write_bids

    params = FMRISimParams.from_dict({**FMRISimParams().to_dict(), **(QUICK if quick else {}), "seed": seed})
    bids = root / f"sim_seed{seed}{'_quick' if quick else ''}"
    if not (bids / "dataset_description.json").is_file():
        write_bids(simulate_fmri(params), bids, force=True)
    return bids


def truth_mcc(maps, mask, truth) -> float:
    """Map MCC between maps on ``mask`` (3-D bool) and the true maps, on the voxels in both."""
    import numpy as np
    from trends_ivae.metrics import mcc

    both = mask & truth.mask
    vol = np.zeros((len(maps),) + mask.shape)
    vol[:, mask] = maps
    true = np.zeros((len(truth.maps),) + mask.shape)
    true[:, truth.mask] = truth.maps
    return mcc(vol[:, both].T, true[:, both].T).score


def run_seed(bids: Path, args) -> list[dict]:
    """Every method on one simulated dataset: map MCC and fit time per method."""
    import numpy as np
    from trends_ivae.simulate.fmri import load_truth

    rd, rn = _module("real_data"), _module("real_networks")
    truth = load_truth(bids)
    runs = sorted(bids.glob("sub-*/func/*_bold.nii*"))
    mask_img = rd.common_mask(runs)
    mask = np.asarray(mask_img.dataobj) > 0
    out = []
    for method in args.methods:
        try:
            maps, wall = rn.fit_maps(method, runs, mask_img, len(truth.component_names), args.model_seed,
                                     smoothing=args.smoothing_fwhm, tr=float(truth.params.get("tr", 2.0)),
                                     n_segments=args.n_segments)
        except rn.NotAvailable as err:
            print(f"#   {method}: not available ({err})", flush=True)
            out.append({"method": method, "error": "not available"})
            continue
        except Exception as err:   # one method's failure is a row of the table
            traceback.print_exc()
            out.append({"method": method, "error": f"error: {type(err).__name__}"})
            continue
        res = {"method": method, "map_mcc": truth_mcc(maps, mask, truth), "fit_s": wall}
        print(f"#   {bids.name} {method}: map MCC {res['map_mcc']:.3f}, fit {wall:.1f} s", flush=True)
        out.append(res)
    return out


def timing_commands(bids: Path, out_root: Path, k: int) -> tuple[list[str], list[str]]:
    """The two whole-process commands of the fit-time bar (argv lists)."""
    cli = [sys.executable, "-c", "import sys; from trends_ivae.cli.main import main; sys.exit(main(sys.argv[1:]))"]
    ivae = cli + ["fit", "--bids", str(bids), "--out", str(out_root / "ivae_spatial"), "--force", "--no-report",
                  "--n-components", str(k), "--ica", "spatial", "--device", "cpu"]
    canica = [sys.executable, str(HERE / "canica_script.py"), str(bids), str(out_root / "canica"), str(k)]
    return ivae, canica


def time_pairs(commands: tuple[list[str], list[str]], n: int) -> dict:
    """Run both commands ``n`` times, alternating; medians and the median paired ratio."""
    import numpy as np

    walls: list[list[float]] = [[], []]
    for i in range(n):
        for j in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            # cwd: not the checkout, so that the commands import the package this process imports
            proc = subprocess.run(commands[j], capture_output=True, text=True, cwd=tempfile.gettempdir())
            walls[j].append(time.perf_counter() - t0)
            if proc.returncode:
                return {"error": f"{shlex.join(commands[j][:1] + commands[j][3:4])} failed "
                                 f"(exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}
    ratio = np.median(np.array(walls[0]) / np.array(walls[1]))
    return {"ivae_s": float(np.median(walls[0])), "canica_s": float(np.median(walls[1])),
            "ratio": float(ratio), "n": n}


def _timing(bids: Path, root: Path, args) -> dict:
    from trends_ivae.simulate.fmri import load_truth

    k = len(load_truth(bids).component_names)
    cmds = timing_commands(bids, root / "timing", k)
    print("\n## Fit time, whole processes side by side (8-subject simulation, "
          f"data seed {args.seeds[0]})\n")
    print("```")
    print("trends-ivae " + shlex.join(cmds[0][3:]))
    print("python " + shlex.join(cmds[1][1:]))
    print("```")
    if not args.keep:
        print("(the folder is temporary: give --keep DIR to keep the dataset for these commands)")
    if not args.time_pairs:
        return {}
    res = time_pairs(cmds, args.time_pairs)
    if "error" in res:
        print(f"\ntiming: {res['error']}")
    else:
        print(f"\nmedians of {res['n']} paired runs: spatial iVAE {res['ivae_s']:.1f} s, CanICA "
              f"{res['canica_s']:.1f} s; median ratio {res['ratio']:.2f} (bar: <= 1.5)")
    return res


def summary(results: list[dict], seeds) -> None:
    import numpy as np

    methods = list(dict.fromkeys(r["method"] for r in results))
    print(f"\n| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean map MCC | median fit (s) |")
    print("|---|" + "---:|" * (len(seeds) + 2))
    for m in methods:
        rows = {r["seed"]: r for r in results if r["method"] == m}
        if any("error" in r for r in rows.values()):
            print(f"| {m} | " + " | ".join(rows[s].get("error", "") if s in rows else "" for s in seeds) + " | | |")
            continue
        cells = [f"{rows[s]['map_mcc']:.3f}" if s in rows else "" for s in seeds]
        print(f"| {m} | " + " | ".join(cells) + f" | {np.mean([r['map_mcc'] for r in rows.values()]):.3f} | "
              f"{np.median([r['fit_s'] for r in rows.values()]):.1f} |")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if any(m.startswith("ivae-") for m in args.methods):   # torch only when a model needs it
        import torch

        torch.set_num_threads(1)
    print(f"# benchmarks/spatial_simulation.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    used = sorted(set(args.seeds) & set(TUNING_SEEDS))
    print(f"# data seeds {args.seeds} ({'tuning' if used else 'report'} seeds), model seed {args.model_seed}, "
          f"smoothing {args.smoothing_fwhm} mm{', quick' if args.quick else ''}")
    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="spatial_sim_"))
    root.mkdir(parents=True, exist_ok=True)
    results, timing = [], {}
    try:
        for seed in args.seeds:
            bids = simulate(seed, root, args.quick)
            results += [{**r, "seed": seed} for r in run_seed(bids, args)]
        summary(results, args.seeds)
        if args.timing:
            timing = _timing(simulate(args.seeds[0], root, False), root, args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "quick": args.quick, "results": results,
                                               "timing": timing}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
