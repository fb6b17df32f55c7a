"""Benchmark of the prepare stage: peak memory vs number of subjects, time vs nilearn CanICA.

Generates synthetic 4D NIfTIs (53 x 63 x 46 grid, ~50k voxels in a brain-shaped
ellipsoid, 200 volumes, int16, uncompressed) in a temporary folder, then runs each
configuration in its own subprocess and reads that process's peak resident memory
(``VmHWM`` of /proc/self/status at its end; the data are generated in a
subprocess too):

* ``trends_ivae``: ``trends_ivae.reduction.prepare`` (module ``trends_ivae.reduction.prepare``) (EPI-mask intersection, detrend,
  z-score, MIGP to d dimensions, projection of every subject, n_jobs=1);
* ``nilearn CanICA``: what ``CanICA.fit`` does before its ICA -- the embedded
  ``MultiNiftiMasker`` fit (multi-EPI mask), ``_mask_and_reduce`` (per-subject
  reduction to d components) and the group ``randomized_svd`` of ``_MultiPCA`` --
  with the same cleaning (detrend, z-score, no smoothing) and d.

Usage::

    python benchmarks/prepare.py            # 10 vs 40 subjects (~10 min on 2 cores)
    python benchmarks/prepare.py --quick    # 3 vs 12 subjects, 100 volumes

The bar: peak RSS(40) / peak RSS(10) <= 1.3 for trends_ivae, and its wall time per
subject <= CanICA's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (53, 63, 46)  # the 3 mm MNI grid
TR = 2.0


def generate(data_dir: Path, n_subjects: int, n_volumes: int, seed: int = 0) -> list[str]:
    """Write ``n_subjects`` runs; return their paths (skips files already there)."""
    import nibabel as nib
    import numpy as np

    data_dir.mkdir(parents=True, exist_ok=True)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = (np.array(SHAPE) - 1) / 2.0
    radii = np.array(SHAPE) / 2.0 * 0.85
    brain = sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) <= 1.0
    nvox = int(brain.sum())
    rng = np.random.default_rng(seed)
    n_sources = 10
    maps = (rng.standard_normal((n_sources, nvox)) * 15).astype(np.float32)
    baseline = (800 + 200 * rng.random(nvox)).astype(np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-78, -112, -70]
    paths = []
    for s in range(n_subjects):
        path = data_dir / f"sub-{s + 1:03d}_task-bench_bold.nii"
        paths.append(str(path))
        if path.exists():
            continue
        srng = np.random.default_rng(seed + 1 + s)
        tc = np.cumsum(srng.standard_normal((n_volumes, n_sources)), axis=0).astype(np.float32)
        drift = np.linspace(0, 5, n_volumes, dtype=np.float32)[:, None]
        series = baseline + drift + tc @ maps + 10 * srng.standard_normal((n_volumes, nvox), dtype=np.float32)
        data = np.empty(SHAPE + (n_volumes,), dtype=np.int16)
        data[...] = np.clip(20 + 5 * srng.standard_normal(SHAPE + (n_volumes,), dtype=np.float32), 0, None)
        data[brain] = np.clip(series.T, 0, 32000).astype(np.int16)
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((3.0, 3.0, 3.0, TR))
        nib.save(img, path)
    return paths


def _peak_rss_kb() -> float:
    """Peak resident memory of this process image, kB.

    ``VmHWM`` from /proc (reset by exec); ``ru_maxrss`` would carry over the peak of
    the forked parent across exec, so it is only the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _worker(tool: str, files: list[str], n_dims: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    import joblib  # noqa: F401  the libraries both tools load, to report the import baseline
    import nibabel  # noqa: F401
    import nilearn.masking  # noqa: F401
    import nilearn.signal  # noqa: F401
    import sklearn.utils.extmath  # noqa: F401

    base_kb = _peak_rss_kb()
    t0 = time.perf_counter()
    if tool == "trends_ivae":
        from trends_ivae.data.settings import PrepareSettings
        from trends_ivae.reduction.prepare import prepare
        from trends_ivae.data.bids import runs_from_files

        settings = PrepareSettings.from_options(aux="subject", n_dims=n_dims, detrend=True, standardize=True)
        data = prepare(runs_from_files(files), settings, tr=TR)
        n_voxels = data.n_voxels
    else:
        from nilearn.decomposition import CanICA
        from nilearn.decomposition._base import _mask_and_reduce
        from nilearn.decomposition._base import check_embedded_masker  # as CanICA.fit uses it
        from sklearn.utils.extmath import randomized_svd

        est = CanICA(n_components=n_dims, mask_strategy="epi", smoothing_fwhm=None, detrend=True,
                     standardize="zscore_sample", t_r=TR, memory_level=0, random_state=0, n_jobs=1)
        masker = check_embedded_masker(est, masker_type="multi_nii")
        masker.memory_level = 0
        masker.fit(files)
        reduced = _mask_and_reduce(masker, files, n_components=n_dims, random_state=0, n_jobs=1)
        randomized_svd(reduced.T, n_components=n_dims, transpose=True, random_state=0, n_iter=3)
        n_voxels = reduced.shape[1]
    wall = time.perf_counter() - t0
    peak_kb = _peak_rss_kb()
    return {"tool": tool, "n_subjects": len(files), "wall_s": wall, "peak_rss_mb": peak_kb / 1024,
            "import_rss_mb": base_kb / 1024, "n_voxels": int(n_voxels)}


def _run_config(tool: str, files: list[str], n_dims: int, threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    listing = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(files, listing)
    listing.close()
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", tool, "--files", listing.name,
                              "--n-dims", str(n_dims)], env=env, capture_output=True, text=True, check=False)
    finally:
        os.unlink(listing.name)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 vs 12 subjects of 100 volumes")
    p.add_argument("--small", type=int, default=10, help="subjects in the small config")
    p.add_argument("--large", type=int, default=40, help="subjects in the large config")
    p.add_argument("--n-volumes", type=int, default=200)
    p.add_argument("--n-dims", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per worker")
    p.add_argument("--no-canica-large", action="store_true", help="skip CanICA on the large config")
    p.add_argument("--data-dir", help="where to generate the data (default: a temporary folder, removed)")
    p.add_argument("--generate", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.generate:
        generate(Path(args.generate), args.large, args.n_volumes)
        return 0
    if args.worker:
        files = json.loads(Path(args.files).read_text())
        print(json.dumps(_worker(args.worker, files, args.n_dims)))
        return 0
    if args.quick:
        args.small, args.large, args.n_volumes = 3, 12, 100

    tmp = None
    data_dir = Path(args.data_dir) if args.data_dir else Path(tmp := tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--generate", str(data_dir), "--large", str(args.large),
                        "--n-volumes", str(args.n_volumes)], check=True)
        files = [str(data_dir / f"sub-{s + 1:03d}_task-bench_bold.nii") for s in range(args.large)]
        print(f"generated {args.large} subjects x {args.n_volumes} volumes on a {SHAPE} grid "
              f"in {time.perf_counter() - t0:.0f} s ({data_dir})", flush=True)
        configs = [("trends_ivae", args.small), ("nilearn CanICA", args.small), ("trends_ivae", args.large)]
        if not args.no_canica_large:
            configs.append(("nilearn CanICA", args.large))
        rows = []
        for tool, n in configs:
            res = _run_config("trends_ivae" if tool == "trends_ivae" else "canica", files[:n], args.n_dims,
                              args.threads)
            res["tool"] = tool
            rows.append(res)
            print(f"  {tool:15s} {n:3d} subjects: {res['wall_s']:7.1f} s, peak RSS {res['peak_rss_mb']:7.0f} MB",
                  flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, BLAS threads {args.threads}; d = {args.n_dims}, "
          f"{args.n_volumes} volumes/subject, {rows[0]['n_voxels']} in-mask voxels (trends_ivae)")
    print()
    print("| tool | subjects | wall time (s) | s / subject | peak RSS (MB) | RSS after imports (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tool']} | {r['n_subjects']} | {r['wall_s']:.1f} | {r['wall_s'] / r['n_subjects']:.2f} "
              f"| {r['peak_rss_mb']:.0f} | {r['import_rss_mb']:.0f} |")
    by = {(r["tool"], r["n_subjects"]): r for r in rows}
    ours_s, ours_l = by[("trends_ivae", args.small)], by[("trends_ivae", args.large)]
    ratio = ours_l["peak_rss_mb"] / ours_s["peak_rss_mb"]
    print()
    print(f"trends_ivae peak RSS {args.large} / {args.small} subjects: {ratio:.2f} (bar <= 1.3: "
          f"{'PASS' if ratio <= 1.3 else 'FAIL'})")
    for n in (args.small, args.large):
        if ("nilearn CanICA", n) in by:
            c = by[("nilearn CanICA", n)]
            o = by[("trends_ivae", n)]
            t = (o["wall_s"] / n) / (c["wall_s"] / n)
            print(f"time per subject, trends_ivae / CanICA at {n} subjects: {t:.2f} (bar <= 1: "
                  f"{'PASS' if t <= 1.0 else 'FAIL'}); CanICA peak RSS {c['peak_rss_mb']:.0f} MB")
    if ("nilearn CanICA", args.large) in by:
        c = by[("nilearn CanICA", args.large)]["peak_rss_mb"] / by[("nilearn CanICA", args.small)]["peak_rss_mb"]
        print(f"CanICA peak RSS {args.large} / {args.small} subjects: {c:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
