"""A known group effect found by ``trends-ivae stats``, and nothing found without one.

For each data seed: 16 subjects (8 controls, 8 patients, alternating), the default
simulation otherwise but linear voxel responses (``nonlinear=False``, so the added effects
are exact; ``trends_ivae.simulate.groups``). With effects: source 3's subject amplitude is
higher in patients by Cohen's d = 1, and sources 4 and 5 are coupled in patients
(Δr = 0.3). Fitted with ``trends-ivae fit --n-components 12``; then ``trends-ivae stats
--design group --contrast "group[patient] - group[control]"``. Each true source is paired
with the fitted component whose time courses match it best (Hungarian on |correlation|).

Printed per seed: whether the amplitude effect is found (voxels of the paired component's
subject maps with q < 0.05, or its amplitude summary at q < 0.05), whether the coupling is found (the paired FNC edge at
q < 0.05), and, on the same seed without effects, the false positives: voxels, edges and
spectra at q < 0.05. Usage::

    python benchmarks/group_stats.py --seeds 0 1 2 3 4 [--work /tmp/stats-bench]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path

CONTRAST = "group[patient] - group[control]"
SOURCE, PAIR = 3, (4, 5)


def _fit_and_test(sim, root: Path, seed: int, reuse: bool = False):
    import pandas as pd

    from trends_ivae.cli.main import main
    from trends_ivae.simulate import write_bids

    fit, bids = root / "fit", root / "bids"
    if not (reuse and (fit / "model/config.json").is_file()):
        shutil.rmtree(root, ignore_errors=True)
        write_bids(sim, bids)
        assert main(["fit", "--bids", str(bids), "--out", str(fit), "--n-components", "12", "--seed", str(seed),
                     "--no-report"]) == 0
    assert main(["stats", str(fit), "--participants", str(bids / "participants.tsv"), "--design", "group",
                 "--contrast", CONTRAST, "--force"]) == 0
    out = fit / "stats"
    label = "GroupPatientMinusGroupControl"
    tables = {f: pd.read_csv(out / f"desc-{label}_{f}.tsv", sep="\t") for f in ("maps", "amplitude", "fnc", "spectra")}
    return fit, tables


def _pairs(fit: Path, truth) -> dict:
    import numpy as np
    import pandas as pd
    from scipy.optimize import linear_sum_assignment

    z = np.concatenate([pd.read_csv(next(fit.glob(f"sub-{s}/func/*_desc-ivae_timeseries.tsv")), sep="\t")
                        .to_numpy(float) for s in truth.subjects])
    t = truth.timecourses.reshape(-1, truth.timecourses.shape[2])
    c = np.corrcoef(t.T, z.T)[: t.shape[1], t.shape[1]:]
    rows, cols = linear_sum_assignment(-np.abs(c))
    return dict(zip(rows.tolist(), cols.tolist()))


def one_seed(seed: int, work: Path, d: float = 1.0, delta_r: float = 0.3, null: bool = True,
             reuse: bool = False) -> dict:
    from trends_ivae.export.naming import component_names
    from trends_ivae.simulate import simulate_fmri
    from trends_ivae.simulate.groups import add_group_effects

    base = simulate_fmri(n_subjects=16, nonlinear=False, seed=seed)
    sim, effects = add_group_effects(base, source=SOURCE, amplitude_d=d, pair=PAIR, delta_r=delta_r)
    fit, tables = _fit_and_test(sim, work / f"seed{seed}-d{d}-r{delta_r}", seed, reuse)
    pairs = _pairs(fit, sim.truth)
    names = component_names(12)
    amp = tables["maps"].set_index("name").loc[names[pairs[SOURCE]]]
    a, b = sorted((pairs[PAIR[0]], pairs[PAIR[1]]))
    edge = tables["fnc"].set_index("edge").loc[f"{names[a]}-{names[b]}"]
    others = tables["maps"][tables["maps"]["name"] != names[pairs[SOURCE]]]["n_voxels_fdr"].sum()
    summary = tables["amplitude"].set_index("name").loc[names[pairs[SOURCE]]]
    row = {"seed": seed, "d": d, "delta_r": delta_r, "amplitude_voxels_q05": int(amp["n_voxels_fdr"]),
           "amplitude_mean_d": float(amp["mean_d"]),
           "amplitude_summary_q": float(summary["q"]), "amplitude_summary_d": float(summary["d"]),
            "other_components_voxels_q05": int(others),
            "coupling_q": float(edge["q"]), "coupling_effect_z": float(edge["effect"])}
    if not null:
        return row
    _, null = _fit_and_test(base, work / f"seed{seed}-null", seed, reuse)
    return {**row,
            "null_voxels_q05": int(null["maps"]["n_voxels_fdr"].sum()),
            "null_edges_q05": int((null["fnc"]["q"] < 0.05).sum()),
            "null_amplitude_q05": int((null["amplitude"]["q"] < 0.05).sum()),
            "null_spectra_q05": int((null["spectra"]["q"] < 0.05).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work", default="/tmp/stats-bench")
    parser.add_argument("--d", type=float, default=1.0, help="Cohen's d of the amplitude effect")
    parser.add_argument("--delta-r", type=float, default=0.3, help="coupling difference")
    parser.add_argument("--reuse", action="store_true", help="reuse the fits already in --work")
    parser.add_argument("--no-null", dest="null", action="store_false", help="skip the fits without effects")
    args = parser.parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = []
    for seed in args.seeds:
        t0 = time.time()
        rows.append({**one_seed(seed, Path(args.work), args.d, args.delta_r, args.null, args.reuse),
                     "seconds": round(time.time() - t0)})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print("\nall seeds:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    found_amp = int(((table["amplitude_voxels_q05"] > 0) | (table["amplitude_summary_q"] < 0.05)).sum())
    found_cpl = int((table["coupling_q"] < 0.05).sum())
    print(f"\namplitude effect found in {found_amp}/{len(table)} seeds, coupling in {found_cpl}/{len(table)}")
    if not args.null:
        return 0
    print(f"false positives without effects: {int(table['null_voxels_q05'].sum())} voxels, "
          f"{int(table['null_edges_q05'].sum())} edges, {int(table['null_amplitude_q05'].sum())} amplitudes, "
          f"{int(table['null_spectra_q05'].sum())} spectra")
    return 0


if __name__ == "__main__":
    sys.exit(main())
