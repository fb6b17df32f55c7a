"""The labels ``trends-ivae label`` wrote, as columns of the report's component table.

:func:`label_columns` reads ``group/desc-ivae_labels.tsv``'s ``network``, ``network_r``,
``class`` and ``class_reasons`` (when present) into display columns: the template name with
its correlation, and the class with its reasons, so that the classes can be judged by eye
beside the maps (see ``docs/labels_denoise_stats.md``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["label_columns"]


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else str(value)


def label_columns(labels: pd.DataFrame) -> dict[str, list]:
    """Display columns (name -> one string per component) of the label columns present."""
    out: dict[str, list] = {}
    if "network" in labels:
        r = pd.to_numeric(labels.get("network_r", pd.Series(np.nan, index=labels.index)), errors="coerce")
        out["template"] = [f"{_text(n)} (r = {v:.2f})" if _text(n) else "" for n, v in zip(labels["network"], r)]
    if "class" in labels:
        reasons = labels.get("class_reasons", pd.Series("", index=labels.index))
        out["class"] = [f"{_text(c)} ({_text(w)})" if _text(c) else "" for c, w in zip(labels["class"], reasons)]
    return out
