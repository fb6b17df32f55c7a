"""The HTML report of a fit: ``build_report(OUT)`` writes ``OUT/report.html``.

Modules: :mod:`.results` reads an output folder, :mod:`.space` reads the maps' space (header codes,
BIDS ``space-``) and finds peaks and atlas regions, :mod:`.figures` (line plots) and
:mod:`.mapfigure` (map slices, glass brain) draw, blitted and encoded as palette PNGs by
:mod:`.encoding`, :mod:`.viewer` builds the interactive slice viewer (its script:
:mod:`.viewer_js`), :mod:`.build` assembles the page.
See ``docs/report.md``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["build_report", "load_results"]


def __getattr__(name: str) -> Any:  # lazy: matplotlib and nilearn are heavy
    if name == "build_report":
        from .build import build_report

        return build_report
    if name == "load_results":
        from .results import load_results

        return load_results
    raise AttributeError(f"module 'trends_ivae.report' has no attribute {name!r}")
