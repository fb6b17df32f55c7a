"""Labels and component removal on the simulator: the figures of ``docs/benchmarks.md`` ("labels").

For each data seed: the default 8-subject simulation (``simulate_fmri(n_subjects=8, seed=s)``)
with three artifact sources added (``trends_ivae.simulate.artifacts``: edge, CSF-like,
high-frequency), written as BIDS, fitted with ``trends-ivae fit --n-components 15``
(12 networks + 3 artifacts), then

1. **template labels**: ``trends-ivae label`` with the truth's maps as templates, volumes
   shuffled and named by a one-name-per-line key. Each true source is paired with the
   fitted component whose time courses match it best (Hungarian on |correlation| over all
   volumes: independent of the maps); accuracy = share of true sources whose component got
   the source's name one-to-one;
2. **network or artifact**: accuracy of the ``class`` column over the paired components
   (``uncertain`` counts as wrong) and the number of true networks called ``artifact``; the
   simulator's blobs have no anatomy, so the tissue shares are left out (``--no-tissue``);
3. **removal**: ``trends-ivae denoise --remove artifacts`` (regression): the largest
   difference from ``fsl_regfilt`` written out here (relative to the data's largest
   value), and the mean over voxels of the correlation in time with the noise-free,
   artifact-free data (the same simulation at ``snr=1e9``, no artifacts; both linearly
   detrended) before and after; also ``--method decoder``.

Seed 0 was looked at while the classification rule was written (see
``trends_ivae.analysis.classify``); seeds 1-4 are fresh. Usage::

    python benchmarks/labels.py --seeds 0 1 2 3 4 [--work /tmp/labels-bench]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path


def _pair_components(fit: Path, truth) -> dict:
    """true source index -> fitted component index (Hungarian on |corr| of time courses)."""
    import numpy as np
    import pandas as pd
    from scipy.optimize import linear_sum_assignment

    z = []
    for s in truth.subjects:
        tsv = next(fit.glob(f"sub-{s}/func/*_desc-ivae_timeseries.tsv"))
        z.append(pd.read_csv(tsv, sep="\t").to_numpy(float))
    z = np.concatenate(z)
    t = truth.timecourses.reshape(-1, truth.timecourses.shape[2])
    c = np.corrcoef(t.T, z.T)[: t.shape[1], t.shape[1]:]
    rows, cols = linear_sum_assignment(-np.abs(c))
    return dict(zip(rows.tolist(), cols.tolist()))


def _fsl_regfilt(data, mix, remove):
    import numpy as np

    design = mix - mix.mean(0)
    beta = np.linalg.pinv(design) @ (data - data.mean(0))
    return data - design[:, remove] @ beta[remove]


def _corr_with(clean_runs, reference_runs) -> float:
    import numpy as np
    from scipy.signal import detrend

    rs = []
    for a, b in zip(clean_runs, reference_runs):
        a, b = detrend(a, axis=0), detrend(b, axis=0)
        num = (a * b).sum(0)
        den = np.sqrt((a * a).sum(0) * (b * b).sum(0)) + 1e-12
        rs.append(num / den)
    return float(np.mean(np.concatenate(rs)))


def one_seed(seed: int, work: Path, reuse: bool = False) -> dict:
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from trends_ivae.cli.main import main
    from trends_ivae.simulate import simulate_fmri, write_bids
    from trends_ivae.simulate.artifacts import add_artifacts

    root = work / f"seed{seed}"
    sim = add_artifacts(simulate_fmri(n_subjects=8, seed=seed))
    truth = sim.truth
    fit, bids = root / "fit", root / "bids"
    if not (reuse and (fit / "group/desc-ivae_labels.tsv").is_file()):
        reuse = False
        shutil.rmtree(root, ignore_errors=True)
        write_bids(sim, bids)
        assert main(["fit", "--bids", str(bids), "--out", str(fit), "--n-components",
                     str(len(truth.component_names)), "--seed", str(seed), "--no-report"]) == 0
    rng = np.random.default_rng(1000 + seed)
    order = rng.permutation(len(truth.component_names))
    maps = nib.load(str(bids / "derivatives/truth/truth_maps.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(maps.dataobj)[..., order], maps.affine), root / "templates.nii.gz")
    (root / "key.txt").write_text("\n".join(truth.component_names[i] for i in order))
    assert main(["label", str(fit), "--templates", str(root / "templates.nii.gz"), "--key", str(root / "key.txt"),
                 "--no-tissue", "--force"]) == 0
    labels = pd.read_csv(fit / "group/desc-ivae_labels.tsv", sep="\t")
    pairs = _pair_components(fit, truth)
    names_ok = [labels.loc[c, "network"] == truth.component_names[k] for k, c in pairs.items()]
    kinds = {k: ("artifact" if truth.component_kinds[k] == "artifact" else "network") for k in pairs}
    classes = {k: labels.loc[c, "class"] for k, c in pairs.items()}
    class_ok = [classes[k] == kinds[k] for k in pairs]
    nets_as_artifact = sum(kinds[k] == "network" and classes[k] == "artifact" for k in pairs)
    art_found = sum(kinds[k] == "artifact" and classes[k] == "artifact" for k in pairs)

    # removal
    assert main(["denoise", str(fit), "--remove", "artifacts", "--out", str(root / "clean"), "--force"]) == 0
    assert main(["denoise", str(fit), "--remove", "artifacts", "--method", "decoder",
                 "--out", str(root / "clean_dec"), "--force"]) == 0
    ref = simulate_fmri(n_subjects=8, seed=seed, snr=1e9)
    fit_mask = np.asarray(nib.load(str(fit / "group/desc-ivae_mask.nii.gz")).dataobj) > 0
    both = fit_mask & truth.mask                   # voxels the fit kept and the simulation has
    removed = [i for i, c in enumerate(labels["class"]) if c == "artifact"]
    diffs, raw, clean, dec, reference = [], [], [], [], []
    for i, s in enumerate(truth.subjects):
        tsv = next(fit.glob(f"sub-{s}/func/*_desc-ivae_timeseries.tsv"))
        z = pd.read_csv(tsv, sep="\t").to_numpy(float)
        run = nib.load(str(next(bids.glob(f"sub-{s}/func/*_bold.nii.gz")))).get_fdata()
        out = nib.load(str(next((root / "clean").glob(f"sub-{s}/func/*_bold.nii.gz")))).get_fdata()
        outd = nib.load(str(next((root / "clean_dec").glob(f"sub-{s}/func/*_bold.nii.gz")))).get_fdata()
        y = run[fit_mask].T
        diffs.append(np.abs(out[fit_mask].T - _fsl_regfilt(y, z, removed)).max() / np.abs(y).max())
        full = np.zeros(truth.mask.shape + (len(z),))
        full[truth.mask] = ref.data[i].T
        raw.append(run[both].T)
        clean.append(out[both].T)
        dec.append(outd[both].T)
        reference.append(full[both].T)
    return {"seed": seed, "label_accuracy": float(np.mean(names_ok)), "class_accuracy": float(np.mean(class_ok)),
            "networks_called_artifact": int(nets_as_artifact), "artifacts_found": f"{art_found}/3",
            "regfilt_max_rel_diff": float(max(diffs)), "r_raw": _corr_with(raw, reference),
            "r_cleaned": _corr_with(clean, reference), "r_decoder": _corr_with(dec, reference)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work", default="/tmp/labels-bench")
    parser.add_argument("--reuse", action="store_true", help="reuse the fits already in --work")
    args = parser.parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = []
    for seed in args.seeds:
        t0 = time.time()
        rows.append({**one_seed(seed, Path(args.work), args.reuse), "seconds": round(time.time() - t0)})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print("\nall seeds:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    fresh = table[table["seed"] != 0]
    if len(fresh):
        print("\nfresh seeds (not seed 0): mean " + ", ".join(
            f"{c} {fresh[c].mean():.3g}" for c in ("label_accuracy", "class_accuracy", "r_raw", "r_cleaned",
                                                  "r_decoder")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
