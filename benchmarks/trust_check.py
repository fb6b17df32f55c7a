"""Issue 21's check: each defect a new user's trial found, repeated, one line per defect.

Runs the ``checks()`` of every module in ``benchmarks/trust/`` (one per part: the output
guard and ``sample``, the follow-up scripts and timing, the model order and component
count, the verdict / overfitting / warnings / MELODIC layout). Each check repeats the
defect as the issue describes it, on the simulator, and on the Haxby data in
``../shared/data`` where the issue says so (skipped, and said, when the data are absent),
and prints ``HOLDS`` or ``FAILS`` with the measured figure.

Usage::

    python benchmarks/trust_check.py            # every part
    python benchmarks/trust_check.py --quick    # smaller grids where a part has one
    python benchmarks/trust_check.py guard order

Exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("guard", "followup", "order", "answers")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", metavar="PART", help=f"which parts, of {', '.join(PARTS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="smaller grids where a part has one")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; use {', '.join(PARTS)}")
    sys.path.insert(0, str(HERE))
    failed = 0
    for part in args.parts or PARTS:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"trust.{part}")
            results = module.checks(quick=args.quick)
        except Exception:  # noqa: BLE001 - a part that cannot run is a failure, printed
            print(f"FAILS  {part}: could not run:\n{traceback.format_exc()}", flush=True)
            failed += 1
            continue
        for name, ok, detail in results:
            print(f"{'HOLDS' if ok else 'FAILS'}  {part}/{name}: {detail}", flush=True)
            failed += not ok
        print(f"       ({part}: {time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"{'all hold' if not failed else f'{failed} fail'}")
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())
