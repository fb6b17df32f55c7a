"""The HTML report (``trends-ivae report``, written by ``fit``) on a tiny fitted run,
the viewer-ready outputs, and a real headless browser (skipped without chromium)."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import warnings
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.cli.main import main
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "8",
        "--batch-size", "32", "--seed", "0"]
EXTERNAL = ("http://", "https://", "//", "ftp://", "ws://", "wss://")


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=5))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def fitted_out(bids, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), *FAST]) == 0
    return out


class _Refs(HTMLParser):
    """Every src/href of the page, the ids, and whether the document is well nested."""

    VOID = {"img", "meta", "link", "br", "hr", "input", "source", "area", "base", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append((tag, k, v))
            if k == "id":
                self.ids.add(v)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text(encoding="utf-8"))
    p.close()
    return p


def test_fit_writes_a_self_contained_report(fitted_out):
    page = fitted_out / "report.html"
    assert page.is_file() and page.stat().st_size > 10_000
    p = _parse(page)
    assert not p.errors, p.errors[:5]
    assert p.stack == [], f"unclosed tags: {p.stack}"
    imgs = [v for tag, k, v in p.refs if tag == "img"]
    # training curve + 3 components x (slices, glass brain, signals) + the viewer's colour bar
    assert len(imgs) >= 1 + 3 * 3 + 1
    for src in imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 100
    for tag, k, v in p.refs:
        assert not v.lower().startswith(EXTERNAL), f"external reference <{tag} {k}={v}>"
        if v.startswith("#"):
            assert v[1:] in p.ids, f"broken anchor {v}"
    text = " ".join(p.text)
    for needle in ("Summary", "held-out ELBO", "stability", "ic01", "ic03", "Welch power spectra",
                   "MNI (mm)", "task", "Interactive view", "trends-ivae 0"):
        assert needle in text or needle in page.read_text(), needle
    assert 'id="ivae-canvas"' in page.read_text() and "DecompressionStream" in page.read_text()


def test_report_is_small(fitted_out):
    """The figures are palette PNGs (colour type 3), the viewer's maps compact arrays:
    the 3-component page stays under 100 kB per component plus 100 kB (before they were,
    it was 1.25 MB)."""
    page = fitted_out / "report.html"
    pngs = [base64.b64decode(v.split(",", 1)[1]) for tag, k, v in _parse(page).refs if tag == "img"]
    figures = [p for p in pngs if int.from_bytes(p[16:20], "big") > 256]   # not the 256 x 1 colour bar
    assert len(figures) >= 1 + 3 * 3
    assert all(p[25] == 3 for p in figures), [p[25] for p in figures]
    assert page.stat().st_size < 100_000 + 3 * 100_000, page.stat().st_size
    for c in _viewer_components(page):
        assert len(c["codes"]) < 20_000


def test_viewer_ready_maps_and_sidecars(fitted_out, bids):
    bold = nib.load(sorted(bids.glob("sub-01/func/*_bold.nii.gz"))[0])
    for name in ("group/desc-ivae_components.nii.gz", "group/desc-ivae_effects.nii.gz",
                 "sub-01/func/sub-01_task-sim_desc-ivae_components.nii.gz"):
        img = nib.load(fitted_out / name)
        hdr = img.header
        assert img.get_data_dtype() == np.float32
        assert hdr.get_intent()[0] == "z score"
        data = np.asarray(img.dataobj)
        assert hdr["cal_min"] == pytest.approx(data.min()) and hdr["cal_max"] == pytest.approx(data.max())
        assert hdr["descrip"].tobytes().strip(b"\x00")
        np.testing.assert_allclose(img.affine, bold.affine)
        # the input's codes (4 = MNI152 in the simulator), not the generic ones of a computed mask
        assert int(hdr["qform_code"]) == int(bold.header["qform_code"]) == 4
        assert int(hdr["sform_code"]) == int(bold.header["sform_code"]) == 4
        side = json.loads((fitted_out / name.replace(".nii.gz", ".json")).read_text())
        assert side["Components"] == ["ic01", "ic02", "ic03"] and side["Description"]
    labels = pd.read_csv(fitted_out / "group" / "desc-ivae_labels.tsv", sep="\t")
    assert list(labels.columns[:2]) == ["index", "name"]
    assert labels["index"].tolist() == [1, 2, 3] and labels["name"].tolist() == ["ic01", "ic02", "ic03"]


def test_report_command_with_atlas_and_subject(fitted_out, tmp_path):
    comps = nib.load(fitted_out / "group" / "desc-ivae_components.nii.gz")
    lab = np.zeros(comps.shape[:3], dtype=np.int16)
    half = comps.shape[0] // 2
    lab[:half], lab[half:] = 1, 2  # x < centre: one region, the rest another
    nib.save(nib.Nifti1Image(lab, comps.affine), tmp_path / "atlas_dseg.nii.gz")
    (tmp_path / "atlas_dseg.tsv").write_text("index\tname\n1\tLeftHalf\n2\tRightHalf\n")
    page = tmp_path / "r.html"
    assert main(["report", str(fitted_out), "--output", str(page), "--subject", "sub-02",
                 "--atlas", str(tmp_path / "atlas_dseg.nii.gz"), "--no-viewer"]) == 0
    text = page.read_text()
    assert "LeftHalf" in text or "RightHalf" in text
    assert "sub-02" in text and "Interactive view" not in text
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path)])  # not a fit folder
    assert main(["report", str(fitted_out), "--output", str(tmp_path / "x.html"), "--subject", "99"]) == 1


def test_non_mni_maps_get_projections_on_the_mean_image(fitted_out, tmp_path, monkeypatch):
    from trends_ivae.report import build_report, space

    monkeypatch.setattr(space, "detect_space",
                        lambda *a, **k: space.Space("scanner", "native: scanner anatomical", "forced"))
    page = build_report(fitted_out, output=tmp_path / "native.html")
    text = page.read_text()
    assert "maximum-|z| projections" in text and "scanner (mm)" in text
    assert "the mean image of" in text  # background: the first run's mean image


def _nifti(shape=(6, 7, 5), sform=1, qform=1):
    from trends_ivae.simulate.fmri import mni_like_affine

    aff = mni_like_affine(shape, 4.0)
    img = nib.Nifti1Image(np.zeros(shape, np.float32), aff)
    img.header.set_sform(aff, code=sform)
    img.header.set_qform(aff, code=qform)
    return img


def test_space_comes_from_header_codes_and_bids_entity_not_from_overlap(tmp_path):
    """A grid that lies exactly where an MNI brain would is still native when its codes
    say scanner (1) or aligned (2); code 4 is MNI, 3 Talairach; a BIDS space- entity of
    the input decides first; codes 0 and no entity: unknown, never MNI."""
    from trends_ivae.report.space import detect_space

    assert detect_space(_nifti(sform=1, qform=1)).kind == "scanner"
    assert detect_space(_nifti(sform=1, qform=1)).coord_label == "scanner (mm)"
    assert detect_space(_nifti(sform=2, qform=0)).kind == "aligned"
    assert detect_space(_nifti(sform=0, qform=1)).kind == "scanner"
    mni = detect_space(_nifti(sform=4, qform=1))
    assert mni.mni and mni.coord_label == "MNI (mm)" and "sform_code 4" in mni.reason
    assert detect_space(_nifti(sform=3, qform=0)).coord_label == "Talairach (mm)"
    unknown = detect_space(_nifti(sform=0, qform=0))
    assert unknown.kind == "unknown" and not unknown.mni and "MNI" not in unknown.describe()
    ent = detect_space(_nifti(sform=1, qform=1),
                       ["/d/sub-01_task-x_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"])
    assert ent.mni and "space-MNI152NLin2009cAsym" in ent.reason
    t1w = detect_space(_nifti(sform=4, qform=4), ["/d/sub-01_task-x_space-T1w_desc-preproc_bold.nii.gz"])
    assert not t1w.mni and t1w.kind == "aligned"
    # maps without codes: the first input run on the same grid decides
    run = _nifti(sform=4, qform=4)
    nib.save(nib.Nifti1Image(np.zeros(run.shape + (3,), np.float32), run.affine, run.header),
             tmp_path / "r.nii.gz")
    assert detect_space(_nifti(sform=0, qform=0), [tmp_path / "r.nii.gz"]).mni


def _recode_runs(bids: Path, code: int, one_slice: int | None = None) -> None:
    """Give every BOLD run of a simulated dataset the qform/sform ``code`` (and keep only
    the axial slice ``one_slice``), in place."""
    for f in sorted(bids.rglob("*_bold.nii.gz")):
        img = nib.load(f)
        data = np.asarray(img.dataobj, dtype=np.float32)
        aff = img.affine.copy()
        if one_slice is not None:
            data = data[:, :, one_slice:one_slice + 1]
            aff[:3, 3] = nib.affines.apply_affine(aff, (0, 0, one_slice))
        out = nib.Nifti1Image(data, aff)
        out.header.set_zooms(img.header.get_zooms())
        out.header.set_xyzt_units("mm", "sec")
        out.header.set_sform(aff, code=code)
        out.header.set_qform(aff, code=code)
        nib.save(out, f)


def _fit(bids: Path, out: Path, *extra: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), *FAST, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def native_out(tmp_path_factory):
    """A fit of native-space runs (qform/sform code 1) whose grid lies where an MNI brain
    would: only the header says that it is not MNI."""
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(14, 16, 14), seed=6))
    bids = write_bids(sim, tmp_path_factory.mktemp("native") / "bids")
    _recode_runs(bids, code=1)
    return _fit(bids, tmp_path_factory.mktemp("fit-native") / "out")


@pytest.fixture(scope="module")
def slice_out(tmp_path_factory):
    """A fit of one-slice native runs (a 20 x 22 x 1 grid, like Haxby's bold_1slice)."""
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=80, n_components=3, n_task=1,
                                      shape=(20, 22, 10), seed=7))
    root = tmp_path_factory.mktemp("slice")
    bids = write_bids(sim, root / "bids")
    _recode_runs(bids, code=1, one_slice=5)
    run = nib.load(sorted(bids.rglob("*_bold.nii.gz"))[0])
    mask = nib.Nifti1Image(np.asarray(sim.mask[:, :, 5:6], np.uint8), run.affine)  # the EPI mask of one slice is empty
    mask.header.set_sform(run.affine, code=1)
    mask.header.set_qform(run.affine, code=1)
    nib.save(mask, root / "mask.nii.gz")
    return _fit(bids, root / "out", "--mask", str(root / "mask.nii.gz"))


