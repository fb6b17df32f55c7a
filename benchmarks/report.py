"""Time ``build_report`` on a 50-component fit (the bar: 10 s and 5 MB on 2 cores; 20 components 5 s).

A real, short fit makes the output folder: 4 simulated subjects x 200 volumes on a
52 x 62 x 52 grid of 3 mm (an MNI-like affine, as real 3 mm data), 50 components from a
50-dimensional basis, one restart of a few epochs (the maps do not need to be good to
cost the same to draw). Then the report is built ``--repeat`` times in this process,
after a warm-up import of matplotlib/nilearn/torch, and a table is printed.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/report.py [--n-components 50] [--keep DIR]

Before/after comparisons on a busy machine: fit once with ``--keep DIR``, then run
``--reuse DIR --repeat 1`` with each checkout on ``PYTHONPATH``, alternating (paired),
and compare the medians.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-components", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", metavar="DIR", help="keep the fit output folder here")
    ap.add_argument("--reuse", metavar="DIR", help="an output folder of an earlier --keep: skip the fit")
    args = ap.parse_args()

    from trends_ivae.cli.main import main as cli
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    k = args.n_components
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        if args.reuse:
            out, t_sim, t_fit = Path(args.reuse), float("nan"), float("nan")
        else:
            t = time.perf_counter()
            sim = simulate_fmri(FMRISimParams(n_subjects=4, n_volumes=200, n_components=12, n_task=2,
                                              shape=(52, 62, 52), voxel_size=3.0, seed=1))
            bids = write_bids(sim, tmp / "bids")
            t_sim = time.perf_counter() - t
            out = Path(args.keep) if args.keep else tmp / "out"
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                code = cli(["fit", "--bids", str(bids), "--out", str(out), "--n-components", str(k),
                            "--n-dims", str(k), "--n-init", "1", "--max-epochs", "5", "--seed", "0",
                            "--no-report", "--force"])
            assert code == 0, "fit failed"
            t_fit = time.perf_counter() - t

        import matplotlib  # noqa: F401 - warm imports, as fit has them loaded
        import nilearn.plotting  # noqa: F401
        import torch  # noqa: F401

        from trends_ivae.report import build_report

        def timed(**kw):
            t, c = time.perf_counter(), time.process_time()
            page = build_report(out, **kw)
            return time.perf_counter() - t, time.process_time() - c, page

        times = [timed() for _ in range(args.repeat)]
        size = times[-1][2].stat().st_size / 1e6
        noview = timed(interactive=False)
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]

        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print(f"data: 4 subjects x 200 volumes, grid 52x62x52 (3 mm), {k} components "
              f"(simulate {t_sim:.1f} s, fit {t_fit:.1f} s)")
        print(f"load average at the end (1, 5, 15 min): {', '.join(load)}")
        print()
        print("| what | wall (s) | CPU of this process (s) |")
        print("|---|---:|---:|")
        for i, (w, c, _) in enumerate(times):
            print(f"| build_report, {k} components, run {i + 1} | {w:.1f} | {c:.1f} |")
        print(f"| build_report, no interactive viewer | {noview[0]:.1f} | {noview[1]:.1f} |")
        print(f"| report.html size | {size:.2f} MB ({times[-1][2].stat().st_size} bytes) | |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
