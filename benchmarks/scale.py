"""Scale benchmark (issue 8): cost growth with the number of subjects, and two-process training.

``cohort`` (default): for each cohort size (10, 100, 1000 subjects by default) it
simulates a BIDS dataset on a small voxel grid (``trends_ivae.simulate``, 2 task
sources + 2 resting sources, a few volumes per subject; generation is not timed), then
runs the BIDS App in fresh subprocesses:

* **participant** -- ``trends-ivae-bids DS OUT participant --n-jobs J`` (every
  subject's mask, cleaning and lossless factorisation, joblib workers);
* **group** -- ``trends-ivae-bids DS OUT group ...`` (gather the shares through MIGP,
  project, fit the iVAE for a fixed number of epochs, map back, write every subject's
  time courses and maps; no report).

Each stage's wall time and the peak resident memory of its process (``VmHWM`` of
``/proc/self/status``, read at its end; worker processes of the participant stage are
not included, they hold one subject each) are printed, with the time per subject.

The bar: wall time grows at most linearly in the number of subjects (time per subject
does not grow), and the peak memory of the group stage stays flat.

``ddp``: the iVAE paper's synthetic data fitted by one process and by two Gloo
processes (``torchrun``-style, launched here with ``torch.multiprocessing``); the
bar is an MCC within 0.02 (see ``--help``; needs ``trends-ivae fit --distributed``).

``throughput``: training samples per second on every device here (the CPU, and CUDA
when present: float32 and bf16 autocast), on a dataset of ``--n-samples`` rows (1M by
default: the paper's generator, 10 sources, 1000 segments, 3-layer mixing), all of it
resident on the device, a fixed number of epochs at a large batch; the MCC reached
after those epochs and the time it took, so the devices compare as time to that MCC.
``--stream-rows N`` measures the streamed path (host memory to device in chunks) too.

Usage::

    python benchmarks/scale.py                          # 10, 100, 1000 subjects (~10 min on 2 cores)
    python benchmarks/scale.py --subjects 10 100        # quicker
    python benchmarks/scale.py ddp                      # 1 vs 2 Gloo processes
    python benchmarks/scale.py throughput               # samples/s per device, 1M samples
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (12, 14, 12)

_STAGE = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from trends_ivae.cli.bids_app import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - t0
hwm = next(float(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "wall_s": wall, "peak_rss_mb": hwm / 1024}))
"""

_GENERATE = r"""
import sys
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids
n, vols, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sim = simulate_fmri(FMRISimParams(n_subjects=n, n_volumes=vols, n_components=4, n_task=2,
                                  shape=(12, 14, 12), block_duration=10.0,
                                  rest_between_blocks=(6.0, 10.0), seed=0))
write_bids(sim, out)
"""


def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _stage(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _STAGE, *argv], env=_env(), capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"stage {argv[2]} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["code"] != 0:
        raise RuntimeError(f"stage {argv[2]} exited {res['code']}:\n{out.stderr[-3000:]}")
    return res