def _without_images(page: Path) -> str:
    """The page's text, scripts and markup without its base64 images (which may spell
    anything)."""
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page.read_text())


def test_native_space_report_never_mentions_mni(native_out):
    assert "MNI" not in _without_images(native_out / "report.html")
    text = " ".join(_parse(native_out / "report.html").text)
    assert "native: scanner anatomical (sform_code 1 of the maps)" in text
    assert "the mean image of sub-01_task-sim_bold.nii.gz (all 80 volumes)" in text
    assert "scanner (mm)" in text and "maximum-|z| projections" in text and "glass brain" not in text
    # the coordinates are the peak voxels through the maps' (scanner) affine
    from trends_ivae.report.results import load_results
    from trends_ivae.report.space import detect_space, peak_table

    res = load_results(native_out, load_prior=False)
    comps = res.components
    table = peak_table(np.asarray(comps.dataobj), comps.affine, res.names, threshold=2.0,
                       coord_label=detect_space(comps).coord_label,
                       mask=np.asarray(res.mask.dataobj) > 0)
    for ijk, xyz in zip(table["voxel (i, j, k)"], table["scanner (mm)"]):
        np.testing.assert_allclose(xyz, nib.affines.apply_affine(comps.affine, ijk), atol=0.06)
        assert f"scanner (mm) {tuple(xyz)}" in text


