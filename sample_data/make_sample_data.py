"""Generate ``sample_data/bids/``: the small simulated BIDS dataset the demo runs on.

4 subjects x 150 volumes (TR 2 s), 8 sources (3 task-locked, 5 non-stationary resting
ones whose mean and variance change every 20 volumes), linear voxel response, no source
mixing, slow drift (1 % linear over the run plus a 0.1 % slow cycle), noise at SNR 1,
4 mm grid, int16 images around a baseline of 500 (smaller files than 1000 at the same
SNR: the noise takes fewer bits). The truth is under ``sample_data/bids/derivatives/truth/``
(read it with ``trends_ivae.simulate.load_truth("sample_data/bids")``). Deterministic
(seed 2024).

Why linear: the demo should show sources that can be recovered from 600 volumes. On
these data, after ``prepare(aux="task+window", window=20, n_dims=8)``, temporal FastICA
reaches a time-course MCC of about 0.92 (linear regression of the truth on the reduced
data: r >= 0.95 for every source); with the saturating response FastICA falls to about
0.80. Simulate the harder cases with ``trends-ivae simulate`` (saturating by default,
``--mixing-layers 3`` for nonlinear source mixing).

Run from the repository root::

    .venv/bin/python sample_data/make_sample_data.py
"""
from __future__ import annotations

from pathlib import Path

from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

PARAMS = FMRISimParams(n_subjects=4, n_volumes=150, n_components=8, n_task=3, tr=2.0,
                       segment_length=20, nonlinear=False, mixing_layers=0, snr=1.0,
                       baseline=500.0, seed=2024)


def main() -> Path:
    out = Path(__file__).resolve().parent / "bids"
    sim = simulate_fmri(PARAMS)
    write_bids(sim, out, dtype="int16", force=True)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1e6:.1f} MB, {sim.truth.n_voxels} voxels)")
    return out


if __name__ == "__main__":
    main()
