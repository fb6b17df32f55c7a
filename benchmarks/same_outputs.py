"""Same seed, same outputs: write the reference runs' outputs, or diff two such folders.

Three runs on the shipped sample data (``sample_data/bids``):

- ``demo``: ``trends-ivae demo`` (the main job);
- ``fit``: ``trends-ivae fit --bids sample_data/bids`` (u = task + window, 4 components);
- ``bids``: the BIDS App, ``participant`` then ``group``.

Usage::

    python benchmarks/same_outputs.py run OUT          # writes OUT/demo, OUT/fit, OUT/bids
    python benchmarks/same_outputs.py diff OLD NEW     # exit status 1 when they differ

``diff`` compares every NIfTI image (voxel data and affine), every TSV (numbers to
``--rtol``/``--atol``, text exactly) and, in every JSON file, the numbers under keys
that hold results (ELBOs, explained variance, stability, MCC). Files present in only one
folder are listed; new files in NEW are allowed (``--strict`` refuses them). Times, dates,
versions, paths and the HTML report are not compared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIDS = ROOT / "sample_data" / "bids"

#: JSON keys whose numbers are results (compared); everything else is provenance
RESULT_KEYS = ("elbo", "explained", "stability", "agreement", "mcc", "variance", "r2", "peak")
#: file names that are never compared
SKIP_SUFFIXES = (".html", ".png", ".svg", ".log", ".pt", ".h5", ".lock")


def _bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def run_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmds = {
        "demo": [_bin("trends-ivae"), "demo", "--out", str(out / "demo"), "-q"],
        "fit": [_bin("trends-ivae"), "fit", "--bids", str(BIDS), "--out", str(out / "fit"),
                "--n-components", "4", "--seed", "3", "--n-init", "2", "--max-epochs", "40", "-q"],
        "bids-participant": [_bin("trends-ivae-bids"), str(BIDS), str(out / "bids"), "participant",
                             "--n-components", "4", "--seed", "5", "--n-init", "2", "--max-epochs", "40"],
        "bids-group": [_bin("trends-ivae-bids"), str(BIDS), str(out / "bids"), "group",
                       "--n-components", "4", "--seed", "5", "--n-init", "2", "--max-epochs", "40"],
    }
    for name, cmd in cmds.items():
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def _numbers(obj, path=""):
    """(key path, float) for every number under a result key."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if any(key in path.lower() for key in RESULT_KEYS) and "time" not in path.lower():
            yield path, float(obj)


def _diff_json(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    na = dict(_numbers(json.loads(a.read_text())))
    nb = dict(_numbers(json.loads(b.read_text())))
    problems = [f"{k}: only in old" for k in sorted(set(na) - set(nb))]
    for k in sorted(set(na) & set(nb)):
        if not np.isclose(na[k], nb[k], rtol=rtol, atol=atol):
            problems.append(f"{k}: {na[k]!r} != {nb[k]!r}")
    return problems


def _diff_tsv(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    import pandas as pd
    da = pd.read_csv(a, sep="\t", keep_default_na=False, header=None, dtype=str)
    db = pd.read_csv(b, sep="\t", keep_default_na=False, header=None, dtype=str)
    if da.shape != db.shape:
        return [f"shape {da.shape} != {db.shape}"]
    fa = da.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    fb = db.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    text = np.isnan(fa) | np.isnan(fb)
    out = []
    if (da.to_numpy()[text] != db.to_numpy()[text]).any():
        out.append("text cells differ")
    num = ~text
    if num.any() and not np.allclose(fa[num], fb[num], rtol=rtol, atol=atol):
        out.append(f"numbers differ (max abs {np.max(np.abs(fa[num] - fb[num])):.3g})")
    return out


def _diff_nifti(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    import nibabel as nib
    ia, ib = nib.load(a), nib.load(b)
    if ia.shape != ib.shape:
        return [f"shape {ia.shape} != {ib.shape}"]
    out = []
    if not np.allclose(ia.affine, ib.affine, atol=1e-6):
        out.append("affine differs")
    xa, xb = np.asarray(ia.dataobj, dtype=float), np.asarray(ib.dataobj, dtype=float)
    scale = max(1.0, float(np.max(np.abs(xa))))
    if not np.allclose(xa, xb, rtol=rtol, atol=atol * scale):
        out.append(f"voxels differ (max abs {np.max(np.abs(xa - xb)):.3g}, scale {scale:.3g})")
    return out


def diff_folders(old: Path, new: Path, rtol: float = 1e-4, atol: float = 1e-5,
                 strict: bool = False) -> int:
    def files(root):
        return {p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and not p.name.endswith(SKIP_SUFFIXES) and not p.name.startswith(".")}
    fo, fn = files(old), files(new)
    bad = 0
    for rel in sorted(fo - fn):
        print(f"MISSING in new: {rel}")
        bad += 1
    for rel in sorted(fn - fo):
        print(f"{'EXTRA' if strict else 'new file'}: {rel}")
        bad += bool(strict)
    n = 0
    for rel in sorted(fo & fn):
        a, b = old / rel, new / rel
        if rel.endswith((".nii", ".nii.gz")):
            problems = _diff_nifti(a, b, rtol, atol)
        elif rel.endswith(".tsv"):
            problems = _diff_tsv(a, b, rtol, atol)
        elif rel.endswith(".json"):
            problems = _diff_json(a, b, rtol, atol)
        else:
            continue
        n += 1
        for p in problems:
            print(f"DIFF {rel}: {p}")
        bad += bool(problems)
    print(f"compared {n} files: {'same' if not bad else f'{bad} differ or are missing'}")
    return int(bad > 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="write the reference outputs to OUT")
    r.add_argument("out", type=Path)
    d = sub.add_parser("diff", help="compare two folders written by 'run'")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    d.add_argument("--rtol", type=float, default=1e-4)
    d.add_argument("--atol", type=float, default=1e-5)
    d.add_argument("--strict", action="store_true", help="new files in NEW are differences too")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run_all(args.out)
        return 0
    return diff_folders(args.old, args.new, args.rtol, args.atol, args.strict)


if __name__ == "__main__":
    sys.exit(main())
