"""Time and memory budget of ``trends-ivae fit`` per stage, beside a CanICA script's total.

For each cohort size (``--subjects 8 48 128``) it simulates a BIDS dataset
(``trends_ivae.simulate.simulate_fmri``, ``--volumes`` volumes per subject; not timed),
then, ``--repeat`` times and alternating (paired):

* runs ``trends-ivae fit`` (the command line's own code, in a fresh process) and
  marks where each stage ends, from the stage's own log record (the prepare passes) or a
  wrapper around the function that does it (installed by this script in that process):

  - *headers + mask*: reads every run's header, then every run, for the EPI mask;
  - *clean + MIGP*: reads every run again, cleans it (nilearn) and updates the group PCA;
  - *basis + project*: the basis, the model order, every subject projected;
  - *setup*: u, the estimator and its checks;
  - *fit*: the iVAE's training (``IVAE.fit``, its restarts and consensus);
  - *back-project*: maps, decoder effects, sign and order (the rest of ``fit_prepared``);
  - *outputs*: the records and what the writers take (unmixing, sidecar values);
  - *write maps, time courses*: the layout's files (every subject's maps and time courses);
  - *write model, prepared.h5*, *finish*: the model folder, the atomic move;
  - *report*: ``report.html``;

* runs ``benchmarks/canica_script.py`` (nilearn's CanICA, the maps and each run's time
  courses written) on the same files, in a fresh process.

Wall times come from runs without memory tracing. Memory comes from one more run of
``fit`` with ``tracemalloc`` on: the peak of the memory traced (numpy arrays and Python
objects; torch's CPU tensors are not traced) within each stage, and the process's peak
resident memory (``ru_maxrss``) when the stage ends. Whole processes are timed from the
parent (start-up and imports included) with their peak resident memory (``VmHWM``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/pipeline_budget.py --subjects 8
    python benchmarks/pipeline_budget.py --subjects 8 48 128 --repeat 3 --work-dir /tmp/budget
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the modules fit imports (torch, nilearn, scikit-learn, h5py through the package's own)
_HEAVY = ["trends_ivae.workflow", "trends_ivae.reduction.prepare", "trends_ivae.group.group_ivae",
          "trends_ivae.export.layouts", "nilearn.maskers", "nilearn.signal", "nilearn.image", "sklearn.decomposition"]

_CANICA = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import canica_script
t0 = time.perf_counter()
code = canica_script.main(sys.argv[2:])
hwm = next(float(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "wall_s": time.perf_counter() - t0, "peak_rss_mb": hwm / 1024}))
"""


def _env() -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Marks:
    """Stage ends: (stage, time, peak traced MB within the stage, max RSS MB so far)."""

    def __init__(self, trace: bool) -> None:
        import tracemalloc

        self.tm = tracemalloc
        if trace:
            tracemalloc.start()
        self.rows: list[tuple[str, float, float | None, float]] = []
        self.t0 = time.perf_counter()

    def __call__(self, stage: str) -> None:
        peak = None
        if self.tm.is_tracing():
            peak = self.tm.get_traced_memory()[1] / 2 ** 20
            self.tm.reset_peak()
        self.rows.append((stage, time.perf_counter(), peak, _rss_mb()))

    def stages(self) -> list[dict]:
        out, prev = [], self.t0
        for stage, t, peak, rss in self.rows:
            out.append({"stage": stage, "seconds": t - prev, "traced_peak_mb": peak, "max_rss_mb": rss})
            prev = t
        return out


def _wrap(owner, name: str, after: str, mark: Marks, before: str | None = None) -> None:
    """Replace ``owner.name`` by a wrapper that marks ``before`` when called and ``after``
    when it returns."""
    fn = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if before:
            mark(before)
        out = fn(*args, **kwargs)
        mark(after)
        return out

    setattr(owner, name, wrapped)