def test_mni_report_says_mni_and_why(fitted_out):
    text = " ".join(_parse(fitted_out / "report.html").text)
    assert "MNI152 (sform_code 4 of the maps); maps drawn on MNI152 template (nilearn)" in text
    assert "MNI (mm)" in text and "glass brain" in text and "scanner (mm)" not in text


def _viewer_components(page: Path) -> list[dict]:
    """The viewer's per-component data (name, overlay codes, colour range, cut)."""
    text = page.read_text()
    start = text.index("var comps = ") + len("var comps = ")
    return json.loads(text[start:text.index(";\n", start)])


def _overlay_voxels(codes_b64: str) -> int:
    """Voxels the viewer colours (uint8 codes above 0, zlib-compressed in base64)."""
    import zlib

    codes = np.frombuffer(zlib.decompress(base64.b64decode(codes_b64)), np.uint8)
    return int((codes > 0).sum())


def _check_colour_ranges(out: Path) -> list[dict]:
    maps = np.asarray(nib.load(out / "group" / "desc-ivae_components.nii.gz").dataobj)
    comps = _viewer_components(out / "report.html")
    assert len(comps) == maps.shape[3]
    for j, c in enumerate(comps):
        peak = float(np.abs(maps[..., j]).max())
        assert peak <= c["vmax"] <= peak + 2e-3, (c["name"], c["vmax"], peak)
    return comps


