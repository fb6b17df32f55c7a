"""Figures of the report, as palette PNG bytes (matplotlib with the Agg backend).

Speed matters (50 components in about 10 s on two cores), so each kind of per-component
figure is one reused matplotlib figure (:class:`SignalFigure` here, the maps'
:class:`~.mapfigure.MapFigure`), blitted: its static parts are drawn once and only the
changing artists are drawn per component (:class:`~.encoding.Blitter`), then encoded as a
palette PNG (:mod:`.encoding`). Figures are saved at :data:`DEFAULT_DPI` and shown at
their size in inches (:data:`CSS_DPI` CSS pixels per inch), so that their text reads at
its point size and stays sharp on high-density screens. Spectra and the group-mean time
course are computed once for all components.
"""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402
from scipy.signal import welch  # noqa: E402

from .encoding import LINE_COLORS, Blitter, figure_png  # noqa: E402

__all__ = ["DEFAULT_DPI", "CSS_DPI", "training_curve", "SignalFigure", "spectra", "useful_views"]

#: resolution of the report's figures (pixels per inch of the figure)
DEFAULT_DPI = 120
#: CSS pixels per inch: a figure is shown at its size in inches times this, whatever its dpi
CSS_DPI = 96

#: an axis of at most this many voxels is thin: a view across it would be a line
THIN = 3

_BLUE, _ORANGE, _GREY = "#1f77b4", "#d95f02", "#444444"


def training_curve(elbo: Any, restart_elbos: list | None = None, dpi: int = DEFAULT_DPI) -> bytes:
    """Train and validation ELBO per epoch (``model/elbo.tsv``) as PNG bytes."""
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    ep = np.asarray(elbo["epoch"])
    for col, color, label in (("train_elbo", _BLUE, "train"), ("val_elbo", _ORANGE, "validation")):
        if col in elbo:
            y = np.asarray(elbo[col], dtype=float)
            if np.isfinite(y).any():
                ax.plot(ep, y, color=color, lw=1.4, label=label)
    # the start is often far below the rest: keep the interesting range in view
    vals = np.concatenate([np.asarray(elbo[c], float) for c in ("train_elbo", "val_elbo") if c in elbo])
    vals = vals[np.isfinite(vals)]
    if vals.size > 4:
        lo, hi = np.percentile(vals, 5), vals.max()
        pad = 0.08 * (hi - lo if hi > lo else 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("ELBO per volume")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="lower right")
    if restart_elbos and len(restart_elbos) > 1:
        ax.set_title("best restart; held-out ELBO of all restarts: "
                     + ", ".join(f"{v:.2f}" for v in restart_elbos), fontsize=8)
    fig.tight_layout()
    out = figure_png(fig, dpi, LINE_COLORS)
    plt.close(fig)
    return out


def spectra(runs: list, nperseg: int = 64) -> tuple[np.ndarray, list, str]:
    """Welch power spectra of every run's time courses.

    Returns
    -------
    freqs : ndarray (n_freqs,)
        In Hz when every run has a TR, else in cycles per volume.
    powers : list of ndarray (n_freqs, k)
        One per run (all on ``freqs``: one segment length for all runs).
    unit : str
        ``"Hz"`` or ``"cycles/volume"``.
    """
    if not runs:
        return np.zeros(0), [], "Hz"
    n = min(r.data.shape[0] for r in runs)
    seg = int(min(nperseg, n))
    have_tr = all(r.tr for r in runs)
    trs = {round(float(r.tr), 6) for r in runs} if have_tr else set()
    unit = "Hz" if have_tr and len(trs) == 1 else "cycles/volume"
    powers, freqs = [], None
    for r in runs:
        fs = 1.0 / float(r.tr) if unit == "Hz" else 1.0
        f, p = welch(r.data, fs=fs, nperseg=seg, axis=0, detrend="linear")
        freqs = f if freqs is None else freqs
        powers.append(p)
    return freqs, powers, unit


def useful_views(shape: tuple, affine: np.ndarray) -> str:
    """The cuts worth drawing of a grid, among ``"x"`` (sagittal), ``"y"`` (coronal) and
    ``"z"`` (axial): those whose two in-plane axes are not thin (more than :data:`THIN`
    voxels). A one-slice axial volume gives ``"z"``; a whole brain ``"xyz"``; ``"xyz"``
    also when no view qualifies."""
    world_of = np.argmax(np.abs(np.asarray(affine)[:3, :3]), axis=0)  # voxel axis -> world axis
    n_world = {int(w): int(n) for w, n in zip(world_of, shape[:3])}
    views = "".join(v for a, v in enumerate("xyz")
                    if all(n_world.get(b, 1) > THIN for b in range(3) if b != a))
    return views or "xyz"


