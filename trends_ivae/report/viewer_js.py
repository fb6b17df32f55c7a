"""The interactive viewer's script (plain JavaScript, inlined in the page by :mod:`.viewer`).

It reads ``comps`` (per component: ``name``, ``vmax``, ``cut`` and ``codes``, the map as
zlib-compressed uint8 codes in base64) and ``meta`` (the grid's ``shape`` and ``affine``,
the background's codes, the overlay's colour table ``lut``), inflates a volume with the
browser's ``DecompressionStream`` when it is first shown, and draws the sagittal, coronal
and axial cuts on one canvas: background grey levels (code 0: the page's white), the
overlay's colour where its code is above 0 (0: below the threshold), a blue crosshair,
and the colour bar from the ``ivae-cmap`` image. Click or drag moves the cut.
"""
from __future__ import annotations

__all__ = ["VIEWER_JS"]

#: the script; ``__COMPS__`` and ``__META__`` are replaced by JSON
VIEWER_JS = r"""
(function () {
  var comps = __COMPS__;
  var meta = __META__;
  var canvas = document.getElementById("ivae-canvas");
  var box = document.getElementById("ivae-viewer");
  var sel = document.getElementById("ivae-select");
  var cmapImg = document.getElementById("ivae-cmap");
  var ctx = canvas.getContext("2d");
  var nx = meta.shape[0], ny = meta.shape[1], nz = meta.shape[2];
  var views = [{w: ny, h: nz}, {w: nx, h: nz}, {w: nx, h: ny}];
  var BAR = 64, TEXT = 18, scale = 1, offs = [0, 0, 0];
  var bg = null, cache = {}, current = 0, cut = comps[0].cut.slice(), pending = 0;
  function layout() {
    var W = Math.max(320, box.clientWidth || 760);
    scale = (W - BAR) / (ny + 2 * nx);
    canvas.width = W;
    canvas.height = Math.ceil(Math.max(nz, ny) * scale) + TEXT;
    offs = [0, ny * scale, (ny + nx) * scale];
  }
  function bytes(s) {
    var bin = atob(s), a = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
    return a;
  }
  function inflate(s) {
    var stream = new Blob([bytes(s)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (b) { return new Uint8Array(b); });
  }
  function voxel(v, c, a) {  // column c, row a (from the bottom) of view v -> [x, y, z]
    if (v === 0) return [cut[0], c, a];
    if (v === 1) return [c, cut[1], a];
    return [c, a, cut[2]];
  }
  function at(vol, p) { return vol[(p[0] * ny + p[1]) * nz + p[2]]; }
  function drawView(v, ov) {
    var w = views[v].w, h = views[v].h;
    var off = document.createElement("canvas");
    off.width = w; off.height = h;
    var octx = off.getContext("2d"), img = octx.createImageData(w, h), d = img.data;
    for (var r = 0; r < h; r++) {
      for (var c = 0; c < w; c++) {
        var p = voxel(v, c, h - 1 - r), q = (r * w + c) * 4, o = ov ? at(ov, p) : 0;
        if (o > 0) { var col = meta.lut[o]; d[q] = col[0]; d[q + 1] = col[1]; d[q + 2] = col[2]; }
        else { var g = at(bg, p); d[q] = d[q + 1] = d[q + 2] = (g === 0 ? 255 : g); }
        d[q + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, offs[v], 0, w * scale, h * scale);
    var hx = [cut[1], cut[0], cut[0]][v], hy = [cut[2], cut[2], cut[1]][v];
    ctx.strokeStyle = "#0000FF"; ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(offs[v] + (hx + 0.5) * scale, 0); ctx.lineTo(offs[v] + (hx + 0.5) * scale, h * scale);
    ctx.moveTo(offs[v], (h - hy - 0.5) * scale); ctx.lineTo(offs[v] + w * scale, (h - hy - 0.5) * scale);
    ctx.stroke();
  }
  function draw() {
    if (!bg) return;
    var c = comps[current], ov = cache[current] || null;
    ctx.fillStyle = "#FFFFFF"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (var v = 0; v < 3; v++) drawView(v, ov);
    var x0 = canvas.width - BAR + 14, hb = Math.max(nz, ny) * scale - 24;
    if (cmapImg.complete && cmapImg.naturalWidth > 0) {
      ctx.save(); ctx.translate(x0, 12 + hb); ctx.rotate(-Math.PI / 2);
      ctx.drawImage(cmapImg, 0, 0, hb, 12); ctx.restore();
    }
    ctx.fillStyle = "#000000"; ctx.font = "11px sans-serif";
    ctx.fillText(c.vmax.toFixed(1), x0, 10); ctx.fillText((-c.vmax).toFixed(1), x0, 24 + hb);
    var A = meta.affine, w = [0, 1, 2].map(function (i) {
      return A[i][0] * cut[0] + A[i][1] * cut[1] + A[i][2] * cut[2] + A[i][3]; });
    var val = ov ? at(ov, cut) : 0;
    var txt = "x = " + w[0].toFixed(0) + ", y = " + w[1].toFixed(0) + ", z = " + w[2].toFixed(0) + " mm; " +
      (val > 0 ? "z-value " + (((val - 1) / 254 * 2 - 1) * c.vmax).toFixed(2) : "below the threshold");
    ctx.fillText(txt, 4, canvas.height - 4);
  }
  function load(j) {
    if (cache[j] || !bg) { draw(); return; }
    pending += 1;
    inflate(comps[j].codes).then(function (vol) { cache[j] = vol; pending -= 1; if (j === current) draw(); });
  }
  function show(j) {
    var c = comps[j];
    current = j; cut = c.cut.slice();
    sel.value = String(j);
    box.setAttribute("data-component", c.name);
    load(j);
  }
  window.ivaeShow = show;
  function fromHash() {  // links #view-<name> open that component in the viewer
    if (location.hash.indexOf("#view-") !== 0) return;
    var name = decodeURIComponent(location.hash.slice(6));
    for (var j = 0; j < comps.length; j++) { if (comps[j].name === name) { show(j); return; } }
  }
  function pick(ev) {
    var rect = canvas.getBoundingClientRect();
    var px = (ev.clientX - rect.left) * canvas.width / rect.width;
    var py = (ev.clientY - rect.top) * canvas.height / rect.height;
    for (var v = 2; v >= 0; v--) {
      if (px >= offs[v] && px < offs[v] + views[v].w * scale && py < views[v].h * scale) {
        var c = Math.floor((px - offs[v]) / scale), a = views[v].h - 1 - Math.floor(py / scale);
        if (v === 0) { cut[1] = c; cut[2] = a; } else if (v === 1) { cut[0] = c; cut[2] = a; }
        else { cut[0] = c; cut[1] = a; }
        draw(); return;
      }
    }
  }
  var dragging = false;
  canvas.addEventListener("mousedown", function (ev) { dragging = true; pick(ev); });
  canvas.addEventListener("mousemove", function (ev) { if (dragging) pick(ev); });
  window.addEventListener("mouseup", function () { dragging = false; });
  window.addEventListener("hashchange", fromHash);
  sel.addEventListener("change", function () { show(parseInt(sel.value, 10)); });
  document.getElementById("ivae-prev").addEventListener("click", function () {
    show((parseInt(sel.value, 10) + comps.length - 1) % comps.length); });
  document.getElementById("ivae-next").addEventListener("click", function () {
    show((parseInt(sel.value, 10) + 1) % comps.length); });
  cmapImg.addEventListener("load", draw);
  layout();
  show(0);
  fromHash();
  if (typeof DecompressionStream === "undefined") {  // Chrome 80, Firefox 113, Safari 16.4 and later have it
    ctx.fillStyle = "#000000"; ctx.font = "13px sans-serif";
    ctx.fillText("This browser cannot unpack the viewer's maps (no DecompressionStream).", 10, 20);
    return;
  }
  if (typeof DecompressionStream === "undefined") {  // Chrome 80, Firefox 113, Safari 16.4 and later have it
    ctx.fillStyle = "#000000"; ctx.font = "13px sans-serif";
    ctx.fillText("This browser cannot unpack the viewer's maps (no DecompressionStream).", 10, 20);
    return;
  }
  inflate(meta.bg).then(function (vol) { bg = vol; load(current); });
})();
"""