def test_viewer_colour_range_covers_the_map(fitted_out):
    """The colour bar spans the map's own largest |z| (the viewer grid's resampling must
    not shrink it below the peak z of the table)."""
    _check_colour_ranges(fitted_out)


def test_one_slice_volume_renders(slice_out):
    comps = _check_colour_ranges(slice_out)
    maps = np.asarray(nib.load(slice_out / "group" / "desc-ivae_components.nii.gz").dataobj)
    assert maps.shape[2] == 1
    for j, c in enumerate(comps):
        assert _overlay_voxels(c["codes"]) >= (np.abs(maps[..., j]) > 2.0).sum() > 0, c["name"]
    text = _without_images(slice_out / "report.html")
    assert "A thin volume" in text and "MNI" not in text


def _box_mask(shape=(20, 20, 16)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    return mask


def test_peak_is_that_of_the_largest_cluster_not_a_hot_edge_voxel():
    """Five components share one hot voxel on the mask's edge (a single voxel of z 9)
    but each has its own 27-voxel cluster inside: each reports its own cluster's peak."""
    from trends_ivae.report.space import peak_table

    mask = _box_mask()
    maps = np.zeros(mask.shape + (5,), np.float32)
    rng = np.random.default_rng(0)
    maps[mask] = rng.normal(scale=0.3, size=(int(mask.sum()), 5))
    for j in range(5):
        maps[1, 1, 1, j] = 9.0                      # the shared hot edge voxel
        i0 = 2 + j
        maps[i0:i0 + 3, 4:7, 3:6, j] = 3.0          # the component's own cluster
        maps[i0 + 1, 5, 4, j] = 3.5 + j / 10        # and its peak
    table = peak_table(maps, np.eye(4), [f"ic{j + 1:02d}" for j in range(5)], threshold=2.0,
                       coord_label="scanner (mm)", mask=mask)
    assert table["voxel (i, j, k)"].tolist() == [(3 + j, 5, 4) for j in range(5)]
    np.testing.assert_allclose(table["peak z"], [3.5 + j / 10 for j in range(5)], rtol=1e-6)
    assert table["largest cluster"].tolist() == [27] * 5
    assert table["voxels |z|>2"].tolist() == [28] * 5
    # negative and positive voxels never join one cluster; no voxel above: the largest |z|
    m = np.zeros(mask.shape + (1,), np.float32)
    m[4, 4, 3:6, 0] = [3.0, -3.0, 3.0]
    m[8, 8, 3, 0] = -2.5
    m[8, 8, 4, 0] = -2.6
    row = peak_table(m, np.eye(4), ["a"], threshold=2.0, mask=mask).iloc[0]
    assert row["largest cluster"] == 2 and row["voxel (i, j, k)"] == (8, 8, 4)
    low = peak_table(m * 0.1, np.eye(4), ["a"], threshold=2.0, mask=mask).iloc[0]
    assert low["largest cluster"] == 0 and low["voxel (i, j, k)"] in ((4, 4, 3), (4, 4, 4), (4, 4, 5))


def test_edge_flag_marks_weight_on_the_mask_boundary():
    from trends_ivae.report.space import EDGE_FRACTION, mask_boundary, peak_table

    mask = _box_mask()
    edge = mask_boundary(mask)
    inner = np.zeros_like(mask)
    inner[2:-2, 2:-2, 2:-2] = True
    assert np.array_equal(edge, mask & ~inner)
    # one slice: eroded in its plane only (the perimeter), not away
    plane = np.zeros((10, 10, 1), bool)
    plane[1:-1, 1:-1] = True
    assert mask_boundary(plane).sum() == 8 * 4 - 4
    maps = np.zeros(mask.shape + (3,), np.float32)
    maps[..., 0][edge] = 3.0                        # a rim: all of it on the edge
    maps[4:8, 4:8, 3:5, 1] = 4.0                    # a blob inside
    maps[..., 2][edge] = 2.5                        # a large blob inside and a weaker rim
    maps[3:17, 3:17, 3:13, 2] = 4.0
    t = peak_table(maps, np.eye(4), ["rim", "blob", "both"], threshold=2.0, mask=mask)
    assert t["edge"].tolist() == [True, False, False]
    assert t["edge fraction"][0] == pytest.approx(1.0) and t["edge fraction"][1] == 0.0
    assert 0 < t["edge fraction"][2] < EDGE_FRACTION
    # a mask that is mostly boundary (coarse data): a map spread over it is not flagged
    coarse = np.zeros((5, 5, 4), bool)
    coarse[1:4, 1:4, 1:3] = True
    cm = np.where(coarse, 3.0, 0.0)[..., None].astype(np.float32)
    assert not peak_table(cm, np.eye(4), ["c"], threshold=2.0, mask=coarse)["edge"][0]


def test_report_shows_the_edge_flag(native_out, tmp_path):
    from trends_ivae.report import build_report
    from trends_ivae.report.space import mask_boundary

    out = tmp_path / "out"
    shutil.copytree(native_out, out)
    cpath = out / "group" / "desc-ivae_components.nii.gz"
    img = nib.load(cpath)
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    mask = np.asarray(nib.load(out / "group" / "desc-ivae_mask.nii.gz").dataobj) > 0
    data[..., 1] = 0.0
    data[..., 1][mask_boundary(mask)] = 3.0        # ic02: a rim on the mask edge
    nib.save(nib.Nifti1Image(data, img.affine, img.header), cpath)
    page = build_report(out, output=tmp_path / "r.html", interactive=False)
    p = _parse(page)
    text = " ".join(p.text)
    assert text.count("⚠ mostly on the mask edge") == 1
    facts = text[text.index("ic02", text.index("Each component")):]
    assert "⚠ 100% of the suprathreshold weight lies on the mask edge" in facts[:400]


def test_stability_column_shown_when_the_labels_have_it(native_out, tmp_path):
    from trends_ivae.report import build_report

    def headers(page):
        text = page.read_text()
        table = text[text.index('<table class="comps">'):]
        return table[:table.index("</thead>")]

    # fit writes the column (n/a with one restart); a labels table without it shows none
    bare = tmp_path / "bare"
    shutil.copytree(native_out, bare)
    bpath = bare / "group" / "desc-ivae_labels.tsv"
    pd.read_csv(bpath, sep="\t").drop(columns=["stability"], errors="ignore").to_csv(bpath, sep="\t", index=False)
    plain = build_report(bare, output=tmp_path / "plain.html", interactive=False)
    assert "<th>stability</th>" not in headers(plain)
    out = tmp_path / "out"
    shutil.copytree(native_out, out)
    lpath = out / "group" / "desc-ivae_labels.tsv"
    labels = pd.read_csv(lpath, sep="\t")
    labels["stability"] = [0.91, 0.42, 0.77]
    labels.to_csv(lpath, sep="\t", index=False)
    page = build_report(out, output=tmp_path / "r.html", interactive=False)
    assert "<th>stability</th>" in headers(page)
    text = " ".join(_parse(page).text)
    for v in ("0.91", "0.42", "0.77"):
        assert f"stability {v}" in text


def test_figures_are_sharp_and_shown_at_their_size_in_inches(fitted_out):
    """Each figure is shown at its size in inches (96 CSS px per inch, so its text reads at
    its point size) and has more image pixels than CSS pixels (sharp; at 60 dpi a figure
    was shown at 60 px per inch, its text about 5 px high)."""
    from trends_ivae.report.figures import CSS_DPI, DEFAULT_DPI

    page = (fitted_out / "report.html").read_text()
    sect = page[page.index('<section id="training">'):page.index('<section id="viewer">')] + \
        page[page.index('<section id="per-component">'):]
    tags = re.findall(r"<img[^>]*>", sect)
    assert len(tags) >= 1 + 3 * 3
    for t in tags:
        width = int(re.search(r' width="(\d+)"', t).group(1))
        png = base64.b64decode(re.search(r"base64,([^\"]+)", t).group(1))
        px = int.from_bytes(png[16:20], "big")
        assert px / width == pytest.approx(DEFAULT_DPI / CSS_DPI, rel=0.01)
        assert px >= width
        assert width >= 4 * CSS_DPI  # the narrowest figure is 4.3 in wide


def test_no_report_flag_and_report_failure_keeps_the_fit(fitted_out, tmp_path, monkeypatch, capsys):
    prep = str(fitted_out / "prepared.h5")
    args = ["--n-components", "3", "--n-init", "1", "--max-epochs", "2", "--batch-size", "32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--prepared", prep, "--out", str(tmp_path / "a"), "--no-report", *args]) == 0
        assert not (tmp_path / "a" / "report.html").exists()
        import trends_ivae.report as report

        def boom(*a, **k):
            raise RuntimeError("report exploded")

        monkeypatch.setattr(report, "build_report", boom)
        assert main(["fit", "--prepared", prep, "--out", str(tmp_path / "b"), *args]) == 0
    assert "report exploded" in capsys.readouterr().err
    assert (tmp_path / "b" / "group" / "desc-ivae_components.nii.gz").is_file()
    assert (tmp_path / "b" / "model" / "estimator.pt").is_file()


