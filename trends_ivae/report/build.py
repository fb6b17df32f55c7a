"""Build ``OUT/report.html`` from a ``trends-ivae fit`` output folder.

The page is one self-contained file: figures are base64 palette PNGs, the interactive
viewer's JavaScript and its maps (compact arrays) are inline, the CSS is inline, and
nothing refers to a network address. Sections: summary, training curve, component table
(peaks, atlas regions), interactive viewer, and one section per component (maps, glass
brain, time course, spectrum, learned prior). See ``docs/report.md``.
"""
from __future__ import annotations

import base64
import html
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from ..atomic import write_text_atomic
from ..export.fit_outputs import early_stopping, early_stopping_note
from .labels import label_columns
from .results import FitResults, is_melodic_folder, load_results

__all__ = ["build_report", "default_report_path", "MELODIC_REPORT"]

log = logging.getLogger("trends_ivae.report")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243b53;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#cfd8e3;font-size:13px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;z-index:5;font-size:13px}
nav a{margin-right:14px;color:#243b53;text-decoration:none} nav a:hover{text-decoration:underline}
main{padding:8px 28px 40px;max-width:1400px}
h2{border-bottom:2px solid #243b53;padding-bottom:3px;margin-top:28px}
h3{margin:4px 0 6px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}
table.summary th{width:190px}
table.comps td.num{text-align:right;font-variant-numeric:tabular-nums}
.comp{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;margin:14px 0}
section img{max-width:100%;height:auto}
.comp img{max-width:100%;height:auto;display:block;margin:4px 0}
.comp .maps{display:flex;flex-wrap:wrap;gap:4px;align-items:flex-start}
.comp .maps img{display:inline-block;max-width:66%}
.comp .maps img+img{max-width:33%}
.facts{font-size:13px;color:#444;margin:0 0 4px}
.muted{color:#777;font-size:12px}
.notes li{color:#8a5a00;font-size:13px}
.viewer-controls{margin:6px 0;font-size:13px}
.viewer-controls select,.viewer-controls button{font-size:13px;margin:0 3px}
"""


def _img_tag(png: bytes, alt: str, cls: str = "", dpi: int | None = None) -> str:
    """An inline PNG; with ``dpi``, shown at the figure's size in inches (``CSS_DPI`` CSS
    pixels per inch; smaller where the page is narrower)."""
    b64 = base64.b64encode(png).decode("ascii")
    c = f' class="{cls}"' if cls else ""
    size = ""
    if dpi and png[12:16] == b"IHDR":
        from .figures import CSS_DPI

        w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        size = f' width="{round(w * CSS_DPI / dpi)}" height="{round(h * CSS_DPI / dpi)}"'
    return f'<img{c}{size} src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x, digits) for x in v)
    return str(v)


def _levels(levels: list, n: int = 8) -> str:
    shown = ", ".join(map(str, levels[:n]))
    return shown + (f", … ({len(levels)} levels)" if len(levels) > n else f" ({len(levels)} levels)")


def _input_files(res: FitResults) -> list:
    if res.prepared is not None:
        files = [r.get("file") for r in res.prepared.runs if r.get("file")]
        if files:
            return files
    args = res.config.get("arguments", {})
    if args.get("func"):
        return list(args["func"])
    import json

    out = []
    for f in sorted(res.out_dir.glob("sub-*/**/*_desc-ivae_timeseries.json")):
        try:
            out += json.loads(f.read_text()).get("Sources", [])
        except (OSError, ValueError):
            pass
    return out


def _summary_rows(res: FitResults, space: str, bg_name: str, atlas_name: str | None) -> list:
    cfg = res.config
    args, prep = cfg.get("arguments", {}), cfg.get("prepare", {})
    ivae, model, results = cfg.get("ivae", {}), cfg.get("model", {}), cfg.get("results", {})
    aux = cfg.get("aux", {})
    rows: list[tuple[str, str]] = []
    src = args.get("bids") or args.get("prepared") or args.get("func")
    if not src:
        srcs = res.description.get("SourceDatasets") or [{}]
        src = srcs[0].get("URL")
    subjects = sorted({r.subject for r in res.runs})
    n_vol = sum(r.data.shape[0] for r in res.runs)
    rows.append(("input", _fmt(src)))
    if args.get("task"):
        rows.append(("task", _fmt(args.get("task"))))
    shown = ", ".join(subjects[:8]) + (", …" if len(subjects) > 8 else "")
    rows.append(("subjects, runs, volumes",
                 f"{len(subjects)} subject(s) ({shown}), {len(res.runs)} run(s), {n_vol} volumes"))
    mdata = np.asarray(res.mask.dataobj) > 0
    zooms = res.mask.header.get_zooms()[:3]
    rows.append(("mask", f"{_fmt(prep.get('mask_source') or prep.get('mask') or args.get('mask'))}: "
                         f"{int(mdata.sum())} voxels in a {'×'.join(map(str, res.mask.shape[:3]))} grid of "
                         f"{'×'.join(f'{z:.3g}' for z in zooms)} mm"))
    rows.append(("space", f"{space}; maps drawn on {bg_name}"))
    trs = sorted({r.tr for r in res.runs if r.tr})
    rows.append(("TR (s)", _fmt(trs) if trs else "unknown"))
    u_text = f"{_fmt(aux.get('spec') or args.get('aux'))} ({_fmt(aux.get('kind'))}, {_fmt(aux.get('n_levels'))} levels"
    if prep.get("aux_combine") or args.get("aux_combine"):
        u_text += f", combined by {prep.get('aux_combine') or args.get('aux_combine')}"
    if prep.get("window") and "window" in str(aux.get("spec", "")):
        u_text += f", window {prep.get('window')} volumes, step {prep.get('step') or prep.get('window')}"
    rows.append(("auxiliary variable u", u_text + ")"))
    if res.prepared is not None:
        for fac in (res.prepared.aux or {}).get("factors") or []:
            rows.append((f"  levels of {fac.get('name')}", html.escape(_levels(fac.get("levels", [])))))
    red = prep.get("reduction", "")
    rows.append(("reduction", f"{_fmt(red)} to {_fmt(prep.get('n_dims'))} dimensions "
                              f"(asked {_fmt(prep.get('n_dims_requested', args.get('n_dims')))}), "
                              f"whiten {_fmt(prep.get('whiten'))}, kept per subject {_fmt(prep.get('n_keep'))}"))
    clean = prep.get("clean") or {}
    if clean:
        rows.append(("cleaning", _cleaning_text(clean, prep.get("confounds_regressed"))))
    mode = cfg.get("mode") or {"ica": "temporal", "why": "written before the spatial mode existed"}
    mode_text = f"{_fmt(mode.get('ica'))} ICA ({html.escape(str(mode.get('why', '')))})"
    if mode.get("u"):
        mode_text += (f"; spatial u {_fmt(mode['u'].get('spec'))} ({_fmt(mode['u'].get('n_levels'))} levels, "
                      f"segments {_fmt(mode['u'].get('n_segments'))})")
    rows.append(("mode", mode_text))
    rows.append(("model", f"{res.n_components} components, prior {_fmt(model.get('prior', args.get('prior')))}, "
                          f"posterior {_fmt(ivae.get('posterior'))}, {_fmt(ivae.get('n_hidden'))}×"
                          f"{_fmt(ivae.get('hidden_dim'))} hidden ({_fmt(ivae.get('activation'))}), "
                          "decoder variance "
                          + (_fmt(ivae.get("decoder_var")) if ivae.get("decoder_var") is not None else "learned")))
    rows.append(("training", f"{_fmt(ivae.get('n_init', args.get('n_init')))} restart(s), seed "
                             f"{_fmt(args.get('seed', model.get('random_state')))}, lr {_fmt(ivae.get('lr'))}, "
                             f"batch {_fmt(ivae.get('batch_size'))}, max {_fmt(ivae.get('max_epochs'))} epochs "
                             f"(ran {_fmt(results.get('n_epochs'))}), validation fraction {_fmt(ivae.get('val_frac'))}, "
                             f"device {_fmt(results.get('device'))}"))
    total_ev = results.get("total_explained_variance")
    if isinstance(total_ev, (int, float)) and np.isfinite(total_ev):
        rows.append(("variance explained", f"{100 * total_ev:.1f}% of the cleaned data's variance by all "
                                           "components together (R²; each component's share in the table)"))
    stopping = _early_stopping(res)
    kept = (f", the model of epoch {stopping['kept_epoch']} of {stopping['n_epochs']}, where the held-out ELBO "
            + ("peaked" if stopping["kept_epoch"] == stopping["peak_epoch"] else f"was {stopping['kept_val_elbo']:.2f}")
            if stopping and stopping.get("kept_epoch") else "")
    rows.append(("held-out ELBO per volume", _fmt(results.get("elbo")) + f" (data units{kept})"))
    note = early_stopping_note(stopping)
    if note:
        rows.append(("overfitting", note))
    rows.append(("restart ELBOs per volume", _fmt(results.get("restart_elbos"))))
    rows.append(("stability across restarts", _stability_text(results.get("stability"),
                                                              ivae.get("n_init", args.get("n_init")))))
    test = results.get("nonlinearity_test")
    rows.append(("does it need nonlinear ICA?", test["summary"] if isinstance(test, dict) and test.get("summary")
                 else "not tested (fit with --nonlinearity-test: the model against linear ICA with the same "
                      "prior on held-out subjects)"))
    secs = results.get("seconds")
    rows.append(("run time", f"{secs:.1f} s" if isinstance(secs, (int, float)) else "–"))
    versions = dict(cfg.get("versions") or {})
    if cfg.get("version"):
        versions.setdefault("trends-ivae", cfg["version"])
    try:
        import matplotlib
        import nilearn

        versions.setdefault("nilearn", nilearn.__version__)
        versions.setdefault("matplotlib (report)", matplotlib.__version__)
    except ImportError:  # pragma: no cover
        pass
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in versions.items() if k != "format_version")))
    if atlas_name:
        rows.append(("atlas", atlas_name))
    return rows


def _early_stopping(res: FitResults) -> dict | None:
    """``results.early_stopping`` of ``model/config.json``; for folders written before it,
    the same from ``model/elbo.tsv`` and the recorded ELBO."""
    results = res.config.get("results", {})
    if isinstance(results.get("early_stopping"), dict):
        return results["early_stopping"]
    if res.elbo is None or "val_elbo" not in res.elbo:
        return None
    n_dims = res.config.get("prepare", {}).get("n_dims")
    return early_stopping(np.asarray(res.elbo["val_elbo"], float), results.get("elbo"),
                          int(n_dims) if isinstance(n_dims, (int, float)) else None)


def _cleaning_text(clean: dict, regressed: dict | None) -> str:
    """The cleaning row: the settings, with the confounds that were regressed (columns and
    runs, from the prepare stage's record), not the option's raw value (None = "every
    column of each run's confounds file")."""
    parts = [f"{k} {_fmt(v)}" for k, v in clean.items() if k != "confounds"]
    if regressed is None:   # written before the record existed
        asked = clean.get("confounds")
        conf = ("confounds " + _fmt(asked)) if asked else "confounds: all columns of each run's file, if any"
    elif not regressed.get("columns"):
        conf = "no confounds regressed"
    else:
        cols = list(regressed["columns"])
        shown = ", ".join(cols[:8]) + (", …" if len(cols) > 8 else "")
        conf = (f"confounds regressed: {len(cols)} column(s) ({shown}) in {regressed.get('n_runs')} of "
                f"{regressed.get('n_runs_total')} run(s)")
    return ", ".join(parts + [conf])


def _stability_text(stability: Any, n_init: Any) -> str:
    """The stability row: the value, or why there is none (a single restart)."""
    ok = isinstance(stability, (int, float)) and np.isfinite(stability)
    if not ok or (isinstance(n_init, int) and n_init < 2):
        return "not computed: stability needs two or more restarts (--n-init 2 or more)"
    return f"{_fmt(stability, 3)} (mean matched correlation of the restarts' time courses)"


def _html_table(df, cls: str, link_col: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            num = isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool)
            text = _fmt(float(v), 3) if isinstance(v, (float, np.floating)) else _fmt(v)
            if link_col is not None and c == link_col:
                text = f'<a href="#comp-{html.escape(str(v))}">{html.escape(str(v))}</a>'
            else:
                text = html.escape(text)
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


#: where the page of a MELODIC-layout folder goes by default (MELODIC's own report is report/00index.html)
MELODIC_REPORT = "report/00index.html"


def default_report_path(out_dir: str | os.PathLike) -> Path:
    """``OUT/report.html``, or ``OUT/report/00index.html`` for a ``--layout melodic`` folder."""
    out = Path(out_dir)
    return out / MELODIC_REPORT if is_melodic_folder(out) else out / "report.html"


def build_report(out_dir: str | os.PathLike, *, output: str | os.PathLike | None = None,
                 subject: str | None = None, atlas: str | os.PathLike | None = None,
                 atlas_labels: str | os.PathLike | None = None, threshold: float = 2.0,
                 dpi: int | None = None, interactive: bool = True, verbose: int = 0) -> Path:
    """Write the HTML report of a fit.

    Parameters
    ----------
    out_dir : path
        Output folder of ``trends-ivae fit`` (BIDS or MELODIC layout).
    output : path, optional
        Where to write the page (default ``out_dir/report.html``; for a folder written with
        ``--layout melodic``, ``out_dir/report/00index.html``, where MELODIC keeps its report).
    subject : str, optional
        Subject whose (first) run's time course and spectrum are shown (default the first).
    atlas : path, optional
        Atlas image (3-D labels or 4-D maps) in the maps' space: adds the region at each peak.
    atlas_labels : path, optional
        Its label names (TSV with ``index`` and ``name``, or a lookup table); default a
        TSV next to the atlas image.
    threshold : float
        |z| threshold of the map figures and the viewer.
    dpi : int, optional
        Resolution of the figures (default ``figures.DEFAULT_DPI``, 120). Figures are shown
        at their size in inches whatever the dpi: a higher dpi makes them sharper (and the
        page larger and slower to build), not larger.
    interactive : bool
        Embed the interactive viewer.
    verbose : int
        Log progress (``logging`` INFO) when > 0.

    Returns
    -------
    Path
        The written page.

    Raises
    ------
    FileNotFoundError
        ``out_dir`` is not a fit output folder.
    ValueError
        Unknown ``subject`` or unreadable atlas.
    """
    from .figures import DEFAULT_DPI, SignalFigure, training_curve
    from .mapfigure import MapFigure
    from .space import EDGE_ENRICHMENT, EDGE_FRACTION, background_image, detect_space, load_atlas, peak_table
    from .viewer import viewer_html

    dpi = int(dpi or DEFAULT_DPI)
    t0 = time.perf_counter()
    out = Path(out_dir)
    target = Path(output) if output is not None else default_report_path(out)
    atlas_obj = load_atlas(atlas, atlas_labels) if atlas is not None else None
    res = load_results(out, subject=subject)
    k = res.n_components
    mask = np.asarray(res.mask.dataobj) > 0
    files = _input_files(res)
    space = detect_space(res.components, files)
    mni = space.mni
    bg_img, bg_name = background_image(space, res.mask, files)
    coord_col = space.coord_label
    comp_data = np.asarray(res.components.dataobj, dtype=np.float32)
    eff_data = np.asarray(res.effects.dataobj, dtype=np.float32) if res.effects is not None else None
    table = peak_table(comp_data, res.components.affine, res.names, threshold=threshold,
                       coord_label=coord_col, atlas=atlas_obj, effects=eff_data, mask=mask)
    if "explained_variance" in res.labels:
        table.insert(1, "explained variance", np.asarray(res.labels["explained_variance"], float))
    stability = (np.asarray(pd.to_numeric(res.labels["stability"], errors="coerce"), float)
                 if "stability" in res.labels else None)
    if stability is not None and np.isfinite(stability).any():   # n/a throughout with one restart
        table.insert(1 + ("explained variance" in table), "stability", stability)
    for name, values in label_columns(res.labels).items():   # written by 'trends-ivae label'
        table[name] = values
    edge_flags = [bool(v) for v in table["edge"]] if "edge" in table else [False] * k
    if "edge" in table:
        table["edge"] = ["⚠ mostly on the mask edge" if f else "" for f in edge_flags]
    log.info("report: loaded %s (%d components) in %.1f s", out, k, time.perf_counter() - t0)

    parts: list[str] = []
    nav = ['<a href="#summary">summary</a>', '<a href="#training">training</a>',
           '<a href="#components">components</a>']
    # summary
    rows = _summary_rows(res, space.describe(), bg_name, atlas_obj.source if atlas_obj else None)
    parts.append('<section id="summary"><h2>Summary</h2><table class="summary">'
                 + "".join(f"<tr><th>{html.escape(a)}</th><td>{b if a.startswith('  levels') else html.escape(b)}</td></tr>"
                           for a, b in rows) + "</table>")
    if res.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in res.notes) + "</ul>")
    parts.append("</section>")
    # training
    parts.append('<section id="training"><h2>Training</h2>')
    if res.elbo is not None and len(res.elbo):
        parts.append(_img_tag(training_curve(res.elbo, res.config.get("results", {}).get("restart_elbos"),
                                             dpi=dpi),
                              "training and validation ELBO per epoch", dpi=dpi))
        parts.append('<p class="muted">ELBO per volume of the kept restart (higher is better); '
                     "validation = held-out volumes; training keeps the epoch of the best held-out ELBO.</p>")
        note = early_stopping_note(_early_stopping(res))
        if note:
            parts.append(f'<ul class="notes"><li>{html.escape(note[0].upper() + note[1:])}.</li></ul>')
    else:
        parts.append("<p>No model/elbo.tsv.</p>")
    parts.append("</section>")
    # component table
    parts.append('<section id="components"><h2>Components</h2>')
    parts.append(f'<p class="muted">Peak = voxel of largest |z| in the largest cluster of |z| &gt; '
                 f"{threshold:g} (26-connected voxels of one sign) of the group regression map "
                 "(the largest |z| when no voxel passes; maps are signed so that their largest |z| "
                 "is positive, a cluster's peak may be negative); "
                 f"coordinates {html.escape(coord_col)}; largest cluster = its voxels; "
                 "explained variance = the component's share of the cleaned data's variance (a fraction; "
                 "the shares add up to the total in the summary, see docs/maps.md); "
                 "edge fraction = share of the suprathreshold |z| in the mask's boundary voxels "
                 f"(one erosion); edge = more than {EDGE_FRACTION:.0%} of it there and at least "
                 f"{EDGE_ENRICHMENT:g}× the boundary's share of the mask voxels (a classic sign of "
                 "motion or other artifacts); r(regression, effect) = spatial correlation of the "
                 "regression and decoder-effect maps "
                 "(low values flag nonlinear or correlated components, see docs/maps.md).</p>")
    parts.append(_html_table(table, "comps", link_col="component"))
    parts.append("</section>")
    # viewer
    vhtml = ""
    if interactive:
        t1 = time.perf_counter()
        try:
            peaks = [tuple(v) for v in table[coord_col]]
            vs = float(np.clip(min(res.components.header.get_zooms()[:3]), 2.0, 3.0)) if mni else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vhtml = viewer_html(res.components, bg_img, res.names, threshold=threshold,
                                    voxel_size=vs, peaks_mm=peaks)
        except Exception as exc:  # noqa: BLE001 - the viewer is an extra
            log.warning("report: interactive viewer failed: %s", exc)
            vhtml = ""
            res.notes.append(f"interactive viewer failed: {exc}")
        if vhtml:
            nav.append('<a href="#viewer">viewer</a>')
            parts.append('<section id="viewer"><h2>Interactive view</h2>' + vhtml + "</section>")
        log.info("report: viewer in %.1f s", time.perf_counter() - t1)
    from .connectivity import connectivity_section   # analysis/ (docs/analysis.md), when the folder has it

    section = connectivity_section(out, dpi, _img_tag)
    if section:
        nav.append(section[0])
        parts.append(section[1])
    # per component
    t1 = time.perf_counter()
    parts.append('<section id="per-component"><h2>Each component</h2>')
    parts.append('<p class="muted">Left: group regression z-map; middle: decoder-effect z-map '
                 f"(same cut, at the peak); right: {'glass brain' if mni else 'maximum-|z| projections'}; "
                 f"|z| &gt; {threshold:g}. Below: the time course of sub-"
                 f"{html.escape(res.runs[res.subject_run].subject) if res.runs else '?'} and the mean over runs, "
                 "their Welch power spectra, and the learned prior p(z|u) (mean ± sd) by level of each "
                 "factor of u and over time.</p>")
    mapfig = MapFigure(bg_img, mni=mni, mask=mask, with_effects=res.effects is not None,
                       threshold=threshold, dpi=dpi)
    sigfig = SignalFigure(res.runs, res.subject_run, res.prior, dpi=dpi) if (res.runs or res.prior) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, name in enumerate(res.names):
                cimg = nib.Nifti1Image(comp_data[..., j], res.components.affine)
                eimg = nib.Nifti1Image(eff_data[..., j], res.components.affine) if eff_data is not None else None
                row = table.iloc[j]
                facts = [f"peak z {row['peak z']:.2f} at {coord_col} {tuple(row[coord_col])}"]
                if "explained variance" in table:
                    facts.insert(0, f"explained variance {row['explained variance']:.3g}")
                if "stability" in table and np.isfinite(row["stability"]):
                    facts.insert(1 if "explained variance" in table else 0, f"stability {row['stability']:.2f}")
                if "region" in table:
                    facts.append(f"region: {row['region']}")
                if "r(regression, effect)" in table:
                    facts.append(f"r(regression, effect) {row['r(regression, effect)']:.2f}")
                if edge_flags[j]:
                    facts.append(f"⚠ {row['edge fraction']:.0%} of the suprathreshold weight lies on the "
                                 "mask edge: check for motion or other artifacts")
                block = [f'<div class="comp" id="comp-{html.escape(name)}"><h3>{html.escape(name)}</h3>',
                         f'<p class="facts">{html.escape("; ".join(facts))}</p>',
                         ]
                slices, glass = mapfig.render(cimg, eimg, tuple(row[coord_col]), name)
                block.append('<div class="maps">' + _img_tag(slices, f"{name} regression and effect maps", dpi=dpi)
                             + _img_tag(glass, f"{name} {'glass brain' if mni else 'projections'}", dpi=dpi) + "</div>")
                if sigfig is not None:
                    block.append(_img_tag(sigfig.render(j, name), f"{name} time course, spectrum and prior", dpi=dpi))
                links = ['<a href="#components">back to the table</a>']
                if vhtml:
                    links.append(f'<a href="#view-{html.escape(name)}">open in the interactive view</a>')
                block.append(f'<p class="muted">{" · ".join(links)}</p></div>')
                parts.append("".join(block))
    finally:
        mapfig.close()
        if sigfig is not None:
            sigfig.close()
    parts.append("</section>")
    log.info("report: %d component figures in %.1f s", k, time.perf_counter() - t1)

    title = f"trends_ivae report: {out.resolve().name}"
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{html.escape(title)}</h1><p>{k} components · identifiable VAE (iVAE) · "
            f"built {time.strftime('%Y-%m-%d %H:%M')} in {time.perf_counter() - t0:.1f} s</p></header>\n"
            f"<nav>{' '.join(nav)}</nav>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")
    if output is None:
        target.parent.mkdir(exist_ok=True)   # report/ of a MELODIC folder
    write_text_atomic(target, page)
    if output is None or target.resolve().parent == out.resolve():
        from ..export.derivatives import record_outputs   # one of the fit folder's own files (for --force)

        record_outputs(out, [target.resolve().relative_to(out.resolve())])
    log.info("report: wrote %s (%.1f MB) in %.1f s", target, target.stat().st_size / 1e6,
             time.perf_counter() - t0)
    return target
