"""Issue 15's regime map (``benchmarks/regime.py``, ``benchmarks/fmri.py --regime``): one
small cell whose ranking of methods is asserted, and the table, bars, cache and cell
selection on hand-written results."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _regime():
    if "bench_regime" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_regime", ROOT / "benchmarks" / "regime.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_regime"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["bench_regime"]


# ------------------------------------------------------------------ a fixed small cell
# A regime cell at the grid's SNR 1: 8 subjects x 240 volumes, 3 sources (one task-locked),
# on a 16 x 18 x 16 grid (~1250 voxels); one iVAE restart (n_init=1), the regime's budget
# otherwise. The thresholds were set on data seeds 11-13 (iVAE - FastICA time-course MCC
# with the 3-layer MLP mixing: +0.038, +0.101, +0.158; SNR 4 with 4 subjects gave -0.073
# to +0.063, too close to call) before this seed, 14, was run.
CELL = dict(n_subjects=8, n_sources=3, volumes=240, shape=(16, 18, 16))
CELL_SEED = 14


def _cell(tmp_path, mixing):
    regime = _regime()
    params = regime.sim_params(CELL["n_subjects"], CELL["n_sources"], mixing, CELL_SEED,
                               volumes=CELL["volumes"], shape=CELL["shape"])
    out = tmp_path / mixing
    out.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = regime.cell_stage(params, out)
        scores = {m: regime.method_stage(m, out, CELL["n_sources"], 0, n_init=1, nonlinearity_test=False)
                  for m in ("ivae[task+window]", "fastica")}
    return info, scores


@pytest.mark.slow
def test_regime_cell_ranking(tmp_path):
    """MLP-mixed few-source data: the iVAE beats temporal FastICA clearly; linear data:
    it is not far below it (both near the ceiling)."""
    info, s = _cell(tmp_path, "mlp3")
    print("mlp3", info["ceiling_tc"], {m: round(v["tc_mcc"], 3) for m, v in s.items()})
    assert s["ivae[task+window]"]["tc_mcc"] - s["fastica"]["tc_mcc"] >= 0.03, (info, s)
    assert s["ivae[task+window]"]["map_mcc"] >= s["fastica"]["map_mcc"] - 0.02, s
    info, s = _cell(tmp_path, "linear")
    print("linear", info["ceiling_tc"], {m: round(v["tc_mcc"], 3) for m, v in s.items()})
    assert s["ivae[task+window]"]["tc_mcc"] >= s["fastica"]["tc_mcc"] - 0.03, (info, s)
    assert info["ceiling_tc"] > 0.9 and s["fastica"]["tc_mcc"] > 0.9, (info, s)


# ------------------------------------------------------------------ the table on given results
def _fill(cache_path, cells_results):
    """Write results as the grid would: cells_results maps (s, k, mixing) to (cell info,
    {method: tc_mcc or (tc_mcc, verdict)})."""
    regime = _regime()
    args = regime._build_parser().parse_args(["--cache", str(cache_path)])
    cache = regime.Cache(cache_path)
    for (s, k, m), (info, methods) in cells_results.items():
        name = regime.cell_name(s, k, m)
        params = regime.sim_params(s, k, m, args.seed, volumes=args.volumes, shape=args.shape)
        cache.put(regime.Cache.key(name, "cell", args.seed, regime._settings(args, params, None)), info)
        for meth, v in methods.items():
            tc, verdict = v if isinstance(v, tuple) else (v, None)
            res = {"tc_mcc": tc, "map_mcc": tc, "wall": 1.0, "peak_mb": 100.0}
            if verdict:
                res.update(nl_verdict=verdict, nl_difference=0.1, nl_ci_low=0.05, nl_ci_high=0.15)
            cache.put(regime.Cache.key(name, meth, args.seed, regime._settings(args, params, meth)), res)


def test_table_bars_and_agreement(tmp_path, capsys):
    regime = _regime()
    cache = tmp_path / "regime.json"
    info = {"ceiling_tc": 0.9, "ceiling_map": 0.95, "ceiling_tc_linear": 0.8, "ceiling_tc_cubic": 0.9}
    _fill(cache, {
        (128, 12, "mlp3"): (info, {"ivae[task+window]": (0.80, "helps"), "canica": 0.5, "fastica": 0.6}),
        (32, 6, "linear"): (info, {"ivae[task+window]": (0.95, "no evidence"), "canica": 0.9, "fastica": 0.96}),
        (32, 3, "saturating"): (info, {"ivae[task+window]": (0.70, "helps"), "canica": 0.75, "fastica": 0.6}),
    })
    assert regime.main(["--regime", "--table-only", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    # 0.80 >= 0.60 + 0.15 and 0.80 / 0.9 = 0.89 >= 0.85
    assert "- s128-k12-mlp3: iVAE ≥ best linear + 0.15" in out and "(gap +0.200), 0.89 of 0.900 (pass)" in out
    # s32-k3-saturating is 0.05 below CanICA: the >= 32 subjects bar misses there
    assert "1 of 3 measured cells below (s32-k3-saturating)" in out and "(miss, 3 of the 24 cells measured)" in out
    # linear: 0.95 vs 0.96 is within 0.02
    assert "0 of 1 cells below (none)" in out
    # the test says "helps" where the iVAE does not beat linear methods on s32-k3-saturating
    assert "agrees with the benchmark in 2 of 3 cells" in out
    assert "| s32-k3-saturating | 0.900 | canica 0.750 | 0.700 | -0.050 | 0.78 | no | helps" in out
    assert "with the data's truth ('helps' exactly where the data are nonlinear) in 3 of 3" in out


def test_cell_selection_and_priority():
    regime = _regime()
    parse = regime._build_parser().parse_args
    cells = regime.select_cells(parse([]))
    assert len(cells) == 36
    assert [regime.cell_name(*c) for c in cells[:2]] == ["s128-k12-mlp2", "s128-k12-mlp3"]
    assert all(c[2] == "linear" for c in cells[2:11])
    assert [regime.cell_name(*c) for c in regime.select_cells(parse(["--quick"]))] == \
        ["s8-k3-linear", "s8-k3-mlp3"]
    picked = regime.select_cells(parse(["--cells", "s32-*-mlp*", "s8-k12-linear"]))
    assert sorted(regime.cell_name(*c) for c in picked) == \
        ["s32-k12-mlp2", "s32-k12-mlp3", "s32-k3-mlp2", "s32-k3-mlp3", "s32-k6-mlp2", "s32-k6-mlp3",
         "s8-k12-linear"]
    assert len(regime.select_cells(parse(["--subjects", "8", "--mixings", "mlp3"]))) == 3


def test_cache_is_keyed_by_settings(tmp_path):
    regime = _regime()
    cache = regime.Cache(tmp_path / "c.json")
    a = regime.Cache.key("s8-k3-linear", "fastica", 0, {"sim": {"snr": 1.0}})
    b = regime.Cache.key("s8-k3-linear", "fastica", 0, {"sim": {"snr": 2.0}})
    assert a != b
    cache.put(a, {"tc_mcc": 0.5})
    assert regime.Cache(tmp_path / "c.json").get(a) == {"tc_mcc": 0.5} and cache.get(b) is None


def test_fmri_dispatches_regime(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_fmri_t", ROOT / "benchmarks" / "fmri.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--regime", "--table-only", "--cache", str(tmp_path / "none.json")]) == 0
    assert "no results in the cache" in capsys.readouterr().out