def test_a_fit_folder_with_the_old_model_file_name_still_loads(fitted_out, tmp_path):
    """Folders written before the model file was renamed hold ``model/ivae.pt`` (and,
    older still, no ``prior.npz``): GroupIVAE.load and the report's prior read it."""
    from trends_ivae import GroupIVAE
    from trends_ivae.report.results import load_results

    old = tmp_path / "old"
    shutil.copytree(fitted_out, old)
    (old / "model" / "estimator.pt").rename(old / "model" / "ivae.pt")
    (old / "model" / "prior.npz").unlink()
    loaded, fresh = GroupIVAE.load(old, device="cpu"), GroupIVAE.load(fitted_out, device="cpu")
    assert loaded.n_components_ == fresh.n_components_ == 3 and loaded.elbo_ == fresh.elbo_
    then, now = load_results(old), load_results(fitted_out)
    assert then.prior is not None and now.prior is not None
    assert not [n for n in then.notes if "model/" in n]
    assert then.prior.by_factor and len(then.prior.by_factor) == len(now.prior.by_factor)
    for a, b in zip(then.prior.by_factor, now.prior.by_factor):
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-5, atol=1e-5)
    (old / "model" / "ivae.pt").unlink()
    assert any("no model/estimator.pt" in n for n in load_results(old).notes)


