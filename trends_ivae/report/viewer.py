"""An interactive slice viewer of all group maps with a component selector.

nilearn's ``view_img`` makes one full page per map, with its own copy of the background
and of the JavaScript, and its page template links a favicon on github.com (an external
request). This module builds one viewer instead: nilearn's own ``brainsprite.min.js``
(read from the installed nilearn, inlined), one background sprite, and one overlay
sprite per component (PNG, base64); the selector swaps the overlay, its colour range and
the cut. The sprites follow nilearn's layout (sagittal slices in a grid, positive
diagonal affine), so brainsprite reads them as it reads ``view_img``'s.
"""
from __future__ import annotations

import base64
import html
import io
import json
from functools import lru_cache
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np

__all__ = ["brainsprite_js", "viewer_html"]


@lru_cache(maxsize=1)
def brainsprite_js() -> str | None:
    """The brainsprite library shipped with nilearn (None when not found)."""
    import nilearn

    root = Path(nilearn.__file__).parent
    for rel in ("_assets/js/brainsprite.min.js", "plotting/data/js/brainsprite.min.js"):
        if (root / rel).is_file():
            return (root / rel).read_text()
    found = sorted(root.rglob("brainsprite.min.js"))
    return found[0].read_text() if found else None


def _to_sprite(data: np.ndarray) -> np.ndarray:
    """Sagittal slices of a 3-D array in a grid (nilearn's ``_data_to_sprite`` layout)."""
    nx, ny, nz = data.shape
    nrows = int(np.ceil(np.sqrt(nx)))
    ncols = int(np.ceil(nx / float(nrows)))
    sprite = np.zeros((nrows * nz, ncols * ny), dtype=data.dtype)
    if np.ma.isMaskedArray(data):
        sprite = np.ma.masked_all((nrows * nz, ncols * ny), dtype=data.dtype)
    for xx in range(nx):
        r, c = divmod(xx, ncols)
        sprite[r * nz:(r + 1) * nz, c * ny:(c + 1) * ny] = data[xx, :, ::-1].T
    return sprite


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
    brainsprite reads).

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
    """HTML (a ``<div>`` with inline scripts) of a brainsprite viewer for all components.

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
        An HTML fragment with no external reference; empty when brainsprite is missing.
    """
    js = brainsprite_js()
    if js is None:
        return ""
    import matplotlib.pyplot as plt

    maps, bg = _viewer_grid(maps_img, bg_img, voxel_size)
    bgd = np.nan_to_num(np.asarray(bg.dataobj, dtype=float))
    mdata = np.nan_to_num(np.asarray(maps.dataobj, dtype=float))
    if mdata.ndim == 3:
        mdata = mdata[..., None]
    pos = bgd[bgd > 1e-6]
    # interpolation leaves a faint rim around the head: show it as the page background
    floor = 0.05 * float(np.percentile(pos, 99)) if pos.size else 1e-6
    kept = bgd[bgd > floor]
    lo, hi = (np.percentile(kept, [2, 99.5]) if kept.size else (0.0, 1.0))
    gray = plt.get_cmap("gray").with_extremes(bad="white")
    bg_sprite = _to_sprite(np.ma.masked_less_equal(bgd, floor))
    bg_b64 = _png_b64(bg_sprite, gray, lo, hi if hi > lo else lo + 1)
    cmap = plt.get_cmap("RdBu_r")
    cm_b64 = _png_b64(np.linspace(0, 1, 256)[None, :], cmap, 0, 1)
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
        over = np.ma.masked_where(np.abs(d) <= threshold, d)
        if peaks_mm is not None:
            ijk = np.rint(nib.affines.apply_affine(inv, peaks_mm[j])).astype(int)
        else:
            ijk = np.array(np.unravel_index(int(np.argmax(np.abs(d))), d.shape))
        ijk = np.clip(ijk, 0, shape - 1)
        comps.append({"name": str(name), "png": _png_b64(_to_sprite(over), cmap, -vmax, vmax),
                      "vmax": float(np.ceil(vmax * 1000) / 1000), "cut": [int(v) for v in ijk]})
    shift = np.eye(4)
    shift[:3, 3] = -1.0
    params = {
        "canvas": "ivae-canvas", "sprite": "ivae-bg",
        "nbSlice": {"X": int(shape[0]), "Y": int(shape[1]), "Z": int(shape[2])},
        "overlay": {"sprite": "ivae-overlay",
                    "nbSlice": {"X": int(shape[0]), "Y": int(shape[1]), "Z": int(shape[2])},
                    "opacity": 1},
        "colorBackground": "#FFFFFF", "colorFont": "#000000", "crosshair": True,
        "affine": (bg.affine @ shift).tolist(), "flagCoordinates": True, "title": None,
        "flagValue": False, "numSlice": dict(zip("XYZ", comps[0]["cut"])),
        "radiological": False, "showLR": True,
        "colorMap": {"img": "ivae-cmap", "min": -comps[0]["vmax"], "max": comps[0]["vmax"]},
    }
    thin = {v: int(n) for v, n in zip("xyz", shape) if n <= 3}
    note = ""
    if thin:   # brainsprite always draws three views: say which ones are lines
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
    data_js = json.dumps([{k: c[k] for k in ("name", "png", "vmax", "cut")} for c in comps])
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
  <img id="ivae-bg" src="data:image/png;base64,{bg_b64}" alt="background sprite">
  <img id="ivae-cmap" src="data:image/png;base64,{cm_b64}" alt="colour map">
  <img id="ivae-overlay" src="data:image/png;base64,{comps[0]['png']}" alt="overlay sprite">
</div>
<script>{js}</script>
<script>
(function () {{
  var comps = {data_js};
  var params = {json.dumps(params)};
  var brain = null;
  var ids = ["ivae-bg", "ivae-overlay", "ivae-cmap"];
  function start() {{
    if (brain) return;
    brain = brainsprite(params);
    fromHash();
  }}
  var sel = document.getElementById("ivae-select");
  function show(j) {{
    var c = comps[j];
    sel.value = String(j);
    if (!brain) return;
    brain.colorMap.min = -c.vmax; brain.colorMap.max = c.vmax;
    brain.numSlice.X = c.cut[0]; brain.numSlice.Y = c.cut[1]; brain.numSlice.Z = c.cut[2];
    document.getElementById("ivae-overlay").src = "data:image/png;base64," + c.png;
    document.getElementById("ivae-viewer").setAttribute("data-component", c.name);
  }}
  window.ivaeShow = show;
  function fromHash() {{  // links #view-<name> open that component in the viewer
    if (location.hash.indexOf("#view-") !== 0) return;
    var name = decodeURIComponent(location.hash.slice(6));
    for (var j = 0; j < comps.length; j++) {{ if (comps[j].name === name) {{ show(j); return; }} }}
  }}
  window.addEventListener("hashchange", fromHash);
  var imgs = ids.map(function (i) {{ return document.getElementById(i); }});
  function allLoaded() {{ return imgs.every(function (im) {{ return im.complete && im.naturalWidth > 0; }}); }}
  if (allLoaded()) {{ start(); }} else {{
    imgs.forEach(function (im) {{ im.addEventListener("load", function () {{ if (allLoaded()) start(); }}); }});
  }}
  sel.addEventListener("change", function () {{ show(parseInt(sel.value, 10)); }});
  document.getElementById("ivae-prev").addEventListener("click", function () {{
    show((parseInt(sel.value, 10) + comps.length - 1) % comps.length); }});
  document.getElementById("ivae-next").addEventListener("click", function () {{
    show((parseInt(sel.value, 10) + 1) % comps.length); }});
}})();
</script>
"""
