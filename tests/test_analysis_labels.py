"""Template keys, template matching and the network-or-artifact labels (``trends-ivae label``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.analysis.classify import classify_components
from trends_ivae.analysis.features import spatial_features, temporal_features
from trends_ivae.analysis.keys import TemplateKeyError, detect_format, read_key
from trends_ivae.analysis.templates import TemplateError, load_templates, match_templates
from trends_ivae.cli.main import main
from trends_ivae.simulate import FMRISimParams, simulate_fmri

from _analysis_fixtures import fitted_folder

GIFT = Path("/work/data/gift")


# ------------------------------------------------------------------ keys
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_each_key_form_is_read(tmp_path):
    tsv = _write(tmp_path / "k.tsv", "index\tname\tdomain\n1\tDMN\tDM\n2\tVIS\tVI\n")
    idx = _write(tmp_path / "neuromark.txt", "1\tCaudate\tSC\n2\tPutamen\tSC\n3\tSTG\tAUD")
    head = _write(tmp_path / "head.txt", "index\tname\n1\tA\n2\tB\n")
    names = _write(tmp_path / "names.txt", "Default mode\nVisual\n\n# comment\nMotor")
    nets = _write(tmp_path / "RSN.txt", "Dorsal DMN, 1, 2, 3\nVisual, medial, 4\nMotor, 5, 6")   # no final newline
    k = read_key(tsv)
    assert (k.fmt, k.names, k.domains, k.values) == ("tsv", ["DMN", "VIS"], ["DM", "VI"], [(1,), (2,)])
    k = read_key(idx)
    assert (k.fmt, k.names, k.domains, k.values) == ("indexed", ["Caudate", "Putamen", "STG"], ["SC", "SC", "AUD"],
                                                      [(1,), (2,), (3,)])
    assert read_key(head).names == ["A", "B"]
    spaced = read_key(_write(tmp_path / "spaced.txt", "1 Default mode\n2 Visual"))
    assert (spaced.fmt, spaced.names, spaced.values) == ("indexed", ["Default mode", "Visual"], [(1,), (2,)])
    k = read_key(names)
    assert (k.fmt, k.names, k.values) == ("names", ["Default mode", "Visual", "Motor"], [(1,), (2,), (3,)])
    k = read_key(nets)
    assert k.fmt == "networks"
    assert k.names == ["Dorsal DMN", "Visual, medial", "Motor"]
    assert k.values == [(1, 2, 3), (4,), (5, 6)]
    assert detect_format(nets, nets.read_text()) == "networks"


@pytest.mark.parametrize("name,text,match", [
    ("empty.txt", "\n\n", "empty"),
    ("dup.txt", "A\nB\nA\n", "twice"),
    ("noname.tsv", "index\tcolour\n1\tred\n", "'name'"),
    ("badidx.tsv", "index\tname\nx\tA\n", "integers"),
])
def test_bad_keys_are_refused_naming_the_file(tmp_path, name, text, match):
    path = _write(tmp_path / name, text)
    with pytest.raises(TemplateKeyError, match=match) as err:
        read_key(path)
    assert str(path) in str(err.value)


def test_missing_key_and_unknown_format(tmp_path):
    with pytest.raises(TemplateKeyError, match="no such key"):
        read_key(tmp_path / "nope.txt")
    with pytest.raises(TemplateKeyError, match="unknown key format"):
        read_key(_write(tmp_path / "a.txt", "A\n"), fmt="xml")


# ------------------------------------------------------------------ templates
def _grid(shape=(10, 12, 9), zoom=4.0):
    aff = np.diag([zoom, zoom, zoom, 1.0])
    aff[:3, 3] = -np.array(shape) * zoom / 2
    mask = np.zeros(shape, np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    return aff, mask


def _blobs(shape, n, rng):
    grid = np.indices(shape).astype(float)
    out = []
    for _ in range(n):
        c = rng.uniform(2, np.array(shape) - 3)
        out.append(np.exp(-sum((grid[i] - c[i]) ** 2 for i in range(3)) / 4.0))
    return np.stack(out, -1).astype(np.float32)


def test_shuffled_named_templates_are_recovered_one_to_one(tmp_path):
    rng = np.random.default_rng(0)
    aff, mask = _grid()
    truth = _blobs(mask.shape, 5, rng)
    mask_img = nib.Nifti1Image(mask, aff)
    order = rng.permutation(5)
    tpl = nib.Nifti1Image(truth[..., order], aff)
    key = _write(tmp_path / "names.txt", "\n".join(f"net{j}" for j in order))
    templates = load_templates(tpl, mask_img, key)
    maps = truth[mask > 0].T + 0.05 * rng.standard_normal((5, int(mask.sum())))
    match = match_templates(maps, templates, min_r=0.2)
    table = match.component_table()
    assert list(table["network"]) == [f"net{j}" for j in range(5)]
    assert (table["network_r"] > 0.9).all()
    fit = match.template_table([f"ic{j}" for j in range(5)])
    assert fit["found"].all() and set(fit["component"]) == {f"ic{j}" for j in range(5)}


def test_networks_as_unions_of_rois_and_a_label_atlas(tmp_path):
    rng = np.random.default_rng(1)
    aff, mask = _grid()
    blobs = _blobs(mask.shape, 4, rng)
    rois = (blobs > 0.5).astype(np.uint8)                        # 4 binary ROIs
    key = read_key(_write(tmp_path / "RSN.txt", "first, 1, 2\nsecond, 3, 4"))
    t = load_templates(nib.Nifti1Image(rois, aff), nib.Nifti1Image(mask, aff), key)
    assert t.names == ["first", "second"] and t.data.shape == (2, int(mask.sum()))
    union = np.maximum(rois[..., 0], rois[..., 1])[mask > 0]
    assert np.corrcoef(t.data[0], union)[0, 1] > 0.99
    atlas = np.argmax(np.concatenate([np.full(mask.shape + (1,), 0.3), blobs], -1), -1).astype(np.int16)
    labels = _write(tmp_path / "atlas.tsv", "index\tname\n1\tA\n2\tB\n3\tC\n4\tD\n")
    t = load_templates(nib.Nifti1Image(atlas, aff), nib.Nifti1Image(mask, aff), labels)
    assert t.names == ["A", "B", "C", "D"]
    assert np.allclose(t.data[2], (atlas == 3)[mask > 0])


def test_bad_templates_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    aff, mask = _grid()
    mask_img = nib.Nifti1Image(mask, aff)
    tpl = nib.Nifti1Image(_blobs(mask.shape, 3, rng), aff)
    with pytest.raises(TemplateKeyError, match="2 names for the 3 volumes"):
        load_templates(tpl, mask_img, _write(tmp_path / "two.txt", "A\nB\n"))
    with pytest.raises(TemplateKeyError, match=r"\[7\]"):
        load_templates(tpl, mask_img, _write(tmp_path / "RSN.txt", "A, 1, 7\n"))
    far = aff.copy()
    far[:3, 3] += 500.0
    with pytest.raises(TemplateError, match="field of view covers 0%"):
        load_templates(nib.Nifti1Image(tpl.get_fdata(), far), mask_img)
    with pytest.raises(TemplateError, match="3-D .* or 4-D"):
        load_templates(nib.Nifti1Image(np.zeros((4, 4)), np.eye(4)), mask_img)


@pytest.mark.skipif(not (GIFT / "RSN.nii").is_file(), reason="GIFT's RSN files are not on this machine")
def test_gift_rsn_key_on_its_own_rois():
    key = read_key(GIFT / "RSN.txt")
    assert key.fmt == "networks" and len(key) == 14 and key.values[-1][-1] == 90
    img = nib.load(str(GIFT / "RSN.nii"))
    mask_img = nib.Nifti1Image((np.asarray(img.dataobj).max(-1) > 0).astype(np.uint8), img.affine)
    t = load_templates(img, mask_img, key)
    assert t.data.shape[0] == 14 and t.coverage == 1.0


# ------------------------------------------------------------------ features and the rule
def test_features_and_rule_tell_an_edge_rim_from_a_blob():
    rng = np.random.default_rng(3)
    aff, mask = _grid((14, 14, 12))
    m = mask > 0
    blob = _blobs(mask.shape, 1, np.random.default_rng(7))[..., 0]
    from scipy.ndimage import binary_erosion

    rim = (m & ~binary_erosion(m, iterations=1)).astype(float)
    rim[:, :, :8] = 0                                            # a rim on the top of the brain only
    maps = np.stack([blob[m], rim[m] + 0.01 * rng.standard_normal(int(m.sum()))])
    sp = spatial_features(maps, m)
    assert sp.loc[1, "edge_share"] > 0.9 > sp.loc[0, "edge_share"]
    t = np.arange(200) * 2.0
    slow = np.sin(2 * np.pi * 0.03 * t)[:, None]
    fast = rng.standard_normal((200, 1))
    tf = temporal_features([(np.hstack([slow, fast]), 2.0)])
    assert tf.loc[0, "falff"] > 0.9 and tf.loc[1, "high_freq_share"] > 0.3
    feats = pd.concat([sp, tf], axis=1)
    feats["high_freq_share"] = [0.05, 0.7]
    out = classify_components(feats)
    assert list(out["class"]) == ["network", "artifact"]
    assert "edge" in out.loc[1, "reasons"] and "high frequency" in out.loc[1, "reasons"]


# ------------------------------------------------------------------ the command on a fit folder
@pytest.fixture(scope="module")
def fitted():
    out, bids, sim = fitted_folder()
    return out, bids / "derivatives" / "truth" / "truth_maps.nii.gz", sim


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_label_command_writes_columns_tables_and_sidecars(fitted, tmp_path, capsys):
    out = _copy(fitted[0], tmp_path / "fit")
    names = fitted[2].truth.component_names
    key = _write(tmp_path / "key.tsv", "index\tname\tdomain\n" + "".join(
        f"{i + 1}\t{n}\t{n.split('-')[0]}\n" for i, n in enumerate(names)))
    before = pd.read_csv(out / "group/desc-ivae_labels.tsv", sep="\t")
    assert main(["label", str(out), "--templates", str(fitted[1]), "--key", str(key), "--order-by-domain"]) == 0
    labels = pd.read_csv(out / "group/desc-ivae_labels.tsv", sep="\t")
    for col in ("network", "domain", "network_r", "best_network", "best_network_r", "domain_order",
                "class", "class_reasons"):
        assert col in labels
    pd.testing.assert_frame_equal(labels[before.columns], before)          # the fit's columns untouched
    assert sorted(labels["domain_order"]) == [1, 2, 3]
    assert set(labels["class"]) <= {"network", "artifact", "uncertain"}
    side = json.loads((out / "group/desc-ivae_labels.json").read_text())
    assert all(c in side for c in labels.columns)
    fit = pd.read_csv(out / "group/desc-ivae_templatefit.tsv", sep="\t")
    assert list(fit["template"]) == names and fit["r"].notna().all()
    r = pd.read_csv(out / "group/desc-ivae_templatematch.tsv", sep="\t")
    assert list(r.columns) == ["name", *names] and r.shape[0] == 3
    feats = pd.read_csv(out / "group/desc-ivae_features.tsv", sep="\t")
    assert feats.shape[0] == 3 and json.loads((out / "group/desc-ivae_features.json").read_text()).keys() >= \
        set(feats.columns)
    manifest = json.loads((out / ".trends_ivae_outputs.json").read_text())["files"]
    assert "group/desc-ivae_templatefit.tsv" in manifest
    # again: refused without --force, done with it
    assert main(["label", str(out), "--templates", str(fitted[1]), "--key", str(key)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["label", str(out), "--templates", str(fitted[1]), "--key", str(key), "--force", "--no-tissue"]) == 0
    assert pd.read_csv(out / "group/desc-ivae_features.tsv", sep="\t")["gm_share"].isna().all()


def test_label_bad_inputs_write_nothing(fitted, tmp_path, capsys):
    out = _copy(fitted[0], tmp_path / "fit")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = _write(tmp_path / "bad.txt", "A\nB\n")
    assert main(["label", str(out), "--templates", str(fitted[1]), "--key", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err
    (out / "group/desc-ivae_features.tsv").write_text("mine\n")           # a file of the user's
    assert main(["label", str(out), "--force"]) == 1
    assert "did not write" in capsys.readouterr().err
    (out / "group/desc-ivae_features.tsv").unlink()
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(SystemExit):
        main(["label", str(out), "--key", str(bad)])
    with pytest.raises(SystemExit):
        main(["label", str(tmp_path / "nowhere")])


def test_simulated_artifacts_extend_data_and_truth():
    from trends_ivae.simulate.artifacts import ARTIFACT_KINDS, add_artifacts, artifact_timecourse

    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=3, n_task=1, shape=(12, 14, 12),
                                      seed=1))
    art = add_artifacts(sim)
    k = len(ARTIFACT_KINDS)
    assert art.truth.maps.shape[0] == 3 + k and art.truth.timecourses.shape[2] == 3 + k
    assert art.truth.component_kinds[-k:] == ["artifact"] * k
    assert art.truth.component_names[-k:] == [f"artifact-{a}" for a in ARTIFACT_KINDS]
    assert np.array_equal(art.truth.maps[:3], sim.truth.maps)                  # the networks are unchanged
    added = art.data[0] - sim.data[0]
    expected = art.truth.timecourses[0, :, 3:] @ (sim.params.signal_scale * art.truth.maps[3:])
    assert np.allclose(added, sim.data[0].mean(0) * expected / 100, rtol=1e-3, atol=1e-2)
    rng = np.random.default_rng(0)
    csf, white = artifact_timecourse("csf", 400, rng), artifact_timecourse("highfreq", 400, rng)
    tf = temporal_features([(np.c_[csf, white], 2.0)])
    assert tf.loc[0, "high_freq_share"] > tf.loc[1, "high_freq_share"] > 0.3
    with pytest.raises(ValueError, match="unknown artifact kind"):
        add_artifacts(sim, ["blink"])


def test_report_shows_the_labels_columns():
    from trends_ivae.report.labels import label_columns

    labels = pd.DataFrame({"name": ["ic01", "ic02"], "network": ["DMN", None], "network_r": [0.71, 0.05],
                           "class": ["network", "artifact"], "class_reasons": ["network: compact", "artifact: edge"]})
    cols = label_columns(labels)
    assert cols["template"] == ["DMN (r = 0.71)", ""]
    assert cols["class"] == ["network (network: compact)", "artifact (artifact: edge)"]
    assert label_columns(labels[["name"]]) == {}
