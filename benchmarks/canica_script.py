"""The yardstick of the end-to-end timing: a group-ICA script as a CanICA user writes it.

Reads the BOLD runs of a BIDS dataset, fits nilearn's CanICA with ``n`` components and
writes the group maps (NIfTI) and each run's time courses (TSV, by spatial regression),
the outputs ``trends-ivae fit --no-report`` writes too. Timed as a whole process beside
the fit, runs alternating (``benchmarks/fit_speed.py`` does this)::

    .venv/bin/trends-ivae fit --bids sim --out /tmp/o --force --no-report --n-components 12
    .venv/bin/python benchmarks/canica_script.py sim /tmp/c 12
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    bids, out, n = (argv if argv is not None else sys.argv[1:])[:3]
    import numpy as np
    import pandas as pd
    from nilearn.decomposition import CanICA
    from nilearn.maskers import NiftiMasker

    runs = sorted(str(p) for p in Path(bids).glob("sub-*/func/*_bold.nii.gz"))
    ica = CanICA(n_components=int(n), random_state=0, standardize="zscore_sample", threshold=None)
    ica.fit(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ica.components_img_.to_filename(out / "canica_components.nii.gz")
    masker = NiftiMasker(mask_img=ica.mask_img_, standardize="zscore_sample").fit()
    maps = NiftiMasker(mask_img=ica.mask_img_).fit().transform(ica.components_img_)   # (n, voxels), as they are
    for run in runs:
        y = masker.transform(run)                                        # (volumes, voxels)
        tc = np.linalg.lstsq(maps.T, y.T, rcond=None)[0].T
        pd.DataFrame(tc).to_csv(out / (Path(run).name.split(".")[0] + "_timeseries.tsv"), sep="\t", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
