"""The flow on fMRI-sized prepared data: fit time and peak memory against the VAE (issue 25).

Two steps, each in its own process:

``cell N OUT``
    Simulates the regime map's cell ``sN-k12-mlp2`` (``benchmarks/regime.py``'s settings:
    200 volumes per subject, 20 x 24 x 20 grid, SNR 1, two-layer MLP mixing, 3 of 12 sources
    task-locked, data seed 0) as uncompressed BIDS under ``OUT/bids`` and prepares it once
    with u = task+window (20-volume windows, ``hrf_delay`` 5, ``n_dims`` 12) into
    ``OUT/prepared.h5``.
``fit PREPARED {flow,vae} [STEPS]``
    ``GroupIVAE(12, aux="task+window", window=20, n_dims=12, hrf_delay=5, estimator=...,
    random_state=0, device="cpu").fit_prepared(prepared)``: the flow with one restart and
    its epochs capped at about ``STEPS`` optimiser steps as ``regime.py`` caps them (0:
    GroupIVAE's own budget), the VAE with GroupIVAE's defaults. A thread samples the
    resident memory every 50 ms; prints the fit's seconds, the memory before the fit and
    the peak, and the package frames of the stack at the peak.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/flow_fmri.py cell 128 /tmp/c128
    OMP_NUM_THREADS=1 python benchmarks/flow_fmri.py fit /tmp/c128/prepared.h5 flow 240
    OMP_NUM_THREADS=1 python benchmarks/flow_fmri.py fit /tmp/c128/prepared.h5 vae
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path


def make_cell(n: int, out: Path) -> None:
    from trends_ivae.data.bids import find_bids_runs
    from trends_ivae.data.settings import PrepareSettings
    from trends_ivae.data.store import write_prepared
    from trends_ivae.reduction.prepare import prepare
    from trends_ivae.simulate.fmri import FMRISimParams, simulate_fmri, write_bids

    params = {"n_subjects": n, "n_components": 12, "n_task": 3, "n_volumes": 200, "segment_length": 20,
              "shape": [20, 24, 20], "snr": 1.0, "nonlinear": False, "mixing_layers": 2, "seed": 0}
    p = FMRISimParams.from_dict({**FMRISimParams().to_dict(), **params})
    write_bids(simulate_fmri(p), out / "bids", force=True, compress=False)
    runs = find_bids_runs(out / "bids", task="sim")
    prep = prepare(runs, PrepareSettings.from_options(aux="task+window", window=20, n_dims=12, hrf_delay=5))
    write_prepared(out / "prepared.h5", prep, overwrite=True)
    print("prepared", prep.x.shape)


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


def fit(path: str, estimator: str, steps: int) -> None:
    import torch

    from trends_ivae import GroupIVAE
    from trends_ivae.data.store import read_prepared
    from trends_ivae.estimators.flow import IFlow

    torch.set_num_threads(1)
    prep = read_prepared(path)
    peak: list = [0, ""]
    main_id, done = threading.get_ident(), threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _rss_mb()
            if rss > peak[0]:
                frame = sys._current_frames().get(main_id)
                stack = traceback.format_stack(frame, limit=60) if frame else []
                peak[0], peak[1] = rss, "".join(line for line in stack if "trends_ivae" in line)
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    params = {}
    if estimator == "flow" and steps:   # as benchmarks/regime.py's _flow_budget
        d = IFlow().get_params()
        n = prep.n_samples
        n_train = n - int(round(n * d["val_frac"]))
        batch = int(max(16, min(d["batch_size"], n_train // 4)))
        spe = max(1, n_train // batch)
        default = int(min(400, max(d["max_epochs"], math.ceil(600 / spe))))
        params = {"max_epochs": int(min(default, max(1, math.ceil(steps / spe))))}
    before, t0 = _rss_mb(), time.perf_counter()
    g = GroupIVAE(12, aux="task+window", window=20, n_dims=12, hrf_delay=5, n_init=1 if estimator == "flow" else None,
                  estimator=estimator, estimator_params=params or None, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.fit_prepared(prep)
    seconds = time.perf_counter() - t0
    done.set()
    print(json.dumps({"rows": prep.n_samples, "estimator": estimator, "params": params, "fit_s": round(seconds, 1),
                      "rss_before_fit_mb": before, "peak_rss_mb": peak[0]}))
    print(peak[1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cell"] and len(argv) == 3:
        make_cell(int(argv[1]), Path(argv[2]))
    elif argv[:1] == ["fit"] and len(argv) in (3, 4):
        fit(argv[1], argv[2], int(argv[3]) if len(argv) == 4 else 240)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
