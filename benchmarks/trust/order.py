"""Issue 21, items 3 and 4: a model order and a component count that make sense.

:func:`checks` repeats the defects on the simulator:

* ``--n-components auto`` on simulations with a known order (5, 10, 20 sources, smooth
  maps, 8-32 subjects, without and with 8 mm smoothing; ``benchmarks/model_order.py``)
  is within +-2 of the truth in >= 80 % of the cases;
* on 6 subjects x 50 volumes it never exceeds the cap (the smallest subject's volumes);
* ``trends-ivae fit --n-components 60 / 290 / 400`` on subjects of 50 volumes is an
  error that names ``--n-components`` (not "lower n_dims"), and writes nothing.

Run ``python benchmarks/trust/order.py [--quick]`` to print the lines.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import tempfile
import warnings
from pathlib import Path

Check = tuple[str, bool, str]


def _model_order():
    path = Path(__file__).resolve().parents[1] / "model_order.py"
    spec = importlib.util.spec_from_file_location("benchmarks_model_order", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _accuracy(mo, quick: bool) -> Check:
    seed = mo.SEEDS["report"][:1]
    grid = dict(sources=mo.SOURCES[:2], subjects=mo.SUBJECTS[:2]) if quick else {}
    cases = mo.run_grid(seed, echo=lambda line: None, **grid)
    share = mo.shares(cases)
    misses = [f"K={c.n_sources}: {c.auto}" for c in cases if abs(c.auto - c.n_sources) > 2]
    detail = (f"auto ({cases[0].auto_method}) within +-2 of the truth in {100 * share['auto']:.0f} % of "
              f"{len(cases)} simulations (Minka's Laplace alone: {100 * share['laplace']:.0f} %)")
    if misses:
        detail += "; missed " + ", ".join(misses[:4])
    return "model order: --n-components auto on simulations", share["auto"] >= 0.8, detail


def _cap(mo) -> Check:
    c = mo.small_case()
    return ("model order: 6 subjects x 50 volumes within the cap", c.auto <= c.cap,
            f"auto chose {c.auto} (cap {c.cap}); uncapped MDL {c.chosen['mdl']}, Minka's Laplace "
            f"{c.chosen['laplace']}")


def _guards() -> Check:
    from trends_ivae.cli.main import main
    from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate_fmri(FMRISimParams(n_subjects=6, n_volumes=50, n_components=5, n_task=0,
                                          shape=(12, 14, 12), seed=1))
        bids = write_bids(sim, Path(tmp) / "bids")
        for n in (60, 290, 400):
            out = Path(tmp) / f"out{n}"
            err = io.StringIO()
            with warnings.catch_warnings(), contextlib.redirect_stderr(err):
                warnings.simplefilter("ignore")
                try:
                    code = main(["fit", "--bids", str(bids), "--out", str(out), "--n-components", str(n),
                                 "--n-init", "1", "--max-epochs", "1", "-q", "--no-report"])
                except SystemExit as exc:
                    code = exc.code
            text = err.getvalue()
            ok = code not in (0, None) and "--n-components" in text and "lower n_dims" not in text \
                and not out.exists()
            results.append((n, ok, text.strip().splitlines()[-1] if text.strip() else f"exit {code}"))
    detail = "; ".join(f"{n}: {'refused' if ok else 'NOT refused'}" for n, ok, _ in results)
    detail += f" (e.g. {results[0][2][:160]})"
    return "component count: more than a subject's 50 volumes", all(ok for _, ok, _ in results), detail


def checks(quick: bool = False) -> list[Check]:
    """One entry per defect: (name, holds, detail with the measured figure)."""
    mo = _model_order()
    return [_accuracy(mo, quick), _cap(mo), _guards()]


if __name__ == "__main__":
    for name, ok, detail in checks(quick="--quick" in sys.argv):
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
