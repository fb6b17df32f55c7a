"""The map figures of each component: orthogonal slices, and a glass brain or projections.

Built once and blitted (:class:`.encoding.Blitter`): the layout, the colour bars, the
glass brain's outline (thousands of patches) and the projections' mask outline are
drawn once; per component only the slices' images, the overlays and a few texts are
drawn over that background and encoded as a palette PNG. The slices are cut from the
arrays directly (no resampling): the background and the maps each keep their own grid
(in RAS orientation, ``nibabel.as_closest_canonical``) and are placed by their world
extents, as nilearn's ``plot_stat_map`` places them. The MNI glass brain is nilearn's:
its first overlay is drawn by ``add_overlay`` and the later ones replace that overlay's
data with nilearn's own projection (``transform_to_2d``) of each map.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from .encoding import MAP_COLORS, Blitter  # noqa: E402
from .figures import DEFAULT_DPI, useful_views  # noqa: E402

__all__ = ["MapFigure", "world_extent"]

#: the plane of each cut: (world axes shown across, up)
_PLANES = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}
_LETTERS = {"x": ("P", "A"), "y": ("L", "R"), "z": ("L", "R")}


def world_extent(img: nib.Nifti1Image) -> np.ndarray:
    """(3, 2) world bounds (mm, voxel edges) of an image in RAS voxel order."""
    aff = img.affine
    n = np.asarray(img.shape[:3], float)
    step = np.diag(aff)[:3]
    lo = aff[:3, 3] - 0.5 * step
    return np.sort(np.stack([lo, lo + n * step], axis=1), axis=1)


def _index(img_affine: np.ndarray, shape: tuple, xyz: tuple) -> np.ndarray:
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(img_affine), xyz)).astype(int)
    return np.clip(ijk, 0, np.asarray(shape[:3]) - 1)


class _Slices:
    """Orthogonal slices of one or two maps over a background, one colour bar per map.

    Each panel is one RGBA image composed here (the background's grey levels,
    transparent outside the head, the map's colours where ``|z|`` passes the threshold), on the
    background's grid: the map is placed on it by nearest neighbour (index tables from
    the two grids' affines, built once), so that matplotlib draws one image per panel.
    """

    def __init__(self, fig, bg: nib.Nifti1Image, views: str, titles: list, *, mni: bool) -> None:
        self.bg = bg
        self.bgd = np.nan_to_num(np.asarray(bg.dataobj, dtype=np.float32))
        self.views, self.ext = views, world_extent(bg)
        pos = self.bgd[self.bgd > 0]
        hi = float(np.percentile(pos, 99.5)) if pos.size else 1.0
        floor = 0.05 * hi   # below: outside the head, shown as the page's white
        top = hi * (1.4 if mni else 1.0)   # the template dimmed, as nilearn's dim
        grey = np.clip(np.rint(self.bgd / top * 255), 0, 255).astype(np.uint8)
        self.bg_rgb = np.concatenate([np.repeat(grey[..., None], 3, axis=-1),
                                      np.full(grey.shape + (1,), 255, np.uint8)], axis=-1)
        self.bg_rgb[self.bgd <= floor, 3] = 0   # transparent: the letters drawn under it show
        self.lut = np.rint(255 * plt.get_cmap("RdBu_r")(np.linspace(0, 1, 256))).astype(np.uint8)
        self._tables: dict = {}
        n_maps = len(titles)
        self.images, self.texts, self.maps = [], [], []
        w_map = 1.0 / n_maps
        widths = [self.ext[_PLANES[v][0], 1] - self.ext[_PLANES[v][0], 0] for v in views]
        for m in range(n_maps):
            x0, usable = m * w_map + 0.005, w_map - 0.05    # room for the colour bar
            panels, x = [], x0
            for v, wv in zip(views, widths):
                ax = fig.add_axes((x, 0.02, usable * wv / sum(widths), 0.8))
                x += usable * wv / sum(widths)
                a, b = _PLANES[v]
                ax.set_axis_off()
                im = ax.imshow(np.zeros((2, 2, 4), np.uint8), origin="lower",
                               extent=(*self.ext[a], *self.ext[b]), interpolation="nearest")
                ax.set_xlim(*self.ext[a])
                ax.set_ylim(*self.ext[b])
                ax.set_aspect("equal", adjustable="box")
                lo, hi2 = _LETTERS[v]
                for xt, t in ((0.02, lo), (0.98, hi2)):
                    ax.text(xt, 0.5, t, transform=ax.transAxes, fontsize=7, ha="left" if xt < .5 else "right",
                            va="center", color="#444444")
                panels.append((v, im))
                self.images.append(im)
            cax = fig.add_axes((m * w_map + w_map - 0.035, 0.12, 0.008, 0.6))
            cax.imshow(np.linspace(0, 1, 128)[:, None], cmap="RdBu_r", origin="lower", aspect="auto")
            cax.set_axis_off()
            top_t = cax.text(0.5, 1.04, "", transform=cax.transAxes, fontsize=6, ha="center", va="bottom")
            bottom_t = cax.text(0.5, -0.04, "", transform=cax.transAxes, fontsize=6, ha="center", va="top")
            title = fig.text(m * w_map + 0.01, 0.97, "", fontsize=9, va="top")
            self.texts += [top_t, bottom_t, title]
            self.maps.append({"panels": panels, "top": top_t, "bottom": bottom_t, "title": title})

    def _table(self, img: nib.Nifti1Image) -> tuple:
        """Per world axis: the map's voxel under each background voxel, and whether it lies
        inside the map's grid (nearest neighbour; built once per grid)."""
        key = (img.shape[:3], tuple(np.round(img.affine, 4).ravel()))
        if key not in self._tables:
            idx, ok = [], []
            for ax in range(3):
                world = self.bg.affine[ax, ax] * np.arange(self.bgd.shape[ax]) + self.bg.affine[ax, 3]
                i = np.rint((world - img.affine[ax, 3]) / img.affine[ax, ax]).astype(int)
                ok.append((i >= 0) & (i < img.shape[ax]))
                idx.append(np.clip(i, 0, img.shape[ax] - 1))
            self._tables[key] = (idx, ok)
        return self._tables[key]

    def show(self, m: int, img: nib.Nifti1Image, xyz: tuple, vmax: float, title: str, threshold: float) -> None:
        d = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
        ijk = _index(img.affine, d.shape, xyz)
        ijk_bg = _index(self.bg.affine, self.bgd.shape, xyz)
        (ia, ib, ic), ok = self._table(img)
        idx = (ia, ib, ic)
        entry = self.maps[m]
        for v, im in entry["panels"]:
            axis = "xyz".index(v)
            a, b = _PLANES[v]
            rgb = np.take(self.bg_rgb, ijk_bg[axis], axis=axis)            # (n_a, n_b, 4)
            plane = np.take(d, ijk[axis], axis=axis)[np.ix_(idx[a], idx[b])]
            show = (np.abs(plane) > threshold) & np.outer(ok[a], ok[b])
            if show.any():
                codes = np.clip(np.rint((plane[show] / vmax + 1) * 127.5), 0, 255).astype(np.intp)
                rgb = rgb.copy()
                rgb[show] = self.lut[codes]
            im.set_data(rgb.transpose(1, 0, 2))
        entry["top"].set_text(f"{vmax:.1f}")
        entry["bottom"].set_text(f"{-vmax:.1f}")
        entry["title"].set_text(f"{title} (x={xyz[0]:.0f}, y={xyz[1]:.0f}, z={xyz[2]:.0f})")


class MapFigure:
    """Regression map and decoder-effect map (orthogonal slices), and a glass brain.

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
        self.bg_img, self.mni, self.mask = nib.as_closest_canonical(bg_img), mni, mask
        self.with_effects, self.threshold, self.dpi = with_effects, threshold, dpi
        self.fig = plt.figure(figsize=(8.6 if with_effects else 4.3, 2.5))
        self.gfig = plt.figure(figsize=(4.3, 2.5))
        self._slices: _Slices | None = None
        self._blit: Blitter | None = None
        self._gblit: Blitter | None = None
        self._glass = None
        self._gimages: list = []

    def render(self, comp_img: nib.Nifti1Image, effect_img: nib.Nifti1Image | None,
               cut_coords: tuple, title: str) -> tuple[bytes, bytes]:
        """PNG bytes of one component's slices (cut through ``cut_coords``, mm) and of its
        glass brain (or projections)."""
        canon = nib.as_closest_canonical(comp_img)
        vmax = float(np.nanmax(np.abs(np.asarray(canon.dataobj)))) or 1.0
        effect = effect_img is not None and self.with_effects
        if self._slices is None:
            views = useful_views(comp_img.shape, comp_img.affine)
            titles = ["regression", "effect"] if effect else ["regression"]
            self._slices = _Slices(self.fig, self.bg_img, views, titles, mni=self.mni)
        xyz = tuple(float(v) for v in cut_coords)
        self._slices.show(0, canon, xyz, vmax, f"{title} regression map", self.threshold)
        if effect:
            ecanon = nib.as_closest_canonical(effect_img)
            evmax = float(np.nanmax(np.abs(np.asarray(ecanon.dataobj)))) or 1.0
            self._slices.show(1, ecanon, xyz, evmax, "decoder effect map", self.threshold)
        if self._blit is None:
            self._blit = Blitter(self.fig, self._slices.images + self._slices.texts, self.dpi)
        slices = self._blit.frame(MAP_COLORS)
        if self.mni:
            self._glass_overlay(comp_img, canon, vmax)
        else:
            self._projections(comp_img, canon, vmax)
        return slices, self._gblit.frame(MAP_COLORS)

    def _glass_overlay(self, comp_img: nib.Nifti1Image, canon: nib.Nifti1Image, vmax: float) -> None:
        from nilearn import plotting
        from nilearn.image import reorder_img

        if self._glass is None:
            self._glass = plotting.plot_glass_brain(None, figure=self.gfig, black_bg=False,
                                                    plot_abs=False, title="glass brain")
            base = {id(ch) for a in self._glass.axes.values() for ch in a.ax.get_children()}
            self._glass.add_overlay(comp_img, threshold=self.threshold, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            self._gimages = [(a, ch) for a in self._glass.axes.values() for ch in a.ax.get_children()
                             if id(ch) not in base and isinstance(ch, matplotlib.image.AxesImage)]
            self._gblit = Blitter(self.gfig, [im for _, im in self._gimages], self.dpi)
            return
        aff = canon.affine[:3, :3]
        img = canon if np.allclose(aff, np.diag(np.diag(aff))) and (np.diag(aff) > 0).all() \
            else reorder_img(comp_img, resample="continuous")   # what add_overlay draws
        data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
        for display_ax, im in self._gimages:
            d2 = display_ax.transform_to_2d(data, img.affine)
            im.set_data(np.ma.masked_where(np.abs(d2) <= self.threshold, d2))
            im.set_clim(-vmax, vmax)

    def _projections(self, comp_img: nib.Nifti1Image, canon: nib.Nifti1Image, vmax: float) -> None:
        """Signed maximum-|z| projections along each world axis (RAS, as the slices), over
        the mask outline, with the voxels' aspect; thin views (see :func:`useful_views`)
        are left out."""
        data = np.nan_to_num(np.asarray(canon.dataobj, dtype=float))
        if self._gblit is None:
            self._setup_projections(comp_img.affine, canon)
        for axis, im in self._gimages:
            idx = np.argmax(np.abs(data), axis=axis)
            proj = np.take_along_axis(data, np.expand_dims(idx, axis), axis=axis).squeeze(axis)
            im.set_data(np.ma.masked_where(np.abs(proj) <= self.threshold, proj).T)
            im.set_clim(-vmax, vmax)

    def _setup_projections(self, affine: np.ndarray, canon: nib.Nifti1Image) -> None:
        mimg = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(self.mask, np.uint8), affine))
        mask = np.asarray(mimg.dataobj) > 0
        zooms = np.asarray(canon.header.get_zooms()[:3], float)
        views = useful_views(canon.shape, canon.affine)
        kept = [(axis, name) for axis, name in ((0, "sagittal"), (1, "coronal"), (2, "axial"))
                if "xyz"[axis] in views]
        n = len(kept)
        for a, (axis, name) in enumerate(kept):
            ax = self.gfig.add_axes((a / n + 0.005, 0.04, 1 / n - 0.01, 0.8))
            rows, cols = [b for b in range(3) if b != axis][::-1]   # image rows: the second axis
            aspect = zooms[rows] / zooms[cols]
            ax.imshow(mask.any(axis=axis).T, origin="lower", cmap="Greys", vmin=0, vmax=4,
                      interpolation="nearest", aspect=aspect)
            shape2 = mask.any(axis=axis).T.shape
            im = ax.imshow(np.ma.masked_all(shape2), origin="lower", cmap="RdBu_r", interpolation="nearest",
                           aspect=aspect)
            ax.set_axis_off()
            ax.set_title(f"max |z|: {name}" if a == n // 2 else name, fontsize=8)
            self._gimages.append((axis, im))
        self._gblit = Blitter(self.gfig, [im for _, im in self._gimages], self.dpi)

    def close(self) -> None:
        plt.close(self.fig)
        plt.close(self.gfig)
