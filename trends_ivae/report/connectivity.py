"""The report's connectivity section, from the fit folder's ``analysis/`` files.

The group static FNC (mean Fisher z) of each kind of time course (``model``: the model's
own; ``dualreg``: spatial regression of the group maps, the one GIFT users compare with),
the dFNC states with each state's mean fraction of time when ``analysis/`` holds them,
and the spectral summary (dynamic range, fALFF; group means) as a table. The prior's
dynamics per component are in each component's figure (the learned prior over time).
Nothing here computes: it reads what ``trends-ivae fit`` / ``analyze`` wrote
(``docs/analysis.md``); without ``analysis/`` there is no section.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["connectivity_section"]

_KIND_TITLES = {"model": "the model's time courses", "dualreg": "dual-regression time courses (as GIFT)"}


def _relmat(path: Path) -> tuple[np.ndarray, list] | None:
    """(the matrix, its node names) of a dense relmat TSV and its sidecar, or None."""
    try:
        mat = pd.read_csv(path, sep="\t", header=None, na_values="n/a").to_numpy(float)
        names = json.loads(path.with_name(path.name.replace(".tsv", ".json")).read_text())["NodeNames"]
    except (OSError, ValueError, KeyError):
        return None
    return mat, list(names)


def _matrices_png(mats: list, titles: list, dpi: int) -> bytes:
    """Heat maps of (k, k) Fisher z matrices side by side, one colour scale."""
    import matplotlib.pyplot as plt

    from .encoding import MAP_COLORS, figure_png

    vmax = max(float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 0.0 for m, _ in mats) or 1.0
    fig, axes = plt.subplots(1, len(mats), figsize=(3.4 * len(mats) + 0.6, 3.4), squeeze=False)
    for ax, (mat, names), title in zip(axes[0], mats, titles):
        im = ax.imshow(np.nan_to_num(mat), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=90, fontsize=6)
        ax.set_yticks(ticks, names, fontsize=6)
        ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Fisher z")
    out = figure_png(fig, dpi, MAP_COLORS)
    plt.close(fig)
    return out


def _states(group: Path, kind: str) -> tuple[list, list]:
    """The dFNC states of ``kind``, with titles giving each state's mean fraction of time."""
    files = sorted(group.glob(f"desc-{kind}_state-*_meas-fisherz_relmat.dense.tsv"),
                   key=lambda p: int(p.name.split("_state-")[1].split("_")[0]))
    mats = [m for m in (_relmat(f) for f in files) if m is not None]
    try:
        summary = pd.read_csv(group / f"desc-{kind}_dfncsummary.tsv", sep="\t")
        frac = [float(summary[f"fraction_state{j + 1}"].mean()) for j in range(len(mats))]
    except (OSError, ValueError, KeyError):
        frac = [np.nan] * len(mats)
    return mats, [f"{kind} state {j + 1} ({100 * f:.0f} % of time)" for j, f in enumerate(frac)]


def _summary_table(group: Path, kinds: list) -> str:
    rows = []
    for kind in kinds:
        try:
            t = pd.read_csv(group / f"desc-{kind}_stat-mean_spectralsummary.tsv", sep="\t")
        except (OSError, ValueError):
            continue
        rows.append(t.rename(columns={"dynamic_range": f"dynamic range ({kind})", "falff": f"fALFF ({kind})"})
                    .set_index("component"))
    if not rows:
        return ""
    table = pd.concat(rows, axis=1).reset_index()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v if isinstance(v, str) else f'{v:.3g}')}</td>"
                                    for v in row) + "</tr>" for row in table.itertuples(index=False))
    return f'<table class="comps"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def connectivity_section(out_dir: str | Path, dpi: int, img_tag) -> tuple[str, str] | None:
    """(the nav link, the section's HTML), or None without ``analysis/``.

    ``img_tag(png, alt, dpi=...)`` makes an inline image (the page's own helper).
    """
    group = Path(out_dir) / "analysis" / "group"
    kinds = [k for k in _KIND_TITLES if (group / f"desc-{k}_meas-fisherz_stat-mean_relmat.dense.tsv").is_file()]
    if not kinds:
        return None
    parts = ['<section id="connectivity"><h2>Connectivity and spectra</h2>',
             '<p class="muted">Group static FNC: the mean over subjects of Fisher z of the correlation between '
             "post-processed time courses (detrended, despiked, low-passed at 0.15 Hz). The model's own time "
             "courses are a temporal ICA's, near-independent at the group level by construction; the "
             "dual-regression ones (group maps regressed onto each run) are those GIFT's FNC compares with. "
             "Files and definitions: analysis/ (docs/analysis.md).</p>"]
    mats = [_relmat(group / f"desc-{k}_meas-fisherz_stat-mean_relmat.dense.tsv") for k in kinds]
    shown = [(m, _KIND_TITLES[k]) for m, k in zip(mats, kinds) if m is not None]
    if shown:
        png = _matrices_png([m for m, _ in shown], [t for _, t in shown], dpi)
        parts.append(img_tag(png, "group static FNC", dpi=dpi))
    for kind in kinds:
        states, titles = _states(group, kind)
        if states:
            parts.append(f"<h3>dFNC states ({html.escape(_KIND_TITLES[kind])})</h3>")
            parts.append(img_tag(_matrices_png(states, titles, dpi), f"dFNC states of {kind}", dpi=dpi))
    table = _summary_table(group, kinds)
    if table:
        parts.append("<h3>Spectral summary (group means)</h3><p class=\"muted\">Dynamic range: peak power minus "
                     "the minimum above the peak's frequency (spectrum normalised to unit sum); fALFF: power below "
                     "0.10 Hz over power in 0.15-0.25 Hz (GIFT's ratio).</p>" + table)
    parts.append("</section>")
    return '<a href="#connectivity">connectivity</a>', "".join(parts)