def cohort(args: argparse.Namespace) -> int:
    rows = []
    root = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        for n in args.subjects:
            ds, out = root / f"ds{n}", root / f"out{n}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            if not ds.exists():
                subprocess.run([sys.executable, "-c", _GENERATE, str(n), str(args.n_volumes), str(ds)],
                               env=_env(), check=True)
            gen = time.perf_counter() - t0
            part = _stage([str(ds), str(out), "participant", "--n-jobs", str(args.n_jobs),
                           "--scheduler", args.scheduler])
            aux = ["--aux", args.aux] + (["--window", str(args.window)] if "window" in args.aux else [])
            group = _stage([str(ds), str(out), "group", *aux, "--n-dims", str(args.n_dims),
                            "--n-components", "4", "--n-init", "1", "--max-epochs", str(args.epochs),
                            "--batch-size", "256", "--no-report", "--seed", "0"])
            res = json.loads((out / "model" / "config.json").read_text())["results"]
            rows.append({"n": n, "volumes": n * args.n_volumes, "generate_s": gen, "participant": part,
                         "group": group, "fit_s": res["seconds"]})
            print(f"{n:5d} subjects ({n * args.n_volumes} volumes): generated in {gen:.0f} s; "
                  f"participant {part['wall_s']:.1f} s (peak {part['peak_rss_mb']:.0f} MB); "
                  f"group {group['wall_s']:.1f} s (of which read+fit {res['seconds']:.1f} s; "
                  f"peak {group['peak_rss_mb']:.0f} MB)", flush=True)
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; grid {SHAPE}, {args.n_volumes} volumes per subject, d = {args.n_dims}, "
          f"4 components, {args.epochs} epochs, participant --n-jobs {args.n_jobs} on {args.scheduler}")
    print()
    print("| subjects | volumes | participant s | per subject ms | group s | per subject ms "
          "| group peak RSS MB | participant peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p, g = r["participant"], r["group"]
        print(f"| {r['n']} | {r['volumes']} | {p['wall_s']:.1f} | {1000 * p['wall_s'] / r['n']:.0f} "
              f"| {g['wall_s']:.1f} | {1000 * g['wall_s'] / r['n']:.0f} | {g['peak_rss_mb']:.0f} "
              f"| {p['peak_rss_mb']:.0f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        k = b["n"] / a["n"]
        total = lambda r: r["participant"]["wall_s"] + r["group"]["wall_s"]  # noqa: E731
        growth = total(b) / total(a)
        mem = b["group"]["peak_rss_mb"] / a["group"]["peak_rss_mb"]
        print()
        print(f"wall time x{growth:.1f} for x{k:.0f} subjects ({'at most linear' if growth <= k else 'SUPERLINEAR'}); "
              f"group-stage peak memory x{mem:.2f} ({'flat' if mem <= 1.3 else 'NOT flat'}, bar <= 1.3)")
    return 0


# --------------------------------------------------------------------------- ddp
def compare_world_sizes(*, n_sources: int = 5, n_segments: int = 40, n_per_segment: int = 1000,
                        seeds=(1, 2, 3), max_epochs: int | None = None, n_init: int = 1,
                        model_seed: int = 0) -> list[dict]:
    """MCC of one process vs two Gloo processes on the iVAE paper's synthetic data.

    The rows stay in segment order (as a prepared file is in subject order); each rank
    takes every other row (``trends_ivae.estimators.distributed.row_share``). The ranks are started
    by ``tests/_distributed_helpers.fit_on_ranks`` (torch.multiprocessing, Gloo).

    Returns
    -------
    list of dict
        Per data seed: ``seed``, ``mcc1``, ``mcc2``, ``s1``, ``s2`` (seconds).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _distributed_helpers import fit_on_ranks  # noqa: PLC0415

    from trends_ivae import IVAE  # noqa: PLC0415
    from trends_ivae.metrics import mcc  # noqa: PLC0415
    from trends_ivae.simulate import make_segment_data  # noqa: PLC0415

    rows = []
    for seed in seeds:
        d = make_segment_data(n_sources=n_sources, n_segments=n_segments, n_per_segment=n_per_segment,
                              n_layers=3, random_state=seed)
        params = dict(n_components=n_sources, n_init=n_init, random_state=model_seed, device="cpu")
        if max_epochs is not None:
            params["max_epochs"] = max_epochs
        res = {"seed": seed}
        with tempfile.TemporaryDirectory() as tmp:
            for world in (1, 2):
                t0 = time.perf_counter()
                path = os.path.join(tmp, f"w{world}.pt")
                fit_on_ranks(d.X, d.u, params, world, path)
                res[f"s{world}"] = time.perf_counter() - t0
                est = IVAE.load(path, device="cpu")
                res[f"mcc{world}"] = float(mcc(est.transform(d.X, d.u), d.S).score)
        rows.append(res)
    return rows


def ddp(args: argparse.Namespace) -> int:
    """One process vs two Gloo processes on the paper's synthetic data."""
    res = compare_world_sizes(n_sources=args.n_sources, n_segments=args.n_segments,
                              n_per_segment=args.n_per_segment, seeds=args.seeds, max_epochs=args.epochs,
                              n_init=args.n_init)
    print("| data seed | MCC 1 process | MCC 2 Gloo processes | difference | s (1) | s (2) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in res:
        print(f"| {r['seed']} | {r['mcc1']:.3f} | {r['mcc2']:.3f} | {r['mcc2'] - r['mcc1']:+.3f} "
              f"| {r['s1']:.1f} | {r['s2']:.1f} |")
    worst = max(abs(r["mcc2"] - r["mcc1"]) for r in res)
    print(f"\nlargest |difference| {worst:.3f} (bar <= 0.02: {'met' if worst <= 0.02 else 'NOT met'}); "
          f"{os.cpu_count()} cores, torch threads 1 per process")
    return 0


def throughput(args: argparse.Namespace) -> int:
    """Samples per second and MCC after a fixed number of epochs, per device (and AMP on CUDA)."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from trends_ivae import IVAE  # noqa: PLC0415
    from trends_ivae.metrics import mcc  # noqa: PLC0415
    from trends_ivae.simulate import make_segment_data  # noqa: PLC0415

    n_seg = max(2 * args.n_sources + 1, args.n_samples // args.per_segment)
    t0 = time.perf_counter()
    d = make_segment_data(n_sources=args.n_sources, n_segments=n_seg, n_per_segment=args.per_segment,
                          n_layers=3, random_state=args.seed)
    print(f"# {len(d.X)} samples x {d.X.shape[1]} features, {n_seg} segments, made in "
          f"{time.perf_counter() - t0:.0f} s; {args.epochs} epochs, batch {args.batch_size}, one restart")
    configs = [("cpu", False, None)]
    if args.stream_rows:
        configs.append(("cpu", False, args.stream_rows))
    if torch.cuda.is_available():
        configs += [("cuda", False, None), ("cuda", True, None)]
        if args.stream_rows:
            configs.append(("cuda", False, args.stream_rows))
    if args.devices:
        configs = [c for c in configs if c[0] in args.devices]
    rows = np.random.default_rng(0).choice(len(d.X), size=min(len(d.X), 100_000), replace=False)
    print("| device | amp | streamed | fit s | samples / s | MCC (100k rows) |")
    print("|---|---|---|---:|---:|---:|")
    for dev, amp, stream in configs:
        name = torch.cuda.get_device_name(0) if dev == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
        est = IVAE(args.n_sources, max_epochs=args.epochs, batch_size=args.batch_size, patience=10**6,
                   n_init=1, device=dev, amp=amp, random_state=0, lr=args.lr)
        IVAE(args.n_sources, max_epochs=1, batch_size=256, n_init=1, device=dev, amp=amp).fit(
            d.X[:4096], d.u[:4096])   # warm-up: kernels, allocator, lazy imports
        t0 = time.perf_counter()
        est.fit(d.X, d.u, stream_rows=stream)
        if dev == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        n_train = len(d.X) - int(round(len(d.X) * est.val_frac))
        score = mcc(est.transform(d.X[rows], d.u[rows]), d.S[rows]).score
        print(f"| {name} | {amp} | {stream or '-'} | {sec:.1f} | {args.epochs * n_train / sec:,.0f} | {score:.3f} |",
              flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="what")
    c = sub.add_parser("cohort", help="cost growth with the number of subjects (default)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = sub.add_parser("ddp", help="one process vs two Gloo processes",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for q in (p, c):
        q.add_argument("--subjects", type=int, nargs="+", default=[10, 100, 1000])
        q.add_argument("--n-volumes", type=int, default=40, help="volumes per subject")
        q.add_argument("--n-dims", type=int, default=8)
        q.add_argument("--epochs", type=int, default=5, help="training epochs (fixed: cost per sample)")
        q.add_argument("--aux", default="task+window",
                       help="u of the group stage (window levels grow with the cohort: 2 per subject here)")
        q.add_argument("--window", type=int, default=20, help="window length (volumes) when --aux has window")
        q.add_argument("--n-jobs", type=int, default=2, help="participant-stage workers")
        q.add_argument("--scheduler", choices=["joblib", "dask"], default="joblib",
                       help="participant-stage scheduler (dask: a local cluster of --n-jobs workers)")
        q.add_argument("--work-dir", help="keep datasets and outputs here (default: a temporary folder)")
        q.add_argument("--keep", action="store_true", help="do not delete the temporary folder")
    t = sub.add_parser("throughput", help="samples per second per device (1M samples)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--n-samples", type=int, default=1_000_000)
    t.add_argument("--per-segment", type=int, default=1000)
    t.add_argument("--n-sources", type=int, default=10)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=4096)
    t.add_argument("--lr", type=float, default=5e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stream-rows", type=int, default=None, help="also time the streamed path")
    t.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None)
    d.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    d.add_argument("--n-sources", type=int, default=5)
    d.add_argument("--n-segments", type=int, default=40)
    d.add_argument("--n-per-segment", type=int, default=1000)
    d.add_argument("--epochs", type=int, default=None, help="max epochs (default: IVAE's)")
    d.add_argument("--n-init", type=int, default=1)
    args = p.parse_args(argv)
    if args.what == "throughput":
        return throughput(args)
    return ddp(args) if args.what == "ddp" else cohort(args)


if __name__ == "__main__":
    sys.exit(main())
