"""Issue 21, follow-ups and timing: dual regression reproduces the fit; TRs; dropped volumes.

``checks()`` repeats each defect of the issue's items 2 and 8 (timing) and returns one
``(name, holds, detail)`` per defect:

- a simulated dataset (4 subjects) whose headers say TR 1 s is fitted with
  ``--tr 2 --high-pass 0.01 --low-pass 0.1``; ``pipelines/dual_regression.py`` on a
  fitted subject must give the fit's time courses (max abs difference < 1e-4) and maps,
  without ``--tr`` (the fit's record) and with ``--tr 2``;
- a run at another TR (``--tr 2.5``) is refused, nothing written;
- a fit of runs with different TRs is refused (naming them), and a MELODIC fit's
  ``melodic_IC`` has pixdim4 = the TR;
- ``prepare --drop-initial 3`` keeps N - 3 volumes per run; a confounds table with
  ``non_steady_state_outlier00`` drops that volume;
- the same dual-regression check on Haxby (``../shared/data/real/haxby2001_sub001``, the
  25 mm runs, TR 2.5 s, four runs as four subjects), skipped when the data are absent.

Run ``python benchmarks/trust/followup.py`` to print them.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
HAXBY = ROOT.parent / "shared" / "data" / "real" / "haxby2001_sub001" / "sub001"
BAR = 1e-4


def _quiet(fn, *args):
    """``fn(*args)`` with warnings and output caught: (return value or exit code, stderr and warnings text)."""
    err = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            value = fn(*args)
        except SystemExit as exc:
            value = exc.code
    return value, err.getvalue() + "".join(f"\nwarning: {w.message}" for w in caught)


def _cli(argv):
    from trends_ivae.cli.main import main

    return _quiet(main, argv)


def _dual_regression(argv):
    spec = importlib.util.spec_from_file_location("dual_regression_script", ROOT / "pipelines" / "dual_regression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _quiet(module.main, argv)


def _write(path: Path, data: np.ndarray, affine: np.ndarray, tr: float) -> str:
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms(tuple(abs(float(v)) for v in np.diag(affine)[:3]) + (float(tr),))
    nib.save(img, path)
    return str(path)


def _simulated_runs(root: Path, n_subjects: int, n_volumes: int, header_tr: float) -> list[str]:
    from trends_ivae.simulate import simulate_fmri

    sim = simulate_fmri(n_subjects=n_subjects, n_volumes=n_volumes, n_components=6, seed=1)
    return [_write(root / f"sub-{s}_bold.nii.gz", np.asarray(sim.img(i).dataobj), sim.img(i).affine, header_tr)
            for i, s in enumerate(sim.subjects)]


def _compare(fit: Path, dr: Path, subject: str) -> tuple[float, float]:
    """(max abs difference of the time courses, smallest correlation of the maps) of one subject."""
    ref = pd.read_csv(fit / f"sub-{subject}" / "func" / f"sub-{subject}_run-1_desc-ivae_timeseries.tsv", sep="\t")
    got = pd.read_csv(dr / f"sub-{subject}" / "func" / f"sub-{subject}_run-1_desc-dualreg_timeseries.tsv", sep="\t")
    if ref.shape != got.shape:
        return float("inf"), float("nan")
    a = nib.load(fit / f"sub-{subject}" / "func" / f"sub-{subject}_run-1_desc-ivae_components.nii.gz").get_fdata()
    b = nib.load(dr / f"sub-{subject}" / "func" / f"sub-{subject}_desc-dualreg_components.nii.gz").get_fdata()
    r = min(np.corrcoef(a[..., k].ravel(), b[..., k].ravel())[0, 1] for k in range(a.shape[-1]))
    return float(np.abs(ref.to_numpy() - got.to_numpy()).max()), float(r)


def _reproduces(fit: Path, func: str, subject: str, out: Path, extra: list[str]) -> tuple[bool, str]:
    code, err = _dual_regression([str(fit), "--func", func, "--out", str(out), *extra])
    if code != 0:
        return False, f"dual_regression.py {' '.join(extra)} failed: {err.strip()[-200:]}"
    diff, r = _compare(fit, out, subject)
    return diff < BAR, f"max |time course difference| {diff:.2g} (bar {BAR:g}), maps r >= {r:.4f}"


def _fit(files: list[str], out: Path, *extra: str) -> tuple[int, str]:
    return _cli(["fit", "--func", *files, "--aux", "window", "--window", "20", "--n-components", "4",
                 "--n-init", "1", "--max-epochs", "5", "--no-report", "-q", "--out", str(out), *extra])


def _haxby(root: Path) -> tuple[bool, str]:
    runs = [HAXBY / "BOLD" / f"task001_run00{k}" / "bold_25mm.nii.gz" for k in (1, 2, 3, 4)]
    mask = HAXBY / "masks" / "25mm" / "brain.nii.gz"
    if not all(p.is_file() for p in [*runs, mask]):
        return True, "skipped: data absent"
    files = []
    for k, p in enumerate(runs, start=1):   # four runs as four subjects
        img = nib.load(p)
        files.append(str(root / f"sub-0{k}_bold.nii.gz"))
        nib.save(img, files[-1])
    fit = root / "haxby_fit"
    code, err = _cli(["fit", "--func", *files, "--mask", str(mask), "--tr", "2.5", "--high-pass", "0.01",
                      "--low-pass", "0.1", "--aux", "window", "--window", "20", "--n-components", "5",
                      "--n-init", "1", "--max-epochs", "10", "--no-report", "-q", "--out", str(fit)])
    if code != 0:
        return False, f"the Haxby fit failed: {err.strip()[-200:]}"
    ok, detail = _reproduces(fit, files[1], "02", root / "haxby_dr", [])
    return ok, f"Haxby 25 mm, 4 runs, TR 2.5: {detail}"


def checks(quick: bool = False) -> list[tuple[str, bool, str]]:
    """One ``(name, holds, detail)`` per defect of the follow-ups and timing (issue 21, items 2 and 8)."""
    from trends_ivae.data.store import read_prepared

    out: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="trust_followup_") as tmp:
        root = Path(tmp)
        files = _simulated_runs(root, 4, 100, header_tr=1.0)   # headers say 1 s; the user knows it is 2 s
        fit = root / "fit"
        code, err = _fit(files, fit, "--tr", "2", "--high-pass", "0.01", "--low-pass", "0.1")
        if code != 0:
            return [("dual regression reproduces the fit", False, f"the fit failed: {err.strip()[-200:]}")]
        ok, detail = _reproduces(fit, files[2], "03", root / "dr", [])
        out.append(("dual regression reproduces the fit (band-pass, fit --tr 2)", ok, f"no --tr: {detail}"))
        ok, detail = _reproduces(fit, files[2], "03", root / "dr_tr", ["--tr", "2"])
        out.append(("dual regression accepts --tr", ok, f"--tr 2: {detail}"))

        code, err = _dual_regression([str(fit), "--func", files[0], "--tr", "2.5", "--out", str(root / "dr_bad")])
        ok = code == 1 and "TR 2.5 s" in err and "TR 2 s" in err and not (root / "dr_bad").exists()
        out.append(("a run at another TR is refused", ok,
                    f"exit {code}, nothing written: {not (root / 'dr_bad').exists()}; " + err.strip()[:160]))

        mixed = [*files[:3], _write(root / "sub-x_bold.nii.gz", np.asarray(nib.load(files[3]).dataobj),
                                    nib.load(files[3]).affine, 2.5)]
        code, err = _fit(mixed, root / "mixed")
        ok = code != 0 and "different TRs" in err and "sub-x_bold.nii.gz" in err and not (root / "mixed").exists()
        said = next((line for line in err.splitlines() if "different TRs" in line), err.strip()[-160:])
        out.append(("a fit of runs with different TRs is refused", ok, f"exit {code}: {said[:220]}"))
        code, err = _fit(files, root / "fit.ica", "--tr", "2", "--layout", "melodic", "--max-epochs", "2")
        pixdim4 = float(nib.load(root / "fit.ica" / "melodic_IC.nii.gz").header.get_zooms()[3]) if code == 0 else None
        out.append(("melodic_IC's pixdim4 is the TR", pixdim4 == 2.0, f"pixdim4 = {pixdim4} for --tr 2"))

        code, err = _cli(["prepare", "--func", *files[:2], "--tr", "2", "--aux", "subject", "--n-dims", "4",
                          "--drop-initial", "3", "--out", str(root / "prep")])
        if code == 0:
            p = read_prepared(root / "prep" / "prepared.h5")
            counts = [r["n_volumes"] for r in p.runs]
            ok, detail = counts == [97, 97], f"volumes per run {counts} of 100; censored {p.runs[0].get('censored')}"
        else:
            ok, detail = False, f"prepare --drop-initial 3 failed: {err.strip()[-200:]}"
        out.append(("--drop-initial 3 gives N - 3 volumes", ok, detail))

        tables = []
        for i in range(2):
            df = pd.DataFrame(np.random.default_rng(i).normal(size=(100, 2)), columns=["trans_x", "rot_x"])
            df["non_steady_state_outlier00"] = np.eye(100)[0]
            tables.append(str(root / f"conf{i}.tsv"))
            df.to_csv(tables[-1], sep="\t", index=False)
        code, err = _cli(["prepare", "--func", *files[:2], "--confounds-file", *tables, "--tr", "2", "--aux",
                          "subject", "--n-dims", "4", "--out", str(root / "prep_nss")])
        if code == 0:
            p = read_prepared(root / "prep_nss" / "prepared.h5")
            counts = [r["n_volumes"] for r in p.runs]
            announced = err.count("non_steady_state_outlier")
            ok = counts == [99, 99] and p.runs[0].get("censored") == [0] and announced == 1
            detail = f"volumes per run {counts} of 100, censored {p.runs[0].get('censored')}, announced {announced}x"
        else:
            ok, detail = False, f"prepare with non_steady_state_outlier00 failed: {err.strip()[-200:]}"
        out.append(("non_steady_state_outlier columns drop their volumes", ok, detail))

        ok, detail = _haxby(root) if not quick else (True, "skipped: quick")
        out.append(("dual regression reproduces the fit on Haxby", ok, detail))
    return out


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    for name, ok, detail in checks():
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    print(f"({time.perf_counter() - t0:.0f} s)")
