"""Whole-process fit time and peak memory against a CanICA script, and the fit's quality (issue 25).

For each cohort size (``--subjects 8 48``) it simulates a BIDS dataset as
``benchmarks/pipeline_budget.py`` does (``simulate_fmri``, ``--volumes`` volumes per
subject, ``--n-components`` sources, data seed ``--seed``; not timed), then runs
``--repeat`` rounds; each round runs, in fresh processes and in an order that alternates
from round to round:

* ``trends-ivae fit --no-report`` with the package of this checkout (``after``);
* the same command with the package of ``--before DIR`` (another checkout, e.g. the
  main branch), when given (``before``);
* ``--variant NAME=ARGS``: this checkout's command with further arguments (``NAME``);
* ``benchmarks/canica_script.py`` on the same files (``canica``).

Each process is timed from the parent (start-up and imports included); its peak
resident memory is the kernel's ``ru_maxrss`` of that child (``os.wait4``). The table
gives medians over the rounds and the medians of the per-round ratios to CanICA and to
``before`` (or ``after`` without ``--before``).

Quality: every fit's output folder (the last round's) is scored against the
simulation's truth as ``benchmarks/fmri.py`` scores a method: time-course MCC (each
run's ``desc-ivae_timeseries.tsv`` against its subject's true sources, Hungarian-matched
mean |r|, averaged over runs) and map MCC (``group/desc-ivae_components.nii.gz`` against
the true maps on the voxels in both masks).

``--preload-pairs N`` also times, in fresh processes and alternating, the preparation of
the same runs followed by torch's import, in sequence or with the import started first in
a background thread (:mod:`trends_ivae.workflow.preload`), as ``fit`` now does.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fit_speed.py --subjects 8 --repeat 3 --before /path/to/main
    python benchmarks/fit_speed.py --subjects 8 48 --repeat 3 --work-dir /tmp/fitspeed
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = "import sys; from trends_ivae.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env["PYTHONPATH"] = str(tree)
    return env


def run_process(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall time (s) and peak resident memory (MB) from ``wait4``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=tempfile.gettempdir())   # not the checkout: PYTHONPATH decides the package
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def commands(bids: Path, out: Path, k: int, before: Path | None, variants: list[str] = ()) -> dict:
    """The processes of one round, by name: (argv, environment). ``variants``: ``NAME=ARGS``,
    this checkout's fit with further arguments (``n_jobs2=--n-jobs 2``)."""
    fit = ["fit", "--bids", str(bids), "--force", "--no-report", "--n-components", str(k), "--seed", "0"]
    cmds = {"after": ([sys.executable, "-c", CLI, *fit, "--out", str(out / "after")], _env(HERE.parent))}
    for variant in variants:
        name, _, extra = variant.partition("=")
        cmds[name] = ([sys.executable, "-c", CLI, *fit, "--out", str(out / name), *extra.split()], _env(HERE.parent))
    if before is not None:
        cmds["before"] = ([sys.executable, "-c", CLI, *fit, "--out", str(out / "before")], _env(before))
    cmds["canica"] = ([sys.executable, str(HERE / "canica_script.py"), str(bids), str(out / "canica"), str(k)],
                      _env(HERE.parent))
    return cmds


def score(fit_dir: Path, bids: Path) -> dict:
    """Time-course and map MCC of a fit folder against the simulation's truth."""
    import nibabel as nib
    import numpy as np
    import pandas as pd
    from trends_ivae.metrics import mcc
    from trends_ivae.simulate.fmri import load_truth

    truth = load_truth(bids)
    index = {s: i for i, s in enumerate(truth.subjects)}
    tcs = []
    for tsv in sorted(fit_dir.glob("sub-*/func/*desc-ivae_timeseries.tsv")):
        subject = tsv.name.split("_")[0][4:]
        z = pd.read_csv(tsv, sep="\t").to_numpy()
        tcs.append(mcc(z, truth.timecourses[index[subject]]).score)
    maps = np.asarray(nib.load(fit_dir / "group" / "desc-ivae_components.nii.gz").dataobj, dtype=np.float64)
    mask = np.asarray(nib.load(fit_dir / "group" / "desc-ivae_mask.nii.gz").dataobj) > 0
    both = mask & truth.mask
    true = np.zeros(truth.mask.shape + (len(truth.maps),))
    true[truth.mask] = np.asarray(truth.maps).T
    return {"tc_mcc": float(np.mean(tcs)), "map_mcc": float(mcc(maps[both], true[both]).score), "runs": len(tcs)}


def simulate(n: int, volumes: int, k: int, seed: int, bids: Path) -> None:
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    write_bids(simulate_fmri(FMRISimParams(n_subjects=n, n_volumes=volumes, n_components=k, seed=seed)), bids)


