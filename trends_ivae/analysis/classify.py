"""The documented rule that calls each component ``network``, ``artifact`` or ``uncertain``.

It reads the features of :mod:`trends_ivae.analysis.features` and counts reasons.

Artifact reasons (:data:`ARTIFACT_RULES`): ``edge`` (``edge_share > 0.5``), ``white
matter/CSF`` (``wm_share + csf_share > 0.6``, MNI space only), ``high frequency``
(``high_freq_share > 0.5``), ``little low-frequency power`` (``falff < 0.3``), ``scattered`` (more than 8 clusters and the largest under
20 % of the suprathreshold voxels), ``confound`` (``confound_r > 0.5``).

Network reasons (:data:`NETWORK_RULES`): ``low frequency`` (``falff >= 0.5``),
``compact`` (the largest cluster holds 30 % or more, or at most 4 clusters),
``grey matter`` (``gm_share >= 0.5``, MNI space only), ``sparse`` (``kurtosis > 3``).

The class: at least one artifact reason, and at least as many as the network reasons
less one: ``artifact``; no artifact reason and two or more network reasons: ``network``;
anything else (a network-like component with one artifact sign, or too little evidence):
``uncertain``. A feature that is ``n/a`` gives no reason either way. The thresholds were
set from the usual values in the ICA-labelling literature (GIFT's Autolabeller, ICA-FIX's
features); the ``little low-frequency power`` reason, the "less one" of the artifact
count and the broad-map threshold of the features were added after looking at one
simulation (seed 0 of ``benchmarks/labels.py``), whose figures are therefore reported
apart from the fresh seeds'.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["ARTIFACT_RULES", "NETWORK_RULES", "classify_components", "CLASSES"]

CLASSES = ("network", "artifact", "uncertain")

Rule = Callable[[pd.Series], bool]


def _gt(row: pd.Series, col: str, value: float) -> bool:
    v = row.get(col, np.nan)
    return bool(np.isfinite(v) and v > value)


def _lt(row: pd.Series, col: str, value: float) -> bool:
    v = row.get(col, np.nan)
    return bool(np.isfinite(v) and v < value)


def _ge(row: pd.Series, col: str, value: float) -> bool:
    v = row.get(col, np.nan)
    return bool(np.isfinite(v) and v >= value)


ARTIFACT_RULES: dict[str, Rule] = {
    "edge": lambda r: _gt(r, "edge_share", 0.5),
    "white matter/CSF": lambda r: _gt(r, "wm_csf", 0.6),
    "high frequency": lambda r: _gt(r, "high_freq_share", 0.5),
    "little low-frequency power": lambda r: _lt(r, "falff", 0.3),
    "scattered": lambda r: _gt(r, "n_clusters", 8) and not _ge(r, "largest_cluster", 0.2),
    "confound": lambda r: _gt(r, "confound_r", 0.5),
}
NETWORK_RULES: dict[str, Rule] = {
    "low frequency": lambda r: _ge(r, "falff", 0.5),
    "compact": lambda r: _ge(r, "largest_cluster", 0.3) or (np.isfinite(r.get("n_clusters", np.nan))
                                                          and 0 < r["n_clusters"] <= 4),
    "grey matter": lambda r: _ge(r, "gm_share", 0.5),
    "sparse": lambda r: _gt(r, "kurtosis", 3.0),
}


def classify_components(features: pd.DataFrame) -> pd.DataFrame:
    """The class and its reasons for each row of ``features``.

    Returns
    -------
    DataFrame
        Columns ``name`` (when ``features`` has it), ``class`` (one of :data:`CLASSES`),
        ``reasons`` (``artifact: ...; network: ...``), ``n_artifact``, ``n_network``.
    """
    feats = features.copy()
    feats["wm_csf"] = feats.get("wm_share", np.nan) + feats.get("csf_share", np.nan)
    rows = []
    for _, r in feats.iterrows():
        art = [name for name, rule in ARTIFACT_RULES.items() if rule(r)]
        net = [name for name, rule in NETWORK_RULES.items() if rule(r)]
        if art and len(art) >= len(net) - 1:
            cls = "artifact"
        elif not art and len(net) >= 2:
            cls = "network"
        else:
            cls = "uncertain"
        reasons = "; ".join([f"artifact: {a}" for a in art] + [f"network: {n}" for n in net]) or "no reason"
        rows.append({"class": cls, "reasons": reasons, "n_artifact": len(art), "n_network": len(net)})
    out = pd.DataFrame(rows)
    if "name" in features:
        out.insert(0, "name", features["name"].to_numpy())
    return out