# ----------------------------------------------------------------------------- real browser
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked the network for (the browser's own update and account
    checks have the initiator 'not an origin' and are left out)."""
    d = json.loads(netlog.read_text())
    start = d["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in d["events"]:
        p = e.get("params") or {}
        if e.get("type") == start and p.get("url") and p.get("initiator") != "not an origin":
            if p["url"].lower().startswith(("http:", "https:", "ws:", "wss:", "ftp:")):
                urls.append(p["url"])
    return urls


def _open(browser: str, page: Path, tmp: Path, *extra: str, fragment: str = "") -> subprocess.CompletedProcess:
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp))  # fresh per run
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=3000", *extra,
           page.resolve().as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(_chromium() is None, reason="no chromium or chromium-browser on PATH")
def test_report_in_a_real_browser(fitted_out, tmp_path):
    from PIL import Image

    browser = _chromium()
    page = fitted_out / "report.html"
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    r = _open(browser, page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
              f"--log-net-log={netlog}")
    assert shot.is_file() and shot.stat().st_size > 0, r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    colours = np.unique(img.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50, f"screenshot looks blank ({len(colours)} colours)"
    assert img.std() > 10
    assert _page_requests(netlog) == []
    # the viewer's script ran: it sized its canvas, and a #view-<name> link
    # switched the selector to that component
    run = _open(browser, page, tmp_path, "--dump-dom", "--enable-logging=stderr", "--v=0",
                fragment="#view-ic02")
    dom = run.stdout
    errors = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln and "Uncaught" in ln]
    assert not errors, errors
    canvas = dom[dom.find('<canvas id="ivae-canvas"'):][:120]
    assert 'width="' in canvas and 'width="0"' not in canvas, canvas
    assert 'data-component="ic02"' in dom


def _viewer_only(page: Path, tmp: Path) -> Path:
    """A copy of the report that shows only the interactive view, with a white colour bar
    (so that the only red and blue pixels left are the overlay's)."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (256, 1), "white").save(buf, format="PNG")
    white = base64.b64encode(buf.getvalue()).decode("ascii")
    text = page.read_text()
    text = re.sub(r'(<img id="ivae-cmap" src="data:image/png;base64,)[^"]+', r"\g<1>" + white, text)
    text = text.replace("</head>", "<style>header,nav,#summary,#training,#components,#connectivity,#per-component"
                                   "{display:none}</style></head>", 1)
    copy = tmp / f"viewer-{page.parent.name}-{page.name}"
    copy.write_text(text)
    return copy


def _overlay_and_background(shot: Path) -> tuple[int, int]:
    """Pixels of the RdBu_r overlay (light or strong red, or blue with green above red:
    not the viewer's pure-blue crosshair) and grey background pixels of a screenshot."""
    from PIL import Image

    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = (r > g + 40) & (r > b + 40) & (r > 120)
    blue = (b > r + 40) & (g > r + 20) & (b > 120)   # (the heading's rule is dark blue-grey)
    grey = (np.abs(r - g) < 6) & (np.abs(g - b) < 6) & (r > 30) & (r < 220)
    return int((red | blue).sum()), int(grey.sum())


@pytest.mark.skipif(_chromium() is None, reason="no chromium or chromium-browser on PATH")
@pytest.mark.parametrize("which", ["native_out", "slice_out"])
def test_native_and_one_slice_reports_show_their_overlay_in_a_browser(which, request, tmp_path):
    """Screenshots of the interactive view of a native-space report and of a one-slice
    report: the overlay (and the mean-image background) are on the canvas. Control: the
    same page built with a threshold no voxel passes shows no overlay pixel."""
    from PIL import Image

    from trends_ivae.report import build_report

    browser = _chromium()
    out = request.getfixturevalue(which)
    counts = {}
    for name, page in (("report", out / "report.html"),
                       ("empty", build_report(out, output=tmp_path / "empty.html", threshold=1e9))):
        shot = tmp_path / f"{which}-{name}.png"
        r = _open(browser, _viewer_only(page, tmp_path), tmp_path, f"--screenshot={shot}",
                  "--window-size=1000,700")
        assert shot.is_file(), r.stderr[-2000:]
        counts[name] = _overlay_and_background(shot)
    overlay, background = counts["report"]
    assert overlay >= 20, f"{which}: the viewer shows no overlay ({overlay} red/blue pixels)"
    assert background >= 200, f"{which}: the viewer shows no background ({background} grey pixels)"
    assert counts["empty"][0] == 0 and counts["empty"][1] >= 200, counts
    # the whole page renders too (not blank)
    full = tmp_path / f"{which}-full.png"
    _open(browser, out / "report.html", tmp_path, f"--screenshot={full}", "--window-size=1280,2400")
    img = np.asarray(Image.open(full).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 50 and img.std() > 10


@pytest.mark.skipif(_chromium() is None, reason="no chromium or chromium-browser on PATH")
def test_the_network_check_catches_an_external_resource(tmp_path):
    """Control for the test above: a page with external references is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="https://example.invalid/f.ico">'
                    '</head><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    netlog = tmp_path / "net.json"
    _open(shutil.which("chromium") or shutil.which("chromium-browser"), page, tmp_path,
          f"--log-net-log={netlog}", "--dump-dom")
    assert any("127.0.0.1:9" in u for u in _page_requests(netlog))


def test_stability_column_left_out_when_every_value_is_na(native_out, tmp_path):
    """One restart: the labels say n/a throughout, and the table shows no column of nan."""
    from trends_ivae.report import build_report

    out = tmp_path / "out"
    shutil.copytree(native_out, out)
    lpath = out / "group" / "desc-ivae_labels.tsv"
    labels = pd.read_csv(lpath, sep="\t")
    labels["stability"] = "n/a"
    labels.to_csv(lpath, sep="\t", index=False)
    text = build_report(out, output=tmp_path / "r.html", interactive=False).read_text()
    table = text[text.index('<table class="comps">'):]
    assert "<th>stability</th>" not in table[:table.index("</thead>")]
    assert "stability nan" not in text


def test_report_says_when_the_held_out_elbo_fell_after_its_peak(fitted_out, tmp_path):
    """From config.json's results.early_stopping, and for older folders from model/elbo.tsv."""
    import json
    import shutil

    from trends_ivae.report import build_report

    out = tmp_path / "out"
    shutil.copytree(fitted_out, out)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["results"]["early_stopping"]["n_epochs"] == 8      # written by fit
    val = [-60.0 + 4 * min(e, 11) - 0.4 * max(0, e - 11) for e in range(1, 41)]
    (out / "model" / "elbo.tsv").write_text("epoch\ttrain_elbo\tval_elbo\n"
                                            + "".join(f"{e}\t{v + 1:.6g}\t{v:.6g}\n" for e, v in enumerate(val, 1)))
    del config["results"]["early_stopping"]                          # a folder written before the record
    config["results"]["elbo"] = max(val)
    (out / "model" / "config.json").write_text(json.dumps(config))
    text = build_report(out, interactive=False).read_text()
    assert "peaked at epoch 11 of 40" in text and "overfits the training volumes after epoch 11" in text
    assert "the model of epoch 11 of 40, where the held-out ELBO peaked" in text
