"""Issue 21, items 5, 6, 8 (warnings) and 9: answers that say what the data say, and the MELODIC layout.

``checks(quick)`` returns one ``(name, holds, detail)`` per defect:

- the held-out verdict on the issue's case (six subjects all favouring the linear model,
  -1.8 to -21.3 nats per volume, interval -19 to -0.19) and on its mirror image (same
  thresholds both ways); without ``quick`` also a real held-out test on linear simulated
  data, which must not say "helps";
- the overfitting note: a fit on Haxby's 25 mm runs with more components than the data
  support, whose held-out ELBO falls after its peak: said in ``model/config.json``, the
  summary line and the report (skipped when ``../shared/data`` is absent); and whether the
  state kept is the peak's;
- the IdentifiabilityWarning: printed once under ``fit --nonlinearity-test`` (the shipped
  sample data, u = task: 4 levels for 3 components), and advice that fits a u of windows;
- the MELODIC layout: the new files present, readable (nibabel, numpy.loadtxt) and
  consistent, and ``trends-ivae report`` on that folder.

Run: ``python -m benchmarks.trust.answers [--quick]`` from the project root.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "bids"
HAXBY = ROOT.parent / "shared" / "data" / "real" / "haxby2001_sub001" / "sub001"
FAST = ["--n-components", "3", "--n-init", "1", "--max-epochs", "15", "--seed", "0"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``trends-ivae ARGS`` in a fresh process (its warnings as a user sees them, on stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, "-m", "trends_ivae.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def _verdict_checks(quick: bool) -> list[tuple[str, bool, str]]:
    from trends_ivae.group.nonlinearity import NonlinearityTest, verdict_of

    margin = 0.01 * 87                    # the real fit: 87 reduced dimensions
    v = verdict_of(-9.6, -19.0, -0.19, margin)
    summary = NonlinearityTest(v, difference=-9.6, ci_low=-19.0, ci_high=-0.19, margin=margin,
                               group_differences=[-1.8] * 6, groups=list("123456")).summary()
    mirror = verdict_of(9.6, 0.19, 19.0, margin)
    out = [("verdict: six subjects favour linear (mean -9.6, CI -19 to -0.19)",
            v == "linear better" and mirror == "helps" and not summary.startswith("no evidence"),
            f"verdict {v!r}, mirror {mirror!r}; {summary[:90]}...")]
    if not quick:
        from trends_ivae import IVAE
        from trends_ivae.group.nonlinearity import held_out_test
        from trends_ivae.simulate import make_segment_data

        d = make_segment_data(n_sources=3, n_obs=3, n_segments=20, n_per_segment=200, n_layers=1,
                              noise_std=0.05, random_state=7)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = held_out_test(IVAE(3, max_epochs=25, batch_size=256, random_state=0, decoder_var=None, n_iwae=1,
                                     decoder_var_start=None, encoder_uses_aux=False),
                                d.X, d.u, np.arange(d.X.shape[0]) % 8, random_state=0)
        out.append(("verdict: real held-out test on linear simulated data is not 'helps'", res.verdict != "helps",
                    f"{res.verdict} ({res.difference:+.3f} nats/volume, CI {res.ci_low:+.3f} to {res.ci_high:+.3f}, "
                    f"margin {res.margin:.2f}; {time.perf_counter() - t:.0f} s)"))
    return out


def _overfitting_checks(tmp: Path) -> list[tuple[str, bool, str]]:
    name = "overfitting said when the held-out ELBO falls after its peak (Haxby 25 mm)"
    kept_name = "training keeps the epoch of the best held-out ELBO (Haxby 25 mm)"
    if not HAXBY.is_dir():
        return [(name, True, "skipped: data absent"), (kept_name, True, "skipped: data absent")]
    runs = [HAXBY / "BOLD" / f"task001_run00{i}" for i in (1, 2)]
    out = tmp / "overfit"
    r = _cli("fit", "--func", *[str(p / "bold_25mm.nii.gz") for p in runs],
             "--events", *[str(p / "bold_events.tsv") for p in runs], "--mask", str(HAXBY / "masks/25mm/brain.nii.gz"),
             "--tr", "2.5", "--aux", "task+run", "--n-components", "20", "--n-dims", "40", "--n-init", "1",
             "--seed", "0", "--out", str(out), "-q")
    if r.returncode:
        return [(name, False, f"fit failed: {r.stderr.strip()[-200:]}")]
    rec = json.loads((out / "model" / "config.json").read_text())["results"].get("early_stopping") or {}
    page = (out / "report.html").read_text() if (out / "report.html").is_file() else ""
    said = "overfits the training volumes" in r.stdout and "overfits the training volumes" in page
    ok = bool(rec.get("fell_after_peak")) and said
    kept, peak = rec.get("kept_epoch"), rec.get("peak_epoch")
    said = (name, ok, (f"peak at epoch {peak} of {rec.get('n_epochs')}, fell by "
                       f"{rec.get('fall_after_peak', float('nan')):.1f} nats/volume, kept epoch {kept}; "
                       f"summary {'says so' if 'overfits' in r.stdout else 'silent'}, report "
                       f"{'says so' if 'overfits' in page else 'silent'}"))
    below = (rec.get("peak_val_elbo") or 0) - (rec.get("kept_val_elbo") or 0)
    why = f" ({below:.2f} nats/volume below the peak; warm-up {rec.get('warmup_epochs')} epochs)"
    return [said, (kept_name, kept is not None and kept == peak,
                   f"kept epoch {kept}, peak epoch {peak}" + (why if kept != peak else ""))]


def _warning_checks(tmp: Path, quick: bool) -> list[tuple[str, bool, str]]:
    out = []
    epochs = ["--max-epochs", "8"] if quick else []
    r = _cli("fit", "--bids", str(SAMPLE), "--out", str(tmp / "nl"), *FAST, *epochs, "--aux", "task",
             "--nonlinearity-test", "--no-report", "-q")
    n = r.stderr.count("IdentifiabilityWarning")
    out.append(("IdentifiabilityWarning once under fit --nonlinearity-test", r.returncode == 0 and n == 1,
                f"printed {n} time(s) (u = task, 4 levels, 3 components; 5 fits)"))
    r = _cli("fit", "--bids", str(SAMPLE), "--out", str(tmp / "win"), "--aux", "window", "--window", "60",
             "--n-components", "5", "--n-init", "1", "--max-epochs", "2", "--no-report", "-q")
    line = next((ln for ln in r.stderr.splitlines() if "IdentifiabilityWarning" in ln), "")
    ok = "already has sliding windows" in line and "add sliding windows" not in line
    advice = line[line.find("u already"):] if "u already" in line else line[-120:]
    out.append(("IdentifiabilityWarning advice fits a u of windows", ok, advice or "no warning"))
    return out


def _melodic_checks(tmp: Path) -> list[tuple[str, bool, str]]:
    import nibabel as nib

    out_dir = tmp / "fit.ica"
    r = _cli("fit", "--bids", str(SAMPLE), "--out", str(out_dir), "--layout", "melodic", *FAST, "-q")
    if r.returncode:
        return [("MELODIC layout files", False, f"fit failed: {r.stderr.strip()[-200:]}")]
    problems = []
    try:
        ic = nib.load(out_dir / "melodic_IC.nii.gz")
        k = ic.shape[3]
        mix = np.loadtxt(out_dir / "melodic_mix")
        unmix = np.atleast_2d(np.loadtxt(out_dir / "melodic_unmix"))
        pca = nib.load(out_dir / "melodic_pca.nii.gz")
        ev = np.atleast_1d(np.loadtxt(out_dir / "eigenvalues_percent"))
        d = pca.shape[3]
        if unmix.shape != (k, d):
            problems.append(f"melodic_unmix {unmix.shape} != ({k}, {d})")
        if ev.shape != (d,) or np.any(np.diff(ev) < 0) or not 0 < ev[-1] <= 1 + 1e-6:
            problems.append(f"eigenvalues_percent {ev.shape}, last {ev[-1]:.3f}")
        if mix.shape[1] != k:
            problems.append(f"melodic_mix has {mix.shape[1]} columns for {k} maps")
        for i in range(1, k + 1):
            if nib.load(out_dir / "stats" / f"thresh_zstat{i}.nii.gz").shape != ic.shape[:3]:
                problems.append(f"stats/thresh_zstat{i} shape")
        if "melodic_unmix" not in (out_dir / "log.txt").read_text():
            problems.append("log.txt does not describe the files")
        detail = (f"melodic_unmix ({k}, {d}), melodic_pca {d} maps, eigenvalues_percent ends at {ev[-1]:.3f}, "
                  f"{k} thresh_zstat, log.txt")
    except (OSError, ValueError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
        detail = ""
    checks = [("MELODIC layout: unmix, pca, eigenvalues_percent, log.txt, stats/thresh_zstat*", not problems,
               "; ".join(problems) or detail)]
    r = _cli("report", str(out_dir), "--no-viewer")
    page = out_dir / "report" / "00index.html"
    if r.returncode == 0 and page.is_file():
        detail = f"wrote {page.relative_to(out_dir)}"
    else:
        from trends_ivae.report import build_report

        try:
            library = f"build_report on it writes {Path(build_report(out_dir, interactive=False)).relative_to(out_dir)}"
        except (OSError, ValueError) as exc:
            library = f"build_report fails too: {exc}"
        detail = f"exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[-1][-140:]}; {library}"
    checks.append(("trends-ivae report on a MELODIC folder", r.returncode == 0 and page.is_file(), detail))
    return checks


def checks(quick: bool = False) -> list[tuple[str, bool, str]]:
    """One ``(name, holds, detail)`` per defect of items 5, 6, 8 (warnings) and 9."""
    with tempfile.TemporaryDirectory(prefix="trust_answers_") as tmp:
        tmp = Path(tmp)
        return [*_verdict_checks(quick), *_overfitting_checks(tmp), *_warning_checks(tmp, quick),
                *_melodic_checks(tmp)]


if __name__ == "__main__":
    for name, ok, detail in checks(quick="--quick" in sys.argv):
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