def cohort(n: int, args: argparse.Namespace, root: Path) -> dict:
    """Every round of one cohort size, and the scores."""
    bids = root / f"ds{n}_seed{args.seed}"
    if not bids.exists():
        simulate(n, args.volumes, args.n_components, args.seed, bids)
    out = root / f"out{n}"
    cmds = commands(bids, out, args.n_components, Path(args.before) if args.before else None, args.variant)
    rounds = []
    for i in range(args.repeat):
        names = list(cmds) if i % 2 == 0 else list(reversed(cmds))
        rounds.append({name: run_process(*cmds[name]) for name in names})
        print(f"# {n} subjects, round {i + 1}: " + ", ".join(f"{k} {v['wall_s']:.1f} s {v['peak_rss_mb']:.0f} MB"
                                                          for k, v in rounds[-1].items()), flush=True)
    scores = {name: score(out / name, bids) for name in cmds if name != "canica"}
    return {"subjects": n, "rounds": rounds, "scores": scores}


def print_cohort(res: dict) -> None:
    rounds = res["rounds"]
    med = statistics.median
    print(f"\n### {res['subjects']} subjects (medians of {len(rounds)} rounds)\n")
    base = "before" if "before" in rounds[0] else "after"
    print(f"| process | wall s | peak RSS MB | wall / CanICA | wall / {base} | time-course MCC | map MCC |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in rounds[0]:
        walls = [r[name]["wall_s"] for r in rounds]
        ratio = med([r[name]["wall_s"] / r["canica"]["wall_s"] for r in rounds])   # per round, then the median
        paired = med([r[name]["wall_s"] / r[base]["wall_s"] for r in rounds])
        sc = res["scores"].get(name, {})
        print(f"| {name} | {med(walls):.1f} | {med([r[name]['peak_rss_mb'] for r in rounds]):.0f} | {ratio:.2f} "
              f"| {paired:.2f} | {sc.get('tc_mcc', float('nan')):.4f} | {sc.get('map_mcc', float('nan')):.4f} |")


def preload_child(mode: str, bids: str) -> int:
    """In a fresh process: prepare ``bids`` (u = run), then import the training's modules,
    in sequence (``seq``) or with :func:`trends_ivae.workflow.preload.preload` started
    first (``thread``); prints the seconds to the prepared data and to the end."""
    t0 = time.perf_counter()
    from trends_ivae.workflow.preload import TRAINING_MODULES, preload

    thread = preload() if mode == "thread" else None
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.reduction.prepare import prepare

    prepare(find_bids_runs(bids), PrepareSettings.from_options(aux="run"))
    t1 = time.perf_counter()
    if thread is not None:
        thread.join()
    for name in TRAINING_MODULES:
        __import__(name)
    print(f"{mode} {t1 - t0:.2f} {time.perf_counter() - t0:.2f}")
    return 0


def preload_pairs(bids: Path, n: int) -> None:
    """``n`` alternating pairs of :func:`preload_child` processes; the medians."""
    walls: dict[str, list[float]] = {"seq": [], "thread": []}
    for i in range(n):
        for mode in (("seq", "thread") if i % 2 == 0 else ("thread", "seq")):
            out = subprocess.run([sys.executable, __file__, "preload-child", mode, str(bids)], env=_env(HERE.parent),
                                 capture_output=True, text=True, check=True).stdout.split()
            walls[mode].append(float(out[-1]))
    print("\npreparation, then torch's import: " + "; ".join(
        f"{m} {', '.join(f'{w:.1f}' for w in v)} s (median {statistics.median(v):.1f})" for m, v in walls.items()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["preload-child"]:
        return preload_child(*argv[1:3])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--subjects", type=int, nargs="+", default=[8, 48])
    p.add_argument("--volumes", type=int, default=240, help="volumes per subject")
    p.add_argument("--n-components", type=int, default=11)
    p.add_argument("--seed", type=int, default=0, help="data seed of the simulation")
    p.add_argument("--repeat", type=int, default=3, help="rounds")
    p.add_argument("--before", help="another checkout whose package is timed beside this one's")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                   help="also time this checkout's fit with further arguments, e.g. 'jobs2=--n-jobs 2'")
    p.add_argument("--preload-pairs", type=int, default=0, metavar="N",
                   help="also time N pairs: preparation then torch's import, in sequence or in a thread")
    p.add_argument("--work-dir", help="keep the datasets and outputs here (default: a temporary folder)")
    args = p.parse_args(argv)
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_fitspeed_"))
    root.mkdir(parents=True, exist_ok=True)
    for n in args.subjects:
        print_cohort(cohort(n, args, root))
        if args.preload_pairs:
            preload_pairs(root / f"ds{n}_seed{args.seed}", args.preload_pairs)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '1')}; load average at the end {', '.join(load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
