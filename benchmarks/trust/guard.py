"""Issue 21, items 1, 7 and 8 (--force message): no file of the user's is ever lost;
``sample`` is reproducible from its own record and keeps the fit's space.

Runs the defects as the issue describes them, through the command line, on a tiny
simulated dataset (``trends-ivae simulate`` + ``fit``) and on Haxby (the 25 mm whole-brain
runs of ``../shared/data/real/haxby2001_sub001``, TR 2.5 s; skipped when absent):

- ``report --output notes.txt`` onto a file of the user's refuses and leaves it byte-identical;
- a ``my_fnc.csv`` of the user's inside a fit folder survives ``report --output`` onto it
  and ``fit --force``;
- ``sample --seed 0`` twice gives byte-identical files, the sidecar says ``RandomSeed: 0``,
  and the recorded seed reproduces the run;
- the sampled NIfTI's qform/sform codes equal the fit's maps';
- the ``--force`` message is true: a folder of the user's is refused without advising
  ``--force``; the tool's own folder is refused with that advice, and ``--force`` then works.

``python benchmarks/trust/guard.py`` prints one line per check.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HAXBY = ROOT.parent / "shared" / "data" / "real" / "haxby2001_sub001"
FIT = ["--n-components", "3", "--n-init", "1", "--max-epochs", "2", "--seed", "0", "--no-report", "-q"]
USERS = b"my notes: never to be lost\n"

Check = tuple[str, bool, str]


def _cli(*argv: str) -> tuple[int, str]:
    """``trends-ivae ARGV`` in this process: the exit code and stderr."""
    from trends_ivae.cli.main import main

    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0), err.getvalue()


def _digest(path: Path) -> str | None:
    """The file's SHA-256, None when it is gone."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _users(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(USERS)
    return _digest(path)


def _guard_checks(work: Path, fit: Path, bids: Path) -> list[Check]:
    out: list[Check] = []
    notes = work / "notes.txt"
    digest = _users(notes)
    code, err = _cli("report", str(fit), "--output", str(notes), "--no-viewer")
    out.append(("report --output onto a user's file", code != 0 and _digest(notes) == digest,
                f"exit {code}, notes.txt byte-identical: {_digest(notes) == digest}; "
                f"{err.strip().split('error: ')[-1][:90]}"))
    fnc = fit / "my_fnc.csv"
    digest = _users(fnc)
    c1, _ = _cli("report", str(fit), "--output", str(fnc), "--no-viewer")
    c2, err2 = _cli("fit", "--bids", str(bids), "--out", str(fit), *FIT, "--force")
    c3, err3 = _cli("fit", "--bids", str(bids), "--out", str(fit), *FIT)
    kept = _digest(fnc) == digest
    out.append(("a user's file inside a fit folder", kept and c1 != 0 and c2 != 0,
                f"report --output my_fnc.csv exit {c1}, fit --force exit {c2}, my_fnc.csv byte-identical: {kept}"
                + ("" if fnc.exists() else " (deleted)")))
    fnc.unlink(missing_ok=True)
    c4, err4 = _cli("fit", "--bids", str(bids), "--out", str(fit), *FIT)
    c5, _ = _cli("fit", "--bids", str(bids), "--out", str(fit), *FIT, "--force")
    true = ("pass --force" not in err2 + err3 and "did not write" in err3
            and "pass --force" in err4 and c5 == 0)
    out.append(("the --force message is true", true,
                f"user's file: {'no --force advice' if 'pass --force' not in err3 else 'advises --force'}; "
                f"own folder: advises --force ({'pass --force' in err4}), --force then exit {c5}"))
    return out


def _sample_checks(work: Path, fit: Path, label: str) -> list[Check]:
    import nibabel as nib

    runs = []
    for name in ("a", "b", "c"):
        runs.append(work / f"sample-{label}-{name}" / "sub-01_task-synth_bold.nii.gz")
    codes = [_cli("sample", str(fit), "--out", str(runs[i]), "--seed", "0")[0] for i in (0, 1)]
    files = ["sub-01_task-synth_bold.nii.gz", "sub-01_task-synth_bold.json"]
    same = all(codes[i] == 0 for i in (0, 1)) and all(
        (runs[0].parent / f).read_bytes() == (runs[1].parent / f).read_bytes() for f in files)
    seed = json.loads((runs[0].parent / files[1]).read_text())["RandomSeed"] if codes[0] == 0 else None
    c, _ = _cli("sample", str(fit), "--out", str(runs[2]), "--seed", str(seed))
    again = c == 0 and runs[2].read_bytes() == runs[0].read_bytes()
    out: list[Check] = [(f"sample --seed 0 reproducible ({label})", same and seed == 0 and again,
                         f"two runs byte-identical: {same}; sidecar RandomSeed {seed}; "
                         f"--seed {seed} gives the same run: {again}")]
    maps = next((p for p in (fit / "group" / "desc-ivae_components.nii.gz", fit / "melodic_IC.nii.gz")
                 if p.is_file()), None)
    if codes[0] != 0 or maps is None:
        return out + [(f"sampled NIfTI space codes ({label})", False, "no sampled run or no maps")]
    h, m = nib.load(runs[0]).header, nib.load(maps).header
    got = (int(h["qform_code"]), int(h["sform_code"]))
    want = (int(m["qform_code"]), int(m["sform_code"]))
    return out + [(f"sampled NIfTI space codes ({label})", got == want, f"qform/sform {got[0]}/{got[1]}, "
                   f"the fit's maps {want[0]}/{want[1]}")]


def _haxby(work: Path, quick: bool) -> list[Check]:
    names = ["sample --seed 0 reproducible (Haxby)", "sampled NIfTI space codes (Haxby)"]
    bold = HAXBY / "sub001" / "BOLD"
    if not bold.is_dir():
        return [(n, True, "skipped: data absent") for n in names]
    runs = sorted(bold.glob("task001_run00[1-2]/bold_25mm.nii.gz" if quick else "task001_run00[1-4]/bold_25mm.nii.gz"))
    fit = work / "haxby-fit"
    code, err = _cli("fit", "--func", *map(str, runs), "--events", *[str(r.with_name("bold_events.tsv")) for r in runs],
                     "--tr", "2.5", "--mask", str(HAXBY / "sub001" / "masks" / "25mm" / "brain.nii.gz"),
                     "--n-dims", "10", "--out", str(fit), *FIT)
    if code != 0:
        return [(n, False, f"fit failed: {err.strip()[-120:]}") for n in names]
    return _sample_checks(work, fit, "Haxby")


def checks(quick: bool = False) -> list[Check]:
    """One entry per defect of items 1, 7 and 8 (the --force message): (name, holds, detail)."""
    with tempfile.TemporaryDirectory(prefix="trust-guard-") as tmp:
        work = Path(tmp)
        bids = work / "sim"
        code, err = _cli("simulate", str(bids), "--subjects", "2", "--scans", "60", "--components", "3",
                         "--task-components", "1", "--seed", "0")
        fit = work / "fit"
        if code == 0:
            code, err = _cli("fit", "--bids", str(bids), "--out", str(fit), *FIT)
        if code != 0:
            return [("simulated fit", False, f"could not simulate and fit: {err.strip()[-150:]}")]
        return _guard_checks(work, fit, bids) + _sample_checks(work, fit, "simulator") + _haxby(work, quick)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    results = checks(quick="--quick" in sys.argv)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    sys.exit(0 if all(ok for _, ok, _ in results) else 1)
