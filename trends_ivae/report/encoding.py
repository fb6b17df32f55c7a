"""Compact PNG encoding of the report's figures (Pillow), and blitting of reused figures.

Measured on the 50-component benchmark (``benchmarks/report.py``; a 4-panel signal figure
of 1360 x 250 pixels): matplotlib's own PNG (RGBA, 24-bit colour) 128 kB in about 0.15 s;
the same pixels quantised to a palette of 64 colours (Pillow's fast octree) 30 kB in
0.01 s; lossless WebP 45 kB in 0.18 s; WebP at quality 80 33 kB; JPEG at quality 85
66 kB with ringing around text and lines. Plots of a few colours lose nothing visible in
a 64-colour palette, and PNG is what every browser and mail client shows; maps over a
grey background keep a palette of 256 colours.

A figure drawn once and then only partly changed per component is *blitted*
(:class:`Blitter`): its static parts (axes, ticks, outlines) are rendered once and
restored from memory; per component only the changing artists are drawn on top.
"""
from __future__ import annotations

import io
from typing import Any, Iterable

import numpy as np
from PIL import Image

__all__ = ["LINE_COLORS", "MAP_COLORS", "png_from_rgba", "figure_png", "Blitter"]

#: palette size of line plots (curves, spectra, the prior)
LINE_COLORS = 64
#: palette size of maps over a grey background
MAP_COLORS = 256
#: zlib level of the PNGs (measured on a signal figure: level 9 is 8 % smaller than 6 and 6 times slower)
COMPRESS_LEVEL = 6


def png_from_rgba(rgba: np.ndarray, colors: int = LINE_COLORS) -> bytes:
    """A palette PNG of an RGBA (or RGB) uint8 image, flattened on white.

    Parameters
    ----------
    rgba : ndarray (height, width, 3 or 4) of uint8
        The pixels (e.g. a matplotlib Agg canvas's ``buffer_rgba()``).
    colors : int
        Palette size (2 to 256).

    Returns
    -------
    bytes
        The PNG file.
    """
    arr = np.asarray(rgba)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3|4) uint8 image, got {arr.dtype} {arr.shape}")
    if arr.shape[2] == 4:
        if arr[..., 3].min() < 255:   # flatten on white
            alpha = arr[..., 3:4].astype(np.uint16)
            arr = ((arr[..., :3] * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)
        else:
            arr = arr[..., :3]
    img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    pal = img.quantize(colors=int(np.clip(colors, 2, 256)), method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=False, compress_level=COMPRESS_LEVEL)
    return buf.getvalue()


def figure_png(fig: Any, dpi: float, colors: int = LINE_COLORS) -> bytes:
    """Draw ``fig`` at ``dpi`` (white background) and encode it with :func:`png_from_rgba`."""
    fig.set_dpi(dpi)
    fig.patch.set_facecolor("white")
    fig.canvas.draw()
    return png_from_rgba(np.asarray(fig.canvas.buffer_rgba()), colors)


class Blitter:
    """Render a figure's static parts once, then only its changing artists.

    Parameters
    ----------
    fig : matplotlib Figure
        On an Agg canvas, laid out and complete (its artists in place).
    dynamic : iterable of Artist
        The artists that change from one frame to the next (lines, images, titles, an
        axis whose ticks move); they are left out of the stored background.
    dpi : float
        Resolution of the frames.
    """

    def __init__(self, fig: Any, dynamic: Iterable[Any], dpi: float) -> None:
        self.fig, self.dpi = fig, dpi
        self.dynamic = list(dynamic)
        fig.set_dpi(dpi)
        fig.patch.set_facecolor("white")
        for a in self.dynamic:
            a.set_animated(True)          # a full draw skips animated artists
        fig.canvas.draw()
        self.background = fig.canvas.copy_from_bbox(fig.bbox)

    def add(self, artist: Any) -> None:
        """A new changing artist (e.g. a band that is replaced per frame)."""
        artist.set_animated(True)
        self.dynamic.append(artist)

    def remove(self, artist: Any) -> None:
        """Forget a changing artist (after ``artist.remove()``)."""
        self.dynamic = [a for a in self.dynamic if a is not artist]

    def frame(self, colors: int = LINE_COLORS) -> bytes:
        """The background with every changing artist drawn over it, as a palette PNG."""
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        for a in self.dynamic:
            if a.get_visible() and a.figure is not None:
                self.fig.draw_artist(a)
        return png_from_rgba(np.asarray(canvas.buffer_rgba()), colors)
