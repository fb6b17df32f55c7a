"""Figures of the report, as PNG bytes (matplotlib with the Agg backend, nilearn plotting).

Speed matters (50 components in well under a minute on two cores), so each kind of
per-component figure is one reused matplotlib figure (:class:`MapFigure`,
:class:`SignalFigure`): it is cleared and redrawn for each component. Figures are saved
at :data:`DEFAULT_DPI` and shown at their size in inches (:data:`CSS_DPI` CSS pixels per
inch), so that their text reads at its point size and stays sharp on high-density screens.
Spectra and the group-mean time course are computed once for all components.
"""
from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import welch  # noqa: E402

__all__ = ["DEFAULT_DPI", "CSS_DPI", "png_bytes", "training_curve", "MapFigure", "SignalFigure", "spectra",
           "useful_views"]

#: resolution of the report's figures (pixels per inch of the figure)
DEFAULT_DPI = 120
#: CSS pixels per inch: a figure is shown at its size in inches times this, whatever its dpi
CSS_DPI = 96

#: an axis of at most this many voxels is thin: a view across it would be a line
THIN = 3

_BLUE, _ORANGE, _GREY = "#1f77b4", "#d95f02", "#444444"


def png_bytes(fig: "matplotlib.figure.Figure", dpi: int) -> bytes:
    """Save ``fig`` as PNG into memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


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
    out = png_bytes(fig, dpi)
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


def _display_mode(views: str) -> str:
    return {"xyz": "ortho", "xy": "yx"}.get(views, views)


class MapFigure:
    """Regression map and decoder-effect map (orthogonal slices), and a glass brain.

    Two reused figures: the slices (cleared and redrawn per component, as the cut moves to
    each peak) and the glass brain, whose brain outline (thousands of patches, the slow
    part) is drawn once; per component only its overlay is swapped.

    Parameters
    ----------
    bg_img : Nifti1Image
        Background for the slices (the MNI template or the mean image).
    mni : bool
        Draw nilearn's glass brain (MNI only); otherwise maximum-intensity projections
        of the signed map over the mask outline.
    mask : ndarray of bool
        In-brain voxels of the maps' grid (for the projections' outline).
    with_effects : bool
        Draw the effect map beside the regression map.
    threshold : float
        |z| below which the maps are transparent.
    dpi : int
        PNG resolution.
    """

    def __init__(self, bg_img: nib.Nifti1Image, *, mni: bool, mask: np.ndarray, with_effects: bool,
                 threshold: float = 2.0, dpi: int = DEFAULT_DPI) -> None:
        self.bg_img, self.mni, self.mask = bg_img, mni, mask
        self.with_effects, self.threshold, self.dpi = with_effects, threshold, dpi
        self.fig = plt.figure(figsize=(8.6 if with_effects else 4.3, 2.5))
        self.gfig = plt.figure(figsize=(4.3, 2.5))
        self._glass = None
        self._glass_base: set = set()
        self._canon_mask: np.ndarray | None = None

    def render(self, comp_img: nib.Nifti1Image, effect_img: nib.Nifti1Image | None,
               cut_coords: tuple, title: str) -> tuple[bytes, bytes]:
        """PNG bytes of one component's slices (cut through ``cut_coords``, mm) and of its
        glass brain (or projections)."""
        from nilearn import plotting

        fig = self.fig
        fig.clf()
        n = 2 if self.with_effects else 1
        w = 1.0 / n
        views = useful_views(comp_img.shape, comp_img.affine)
        cuts = tuple(float(cut_coords["xyz".index(v)]) for v in views)
        common = dict(bg_img=self.bg_img, threshold=self.threshold, figure=fig, draw_cross=False,
                      black_bg=False, display_mode=_display_mode(views),
                      cut_coords=list(cuts) if len(views) == 1 else cuts,
                      dim=-0.3 if self.mni else 0.0)
        vmax = float(np.nanmax(np.abs(np.asarray(comp_img.dataobj)))) or 1.0
        plotting.plot_stat_map(comp_img, axes=(0, 0, w, 1), title=f"{title} regression map",
                               vmax=vmax, **common)
        if self.with_effects and effect_img is not None:
            evmax = float(np.nanmax(np.abs(np.asarray(effect_img.dataobj)))) or 1.0
            plotting.plot_stat_map(effect_img, axes=(w, 0, w, 1), title="decoder effect map",
                                   vmax=evmax, **common)
        slices = png_bytes(fig, self.dpi)
        if self.mni:
            self._glass_overlay(comp_img, vmax)
        else:
            self.gfig.clf()
            self._projections(comp_img, vmax)
        return slices, png_bytes(self.gfig, self.dpi)

    def _glass_overlay(self, comp_img: nib.Nifti1Image, vmax: float) -> None:
        from nilearn import plotting

        if self._glass is None:
            self._glass = plotting.plot_glass_brain(None, figure=self.gfig, black_bg=False,
                                                    plot_abs=False, title="glass brain")
            self._glass_base = {id(ch) for a in self._glass.axes.values() for ch in a.ax.get_children()}
        for a in self._glass.axes.values():
            for ch in a.ax.get_children():
                if id(ch) not in self._glass_base:
                    ch.remove()
        self._glass.add_overlay(comp_img, threshold=self.threshold, cmap="RdBu_r", vmin=-vmax, vmax=vmax)

    def _projections(self, comp_img: nib.Nifti1Image, vmax: float) -> None:
        """Signed maximum-|z| projections along each world axis (RAS, as the slices), over
        the mask outline, with the voxels' aspect; thin views (see :func:`useful_views`)
        are left out."""
        canon = nib.as_closest_canonical(comp_img)
        data = np.nan_to_num(np.asarray(canon.dataobj, dtype=float))
        if self._canon_mask is None:
            mimg = nib.Nifti1Image(np.asarray(self.mask, np.uint8), comp_img.affine)
            self._canon_mask = np.asarray(nib.as_closest_canonical(mimg).dataobj) > 0
        mask = self._canon_mask
        zooms = np.asarray(canon.header.get_zooms()[:3], float)
        views = useful_views(canon.shape, canon.affine)
        kept = [(axis, name) for axis, name in ((0, "sagittal"), (1, "coronal"), (2, "axial"))
                if "xyz"[axis] in views]
        n = len(kept)
        for a, (axis, name) in enumerate(kept):
            ax = self.gfig.add_axes((a / n + 0.005, 0.04, 1 / n - 0.01, 0.8))
            idx = np.argmax(np.abs(data), axis=axis)
            proj = np.take_along_axis(data, np.expand_dims(idx, axis), axis=axis).squeeze(axis)
            outline = mask.any(axis=axis)
            proj = np.ma.masked_where(np.abs(proj) <= self.threshold, proj)
            rows, cols = [b for b in range(3) if b != axis][::-1]   # image rows: the second axis
            aspect = zooms[rows] / zooms[cols]
            ax.imshow(outline.T, origin="lower", cmap="Greys", vmin=0, vmax=4, interpolation="nearest",
                      aspect=aspect)
            ax.imshow(proj.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                      aspect=aspect)
            ax.set_axis_off()
            ax.set_title(f"max |z|: {name}" if a == n // 2 else name, fontsize=8)

    def close(self) -> None:
        plt.close(self.fig)
        plt.close(self.gfig)


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
        self._drawn = False
        if len(runs) > 1:
            n = min(r.data.shape[0] for r in runs)
            self.group_mean = np.mean([r.data[:n] for r in runs], axis=0)

    def render(self, j: int, name: str) -> bytes:
        """PNG bytes of component ``j``'s signal panels.

        The first call draws the panels; later calls only replace the data of the lines,
        error bars and bands (clearing axes and laying out again costs far more)."""
        if not self._drawn:
            self._draw(j, name)
            self._drawn = True
            self.fig.tight_layout()  # once: the panels do not move afterwards
        else:
            self._update(j, name)
        return png_bytes(self.fig, self.dpi)

    @staticmethod
    def _rescale(ax) -> None:
        ax.relim()
        ax.autoscale_view()

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
            self._rescale(ax)
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
        a = 0
        if self.runs:
            art["tc"].set_ydata(self.run.data[:, j])
            if "tc_mean" in art:
                art["tc_mean"].set_ydata(self.group_mean[:, j])
            art["title"].set_text(f"{name}: time course")
            self._rescale(self.axes[a])
            a += 1
            if "ps" in art:
                art["ps"].set_ydata(self.powers[self.runs.index(self.run)][1:, j])
                if "ps_mean" in art:
                    art["ps_mean"].set_ydata(np.mean([p[1:, j] for p in self.powers], axis=0))
                self._rescale(self.axes[a])
            a += 1
        for i, fac in enumerate(self.factors):
            m, sd = self._factor(fac, j)
            art[f"f{i}"].set_ydata(m)
            art[f"f{i}_err"].set_segments(self._segments(np.arange(len(m)), m, sd))
            ax = self.axes[a]
            finite = np.isfinite(m) & np.isfinite(sd)
            if finite.any():
                lo, hi = float(np.min((m - sd)[finite])), float(np.max((m + sd)[finite]))
                pad = 0.08 * (hi - lo if hi > lo else 1.0)
                ax.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)
            a += 1
        if self.over_time:
            ot = self.over_time
            m, s = ot["mean"][:, j], np.sqrt(np.maximum(ot["var"][:, j], 0))
            art["ot"].set_ydata(m)
            art["ot_band"].remove()
            art["ot_band"] = self._ot_ax.fill_between(ot["t"], m - s, m + s, color=_ORANGE, alpha=0.25, lw=0)
            if "ot_tc" in art:
                art["ot_tc"].set_ydata(self.run.data[:, j])
            self._rescale(self._ot_ax)

    def close(self) -> None:
        plt.close(self.fig)
