"""The supervised MLP read-out ceiling of ``benchmarks/fmri_ceiling.py`` (issue 24)."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _ceiling_module():
    if "bench_fmri_ceiling_t" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_fmri_ceiling_t", ROOT / "benchmarks" / "fmri_ceiling.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_fmri_ceiling_t"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["bench_fmri_ceiling_t"]


def _invertible_mlp_data(seed: int, n_groups: int = 2, rows: int = 250, k: int = 3):
    """Noiseless x = W2 leaky(W1 s): an invertible MLP whose inverse a ReLU MLP represents exactly."""
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(n_groups * rows, k))
    w1, w2 = (np.linalg.qr(rng.normal(size=(k, k)))[0] for _ in range(2))
    h = s @ w1.T
    x = np.where(h > 0, h, 0.2 * h) @ w2.T
    return x, s, np.repeat(np.arange(n_groups), rows)


def test_mlp_ceiling_is_one_on_noiseless_invertible_mlp_data():
    bench = _ceiling_module()
    x, s, groups = _invertible_mlp_data(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = bench.readout_scores(x, s, groups, folds=2, names=("tc_linear", "tc_mlp"))
    assert out["tc_mlp"] > 0.98
    assert out["tc_mlp"] > out["tc_linear"] + 0.01     # the data are nonlinear: the linear read-out falls short


def test_readouts_are_the_three_named_models():
    assert set(_ceiling_module().readouts()) == {"tc_linear", "tc_cubic", "tc_mlp"}
