"""An interactive slice viewer of all group maps with a component selector.

nilearn's ``view_img`` makes one full page per map, with its own copy of the background
and of the JavaScript, and its page template links a favicon on github.com (an external
request); a brainsprite viewer needs one RGBA sprite image per map. This viewer carries
each map as a compact array instead: the map on the viewer's grid as uint8 codes (0 below
the threshold, 1-255 across the colour range), zlib-compressed and base64-encoded, and
one background volume the same way; a short script (:mod:`.viewer_js`) inflates a map
when it is first shown and draws the three cuts on a canvas, client-side.
"""
from __future__ import annotations

import base64
import html
import io
import json
import zlib

import matplotlib
import nibabel as nib
import numpy as np

from .viewer_js import VIEWER_JS

__all__ = ["overlay_codes", "viewer_html"]


def _codes_b64(codes: np.ndarray) -> str:
    """A uint8 volume, zlib-compressed (the browser's ``DecompressionStream("deflate")``
    inflates it) and base64-encoded, in C order (x slowest, z fastest)."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(codes, np.uint8).tobytes(), 6)).decode("ascii")


def overlay_codes(data: np.ndarray, vmax: float, threshold: float) -> np.ndarray:
    """A map as uint8 codes: 0 where ``|z| <= threshold`` (transparent), else 1 to 255
    for ``-vmax`` to ``vmax`` (the colour table's index; a code never rounds to 0)."""
    scaled = np.clip(np.nan_to_num(data) / vmax, -1.0, 1.0)
    codes = (1 + np.rint((scaled + 1.0) * 127.0)).astype(np.uint8)
    codes[~(np.abs(np.nan_to_num(data)) > threshold)] = 0
    return codes


def _png_b64(arr: np.ndarray, cmap, vmin: float, vmax: float) -> str:
    buf = io.BytesIO()
    matplotlib.pyplot.imsave(buf, arr, cmap=cmap, vmin=vmin, vmax=vmax, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _axis_aligned(img: nib.Nifti1Image) -> nib.Nifti1Image | None:
    """``img`` with its axes flipped and permuted to a positive diagonal affine (exact,
    no interpolation); None when the affine is oblique."""
    from nilearn.image import reorder_img

    try:
        return reorder_img(img, resample=None, copy_header=True)
    except TypeError:  # nilearn < 0.11
        try:
            return reorder_img(img, resample=None)
        except ValueError:
            return None
    except ValueError:
        return None


def _iso_nearest(img: nib.Nifti1Image, voxel_size: float) -> nib.Nifti1Image:
    """An axis-aligned image on an isotropic grid of ``voxel_size`` mm covering the same
    box, by nearest neighbour: with ``voxel_size`` at most the smallest voxel size every
    source voxel is kept (a one-slice volume stays one slice thick)."""
    data = np.asarray(img.dataobj)
    zooms = np.abs(np.diag(img.affine)[:3])
    idx = []
    for n, z in zip(data.shape[:3], zooms):
        m = max(1, int(round(n * z / voxel_size)))
        idx.append(np.minimum(((np.arange(m) + 0.5) * n / m).astype(int), n - 1))
    out = data[np.ix_(*idx)] if data.ndim == 3 else data[np.ix_(*idx, np.arange(data.shape[3]))]
    aff = np.eye(4)
    step = np.array([n * z / len(i) for n, z, i in zip(data.shape[:3], zooms, idx)])
    aff[:3, :3] = np.diag(step)
    aff[:3, 3] = img.affine[:3, 3] - 0.5 * zooms + 0.5 * step
    return nib.Nifti1Image(out, aff)


def _viewer_grid(maps_img: nib.Nifti1Image, bg_img: nib.Nifti1Image,
                 voxel_size: float | None) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Maps and background on one isotropic grid with a positive diagonal affine (what
    the viewer's script reads).

    Maps on an axis-aligned grid keep their own grid: flipped to a positive diagonal and,
    when anisotropic, repeated by nearest neighbour to the smallest voxel size (or
    ``voxel_size`` when given and smaller), so that every voxel, a one-slice volume
    included, shows with its own value; the background is resampled onto that grid.
    Oblique maps are resampled (nearest) onto the background's bounding box at
    ``voxel_size`` (default the smallest voxel size of the maps, at least 2 mm).
    """
    from nilearn.image import resample_img, resample_to_img

    try:  # nilearn >= 0.11 warns unless these are given
        resample_to_img(bg_img, bg_img, force_resample=True, copy_header=True)
        kw = {"force_resample": True, "copy_header": True}
    except TypeError:
        kw = {}
    aligned = _axis_aligned(maps_img) if voxel_size is None else None
    if aligned is not None:
        vs = float(np.abs(np.diag(aligned.affine)[:3]).min())
        maps = _iso_nearest(aligned, vs)
        ref = nib.Nifti1Image(np.zeros(maps.shape[:3], np.float32), maps.affine)
        bg = None
        if bg_img.shape[:3] == maps_img.shape[:3] and np.allclose(bg_img.affine, maps_img.affine):
            bg_al = _axis_aligned(bg_img)
            bg = _iso_nearest(bg_al, vs) if bg_al is not None else None
        if bg is None:
            bg = resample_to_img(bg_img, ref, interpolation="continuous", **kw)
        return maps, bg
    if voxel_size is None:
        voxel_size = max(2.0, float(min(maps_img.header.get_zooms()[:3])))
    bg = resample_img(bg_img, target_affine=np.diag([voxel_size] * 3), interpolation="continuous", **kw)
    maps = resample_to_img(maps_img, bg, interpolation="nearest", **kw)
    return maps, bg


def viewer_html(maps_img: nib.Nifti1Image, bg_img: nib.Nifti1Image, names: list, *,
                threshold: float = 2.0, voxel_size: float | None = None,
                peaks_mm: list | None = None, width: int = 760) -> str:
    """HTML (a ``<div>`` with an inline script) of the slice viewer of all components.

    Parameters
    ----------
    maps_img : Nifti1Image
        4-D group maps.
    bg_img : Nifti1Image
        3-D background (template or mean image).
    names : list of str
        Component names, one per volume of ``maps_img``.
    threshold : float
        |z| below which the overlay is transparent.
    voxel_size : float, optional
        Isotropic voxel size (mm) of the viewer grid (see :func:`_viewer_grid`).
    peaks_mm : list of 3-tuples, optional
        Cut of each component (world mm); default its peak.
    width : int
        Width of the viewer in pixels.

    Returns
    -------
    str
        An HTML fragment with no external reference.
    """
    import matplotlib.pyplot as plt

    maps, bg = _viewer_grid(maps_img, bg_img, voxel_size)
    bgd = np.nan_to_num(np.asarray(bg.dataobj, dtype=float))
    mdata = np.nan_to_num(np.asarray(maps.dataobj, dtype=np.float32))
    if mdata.ndim == 3:
        mdata = mdata[..., None]
    pos = bgd[bgd > 1e-6]
    # interpolation leaves a faint rim around the head: show it as the page background
    floor = 0.05 * float(np.percentile(pos, 99)) if pos.size else 1e-6
    kept = bgd[bgd > floor]
    lo, hi = (np.percentile(kept, [2, 99.5]) if kept.size else (0.0, 1.0))
    hi = hi if hi > lo else lo + 1
    bg_codes = (1 + np.rint(np.clip((bgd - lo) / (hi - lo), 0, 1) * 254)).astype(np.uint8)
    bg_codes[bgd <= floor] = 0                                   # the page's white
    cmap = plt.get_cmap("RdBu_r")
    cm_b64 = _png_b64(np.linspace(0, 1, 256)[None, :], cmap, 0, 1)
    lut = np.rint(255 * cmap((np.arange(256) - 1) / 254.0)[:, :3]).astype(int)
    inv = np.linalg.inv(bg.affine)
    shape = np.array(bgd.shape)
    comps = []
    # the colour range covers the map itself, not only what the resampled grid kept
    src = np.abs(np.asarray(maps_img.dataobj, dtype=np.float32))
    src_max = np.nanmax(src.reshape(-1, src.shape[3]) if src.ndim == 4 else src.reshape(-1, 1), axis=0)
    del src
    for j, name in enumerate(names):
        d = mdata[..., j]
        vmax = float(max(np.nan_to_num(src_max[j]), np.abs(d).max())) or 1.0
        if peaks_mm is not None:
            ijk = np.rint(nib.affines.apply_affine(inv, peaks_mm[j])).astype(int)
        else:
            ijk = np.array(np.unravel_index(int(np.argmax(np.abs(d))), d.shape))
        ijk = np.clip(ijk, 0, shape - 1)
        comps.append({"name": str(name), "vmax": float(np.ceil(vmax * 1000) / 1000),
                      "cut": [int(v) for v in ijk], "codes": _codes_b64(overlay_codes(d, vmax, threshold))})
    meta = {"shape": [int(n) for n in shape], "affine": bg.affine.tolist(), "lut": lut.tolist(),
            "bg": _codes_b64(bg_codes)}
    thin = {v: int(n) for v, n in zip("xyz", shape) if n <= 3}
    note = ""
    if thin:   # the viewer always draws three views: say which ones are lines
        planes = {"sagittal": "yz", "coronal": "xz", "axial": "xy"}
        flat = [v for v, axes in planes.items() if any(t in axes for t in thin)]
        kept = [v for v in planes if v not in flat]
        note = (f'<p class="muted">A thin volume ({"×".join(str(int(n)) for n in shape)} voxels on the '
                f"viewer's grid): the {' and '.join(flat)} view{'s are' if len(flat) > 1 else ' is'} "
                f"{min(thin.values())} voxel{'s' if min(thin.values()) > 1 else ''} thin"
                + (f"; read the {' and '.join(kept)} view{'s' if len(kept) > 1 else ''}." if kept else ".")
                + "</p>")
    anchors = "".join(f'<span id="view-{html.escape(c["name"])}"></span>' for c in comps)
    options = "\n".join(f'<option value="{j}">{html.escape(c["name"])}</option>' for j, c in enumerate(comps))
    script = VIEWER_JS.replace("__COMPS__", json.dumps(comps)).replace("__META__", json.dumps(meta))
    return f"""
{anchors}<div class="viewer-controls">
  <label for="ivae-select">component</label>
  <button type="button" id="ivae-prev" aria-label="previous component">&#9664;</button>
  <select id="ivae-select">{options}</select>
  <button type="button" id="ivae-next" aria-label="next component">&#9654;</button>
  <span class="muted">click or drag in the slices to move the cut; |z| &gt; {threshold:g} shown</span>
</div>
{note}<div id="ivae-viewer" data-component="{html.escape(comps[0]['name'])}" style="width:{int(width)}px;max-width:100%">
  <canvas id="ivae-canvas"></canvas>
</div>
<div style="display:none">
  <img id="ivae-cmap" src="data:image/png;base64,{cm_b64}" alt="colour map">
</div>
<script>{script}</script>
"""