class SignalFigure:
    """Time course, power spectrum and the learned prior of one component.

    Parameters
    ----------
    runs : list of RunSeries
        All runs (for the group mean and the mean spectrum).
    subject_run : int
        Index into ``runs`` of the run shown.
    prior : Prior or None
        The prior summary (by factor level, over time).
    dpi : int
        PNG resolution.
    """

    def __init__(self, runs: list, subject_run: int, prior: Any = None, dpi: int = DEFAULT_DPI,
                 max_factors: int = 2) -> None:
        self.runs, self.dpi = runs, dpi
        self.run = runs[subject_run] if runs else None
        self.prior = prior
        self.factors = list(prior.by_factor[:max_factors]) if prior is not None else []
        self.over_time = prior.over_time if prior is not None else None
        n_panels = (2 if runs else 0) + len(self.factors) + (1 if self.over_time else 0)
        self.n_panels = max(n_panels, 1)
        self.fig, axes = plt.subplots(1, self.n_panels, figsize=(3.4 * self.n_panels, 2.5))
        self.axes = np.atleast_1d(axes)
        self.freqs, self.powers, self.funit = spectra(runs)
        self.group_mean = None
        self._blit: Blitter | None = None
        if len(runs) > 1:
            n = min(r.data.shape[0] for r in runs)
            self.group_mean = np.mean([r.data[:n] for r in runs], axis=0)

    def render(self, j: int, name: str) -> bytes:
        """PNG bytes of component ``j``'s signal panels.

        The first call draws the panels and stores their static parts (:class:`.Blitter`);
        later calls only replace the data of the lines, error bars, bands and the title
        and draw those over the stored background (clearing axes, laying out and drawing
        the whole figure again costs far more). Each panel has one y range for all
        components (:meth:`_shared_limits`)."""
        if self._blit is None:
            self._draw(j, name)
            self._shared_limits()
            self.fig.tight_layout()  # once: the panels do not move afterwards
            dynamic = list(self._art.values())
            self._blit = Blitter(self.fig, dynamic, self.dpi)
        else:
            self._update(j, name)
        return self._blit.frame(LINE_COLORS)

    def _draw(self, j: int, name: str) -> None:
        from matplotlib.collections import LineCollection

        self._art: dict[str, Any] = {}
        a = 0
        if self.runs:
            ax = self.axes[a]
            r = self.run
            tr = r.tr or 1.0
            unit = "s" if r.tr else "volume"
            (self._art["tc"],) = ax.plot(np.arange(r.data.shape[0]) * tr, r.data[:, j], color=_BLUE,
                                         lw=0.9, label=f"sub-{r.subject}")
            if self.group_mean is not None:
                (self._art["tc_mean"],) = ax.plot(np.arange(self.group_mean.shape[0]) * tr,
                                                  self.group_mean[:, j], color=_GREY, lw=1.1, ls="--",
                                                  label=f"mean of {len(self.runs)} runs")
            ax.set_xlabel(f"time ({unit})")
            ax.set_ylabel("z (posterior mean)")
            self._art["title"] = ax.set_title(f"{name}: time course", fontsize=9)
            ax.legend(frameon=False, fontsize=7, loc="upper right")
            a += 1
            ax = self.axes[a]
            if len(self.freqs) > 1:
                f = self.freqs[1:]
                (self._art["ps"],) = ax.semilogy(f, self.powers[self.runs.index(r)][1:, j], color=_BLUE,
                                                 lw=0.9, label=f"sub-{r.subject}")
                if len(self.powers) > 1:
                    (self._art["ps_mean"],) = ax.semilogy(
                        f, np.mean([p[1:, j] for p in self.powers], axis=0), color=_GREY, lw=1.1,
                        ls="--", label="mean over runs")
                ax.legend(frameon=False, fontsize=7, loc="upper right")
            ax.set_xlabel(f"frequency ({self.funit})")
            ax.set_ylabel("power")
            ax.set_title("power spectrum (Welch)", fontsize=9)
            a += 1
        for i, fac in enumerate(self.factors):
            ax = self.axes[a]
            levels = fac["levels"]
            x = np.arange(len(levels))
            m, sd = self._factor(fac, j)
            (self._art[f"f{i}"],) = ax.plot(x, m, "o", color=_ORANGE, ms=4)
            segs = LineCollection(self._segments(x, m, sd), colors=_ORANGE, linewidths=1)
            self._art[f"f{i}_err"] = ax.add_collection(segs)
            ax.axhline(0, color="0.7", lw=0.6)
            step = max(1, int(np.ceil(len(levels) / 20)))
            ax.set_xticks(x[::step])
            ax.set_xticklabels([str(levels[i])[:14] for i in x[::step]], rotation=45 if len(levels) > 5 else 0,
                               ha="right" if len(levels) > 5 else "center", fontsize=7)
            ax.set_xlim(-0.5, len(levels) - 0.5)
            ax.set_ylabel("prior mean ± sd")
            ax.set_title(f"prior p(z|u) by {fac['name']}", fontsize=9)
            a += 1
        if self.over_time:
            ax = self.axes[a]
            ot = self.over_time
            m, s = ot["mean"][:, j], np.sqrt(np.maximum(ot["var"][:, j], 0))
            (self._art["ot"],) = ax.plot(ot["t"], m, color=_ORANGE, lw=1)
            self._art["ot_band"] = ax.fill_between(ot["t"], m - s, m + s, color=_ORANGE, alpha=0.25, lw=0)
            if self.run is not None:
                r = self.run
                (self._art["ot_tc"],) = ax.plot(np.arange(r.data.shape[0]) * (r.tr or 1.0), r.data[:, j],
                                                color=_BLUE, lw=0.5, alpha=0.6)
            ax.set_xlabel(f"time ({ot['unit']})")
            ax.set_ylabel("prior mean ± sd")
            ax.set_title("prior over time (line: time course)", fontsize=9)
            self._ot_ax = ax

    @staticmethod
    def _factor(fac: dict, j: int) -> tuple[np.ndarray, np.ndarray]:
        return fac["mean"][:, j], np.sqrt(np.maximum(fac["var"][:, j], 0))

    @staticmethod
    def _segments(x: np.ndarray, m: np.ndarray, sd: np.ndarray) -> list:
        return [((xi, mi - si), (xi, mi + si)) for xi, mi, si in zip(x, m, sd)]

    def _update(self, j: int, name: str) -> None:
        art = self._art
        if self.runs:
            art["tc"].set_ydata(self.run.data[:, j])
            if "tc_mean" in art:
                art["tc_mean"].set_ydata(self.group_mean[:, j])
            art["title"].set_text(f"{name}: time course")
            if "ps" in art:
                art["ps"].set_ydata(self.powers[self.runs.index(self.run)][1:, j])
                if "ps_mean" in art:
                    art["ps_mean"].set_ydata(np.mean([p[1:, j] for p in self.powers], axis=0))
        for i, fac in enumerate(self.factors):
            m, sd = self._factor(fac, j)
            art[f"f{i}"].set_ydata(m)
            art[f"f{i}_err"].set_segments(self._segments(np.arange(len(m)), m, sd))
        if self.over_time:
            ot = self.over_time
            m, s = ot["mean"][:, j], np.sqrt(np.maximum(ot["var"][:, j], 0))
            art["ot"].set_ydata(m)
            art["ot_band"].remove()
            self._blit.remove(art["ot_band"])
            art["ot_band"] = self._ot_ax.fill_between(ot["t"], m - s, m + s, color=_ORANGE, alpha=0.25, lw=0)
            self._blit.add(art["ot_band"])
            if "ot_tc" in art:
                art["ot_tc"].set_ydata(self.run.data[:, j])

    def _shared_limits(self) -> None:
        """One y range per panel for all components (the largest of any component), so
        that the axes are drawn once and components compare at a glance."""
        ranges: list = []
        if self.runs:
            tc = [self.run.data] + ([self.group_mean] if self.group_mean is not None else [])
            ranges.append((np.concatenate([t.ravel() for t in tc]), False))
            if len(self.freqs) > 1:
                ranges.append((np.concatenate([p[1:].ravel() for p in self.powers]), True))
            else:
                ranges.append((np.zeros(0), False))
        for fac in self.factors:
            m = np.asarray(fac["mean"], float)
            sd = np.sqrt(np.maximum(np.asarray(fac["var"], float), 0))
            ranges.append((np.concatenate([(m - sd).ravel(), (m + sd).ravel(), [0.0]]), False))
        if self.over_time:
            ot = self.over_time
            s = np.sqrt(np.maximum(ot["var"], 0))
            vals = [(ot["mean"] - s).ravel(), (ot["mean"] + s).ravel()]
            if self.run is not None:
                vals.append(self.run.data.ravel())
            ranges.append((np.concatenate(vals), False))
        for ax, (vals, log) in zip(self.axes, ranges):
            vals = vals[np.isfinite(vals) & ((vals > 0) if log else True)]
            if not vals.size:
                continue
            lo, hi = float(vals.min()), float(vals.max())
            if log:
                ax.set_ylim(lo / 1.5, hi * 1.5)
            else:
                pad = 0.05 * (hi - lo if hi > lo else 1.0)
                ax.set_ylim(lo - pad, hi + pad)

    def close(self) -> None:
        plt.close(self.fig)