def _instrument(mark: Marks) -> None:
    import logging

    import trends_ivae.export.layouts as layouts
    import trends_ivae.group.fit_folder as fit_folder
    import trends_ivae.workflow.fit as wfit
    from trends_ivae.group.group_ivae import GroupIVAE

    subject_line = re.compile(r"prepare: subject (\d+)/(\d+) ")

    class PrepareStages(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            m = subject_line.match(msg)
            if msg.startswith("prepare: mask of"):
                mark("headers + mask")
            elif m and m.group(1) == m.group(2):
                mark("clean + MIGP")
            elif msg.startswith("prepare: done"):
                mark("basis + project")

    log = logging.getLogger("trends_ivae.reduction.prepare")
    log.setLevel(logging.DEBUG)
    log.addHandler(PrepareStages(logging.DEBUG))

    build = GroupIVAE.build_estimator

    def build_estimator(self, n_samples):
        est = build(self, n_samples)
        _wrap(est, "fit", "fit", mark, before="setup")
        return est

    GroupIVAE.build_estimator = build_estimator
    _wrap(GroupIVAE, "fit_prepared", "back-project", mark)
    _wrap(fit_folder, "fit_outputs", "outputs", mark)
    _wrap(layouts, "write_layout_files", "write maps, time courses", mark)
    _wrap(fit_folder, "write_model_folder", "write model, prepared.h5", mark)
    _wrap(wfit, "write_report", "report", mark, before="finish")


def child(argv: list[str]) -> int:
    """In a fresh process: ``trends-ivae fit`` with its stages marked; JSON to ``--result``."""
    p = argparse.ArgumentParser()
    p.add_argument("--result", required=True)
    p.add_argument("--trace", action="store_true")
    args, fit_args = p.parse_known_args(argv)   # the rest: the fit command's arguments
    mark = Marks(args.trace)
    import warnings

    from trends_ivae.cli.main import main as cli

    for module in _HEAVY:   # what fit imports anyway, here so that no stage carries it
        importlib.import_module(module)
    mark("imports")
    _instrument(mark)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli(["fit", *fit_args])
    Path(args.result).write_text(json.dumps({"code": code, "stages": mark.stages(), "max_rss_mb": _rss_mb()}))
    return code


def _fit_process(bids: Path, out: Path, k: int, trace: bool, tmp: Path) -> dict:
    result = tmp / f"result-{time.time_ns()}.json"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--result", str(result), *(["--trace"] if trace else []),
           "--bids", str(bids), "--out", str(out), "--n-components", str(k), "--seed", "0"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"fit failed:\n{proc.stderr[-3000:]}")
    res = json.loads(result.read_text())
    res["process_wall_s"] = wall
    return res


def _canica_process(bids: Path, out: Path, k: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CANICA, str(HERE), str(bids), str(out), str(k)], env=_env(),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"CanICA failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    return res


def _simulate(n: int, volumes: int, k: int, bids: Path) -> None:
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    write_bids(simulate_fmri(FMRISimParams(n_subjects=n, n_volumes=volumes, n_components=k, seed=0)), bids)


def budget(n: int, args: argparse.Namespace, root: Path) -> dict:
    """The stage table and the whole-process pairs of one cohort size."""
    bids = root / f"ds{n}"
    if not bids.exists():
        _simulate(n, args.volumes, args.n_components, bids)
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(_fit_process(bids, root / f"fit{n}", args.n_components, False, root))
        theirs.append(_canica_process(bids, root / f"canica{n}", args.n_components))
    traced = _fit_process(bids, root / f"fit{n}", args.n_components, True, root) if args.memory else None
    return {"subjects": n, "ours": ours, "canica": theirs, "traced": traced}


def _median(values: list) -> float:
    return float(statistics.median(values))


def print_budget(b: dict) -> None:
    """The stage table, then the whole processes side by side."""
    n = b["subjects"]
    runs = b["ours"]
    names = [s["stage"] for s in runs[0]["stages"]]
    secs = {name: _median([next(s["seconds"] for s in r["stages"] if s["stage"] == name) for r in runs])
            for name in names}
    total = sum(secs.values())
    mem = {s["stage"]: s for s in (b["traced"] or {}).get("stages", [])}
    print(f"\n### {n} subjects (medians of {len(runs)} runs)\n")
    print("| stage | wall s | share | peak traced MB (numpy, Python) | max RSS at its end MB |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        m = mem.get(name, {})
        tp = m.get("traced_peak_mb")
        print(f"| {name} | {secs[name]:.2f} | {secs[name] / total:.0%} | {'–' if tp is None else f'{tp:.0f}'} "
              f"| {m.get('max_rss_mb', float('nan')):.0f} |")
    ours_wall = [r["process_wall_s"] for r in runs]
    report = [next((s["seconds"] for s in r["stages"] if s["stage"] == "report"), 0.0) for r in runs]
    no_report = [w - rep for w, rep in zip(ours_wall, report)]
    can = [c["process_wall_s"] for c in b["canica"]]
    ratios = [a / c for a, c in zip(no_report, can)]
    print(f"\n| whole process | wall s (median) | peak RSS MB |\n|---|---:|---:|")
    print(f"| trends-ivae fit (with the report) | {_median(ours_wall):.1f} | {_median([r['max_rss_mb'] for r in runs]):.0f} |")
    print(f"| trends-ivae fit, without the report stage | {_median(no_report):.1f} | |")
    print(f"| CanICA script | {_median(can):.1f} | {_median([c['peak_rss_mb'] for c in b['canica']]):.0f} |")
    print(f"\nfit (without the report) / CanICA, paired: median {_median(ratios):.2f}x "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--subjects", type=int, nargs="+", default=[8, 48, 128])
    p.add_argument("--volumes", type=int, default=240, help="volumes per subject")
    p.add_argument("--n-components", type=int, default=11)
    p.add_argument("--repeat", type=int, default=3, help="paired runs of each side")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the traced run")
    p.add_argument("--work-dir", help="keep the datasets and outputs here (default: a temporary folder)")
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args(argv)
    root = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_budget_"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.subjects:
            results.append(budget(n, args, root))
            print_budget(results[-1])
    finally:
        if not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={_env()['OMP_NUM_THREADS']}; load average at the end {', '.join(load)}; "
          f"{args.volumes} volumes per subject, {args.n_components} components")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
