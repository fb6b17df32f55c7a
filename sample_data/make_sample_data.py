"""Generate ``sample_data/bids/``: the small simulated BIDS dataset the demo runs on.

4 subjects x 120 volumes (TR 2 s), 8 sources (3 task-locked, 5 non-stationary resting),
saturating voxel response, 4 mm grid, int16 images; the truth is under
``sample_data/bids/derivatives/truth/`` (read it with
``trends_ivae.simulate.load_truth("sample_data/bids")``). Deterministic (seed 2024).

Run from the repository root::

    .venv/bin/python sample_data/make_sample_data.py
"""
from __future__ import annotations

from pathlib import Path

from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

PARAMS = FMRISimParams(n_subjects=4, n_volumes=120, n_components=8, n_task=3, tr=2.0,
                       segment_length=20, nonlinear=True, mixing_layers=0, snr=1.0, seed=2024)


def main() -> Path:
    out = Path(__file__).resolve().parent / "bids"
    sim = simulate_fmri(PARAMS)
    write_bids(sim, out, dtype="int16", force=True)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1e6:.1f} MB, {sim.truth.n_voxels} voxels)")
    return out


if __name__ == "__main__":
    main()
