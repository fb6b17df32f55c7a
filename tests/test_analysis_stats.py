"""Group statistics: formula designs, contrasts, the GLM and ``trends-ivae stats`` on a generated fit folder."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae.analysis.stats import DesignError, contrast_vector, design_matrix, glm_contrast, permutation_test
from trends_ivae.cli.main import main
from trends_ivae.export.outputs import record_outputs

K, SHAPE, T = 3, (8, 9, 7), 120


def _participants(n, rng):
    table = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(n)],
                          "group": ["control" if i % 2 == 0 else "patient" for i in range(n)],
                          "age": rng.uniform(20, 60, n).round(1), "site": ["A", "B", "C"] * (n // 3) + ["A"] * (n % 3)})
    table["months"] = table["age"] * 12
    return table


def test_design_and_contrast_subset_of_patsy():
    rng = np.random.default_rng(0)
    table = _participants(12, rng)
    design, factors = design_matrix(table, "group + age + C(site)")
    assert list(design.columns) == ["intercept", "group[patient]", "age", "site[B]", "site[C]"]
    assert factors == {"group": ["control", "patient"], "site": ["A", "B", "C"]}
    assert list(contrast_vector(design, factors, "group[patient] - group[control]")) == [0, 1, 0, 0, 0]
    assert list(contrast_vector(design, factors, "age")) == [0, 0, 1, 0, 0]
    assert list(contrast_vector(design, factors, "0.5*site[C] - 0.5*site[B]")) == [0, 0, 0, -0.5, 0.5]


@pytest.mark.parametrize("formula,contrast,match", [
    ("group + weight", "age", "'weight' is not a column"),
    ("age + months", "age", "rank deficient"),
    ("group + C(group)", "age", "twice"),
    ("group", "group[sick] - group[control]", "unknown level 'sick'; group has control, patient"),
    ("group", "site[B]", "not a factor"),
    ("group", "height", "not in the design"),
    ("group:age", "age", "not read here"),
    ("group", "group[patient] - group[patient]", "weighs nothing"),
])
def test_bad_designs_and_contrasts_say_why(formula, contrast, match):
    table = _participants(12, np.random.default_rng(1))
    with pytest.raises(DesignError, match=match):
        design, factors = design_matrix(table, formula)
        contrast_vector(design, factors, contrast)


def test_glm_finds_a_two_group_difference_and_fdr_controls_the_rest():
    rng = np.random.default_rng(2)
    n = 40
    X = np.c_[np.ones(n), np.repeat([0.0, 1.0], n // 2)]
    Y = rng.standard_normal((n, 200))
    Y[:, :20] += 1.5 * X[:, [1]]
    res = glm_contrast(X, Y, np.array([0.0, 1.0]))
    assert (res["q"][:20] < 0.05).mean() > 0.8 and (res["q"][20:] < 0.05).sum() <= 2
    assert np.allclose(res["effect"][20:].mean(), 0, atol=0.1) and 1.0 < res["d"][:20].mean() < 2.2
    from scipy import stats

    t_ref = stats.ttest_ind(Y[n // 2:, 0], Y[:n // 2, 0]).statistic
    assert np.isclose(res["t"][0], t_ref)
    fwe = permutation_test(X, Y[:, :30], np.array([0.0, 1.0]), n_perm=200)
    assert fwe.shape == (30,) and (fwe[:20] < 0.05).mean() > 0.5 and (fwe >= 1 / 201 - 1e-9).all()


def _fake_fit(root: Path, n: int, seed: int, amp_effect: float = 0.0, coupling: float = 0.0) -> Path:
    """A BIDS-layout fit folder (maps, mask, labels, subject maps, time courses) without a fit:
    component 0's subject maps are ``amp_effect`` stronger in patients; components 1 and 2 are
    coupled by ``coupling`` in patients."""
    rng = np.random.default_rng(seed)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    m = mask > 0
    grid = np.indices(SHAPE).astype(float)
    maps = np.stack([np.exp(-sum((grid[i] - c[i]) ** 2 for i in range(3)) / 3.0)
                     for c in ([2, 2, 2], [5, 6, 4], [3, 6, 3])], -1)
    (root / "group").mkdir(parents=True)
    nib.save(nib.Nifti1Image(maps.astype(np.float32), aff), root / "group/desc-ivae_components.nii.gz")
    nib.save(nib.Nifti1Image(mask, aff), root / "group/desc-ivae_mask.nii.gz")
    pd.DataFrame({"index": [1, 2, 3], "name": ["ic01", "ic02", "ic03"]}).to_csv(
        root / "group/desc-ivae_labels.tsv", sep="\t", index=False)
    for s in range(n):
        patient = s % 2 == 1
        sub = root / f"sub-{s + 1:02d}" / "func"
        sub.mkdir(parents=True)
        amp = 1 + 0.2 * rng.standard_normal(K) + (amp_effect * 0.2 if patient else 0.0) * np.eye(K)[0]
        smap = maps * amp + 0.2 * rng.standard_normal(SHAPE + (K,))
        nib.save(nib.Nifti1Image(smap.astype(np.float32), aff), sub / f"sub-{s + 1:02d}_task-x_desc-ivae_components.nii.gz")
        z = rng.standard_normal((T, K))
        if patient:
            z[:, 2] = coupling * z[:, 1] + np.sqrt(1 - coupling ** 2) * z[:, 2]
        pd.DataFrame(z, columns=["ic01", "ic02", "ic03"]).to_csv(sub / f"sub-{s + 1:02d}_task-x_desc-ivae_timeseries.tsv",
                                                                sep="\t", index=False)
        (sub / f"sub-{s + 1:02d}_task-x_desc-ivae_timeseries.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    record_outputs(root, [p for p in root.rglob("*") if p.is_file()])      # the fit's manifest
    return root


def test_stats_command_finds_the_effects_and_writes_every_file(tmp_path):
    fit = _fake_fit(tmp_path / "fit", 16, seed=3, amp_effect=2.0, coupling=0.6)
    table = _participants(16, np.random.default_rng(3))
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    out = tmp_path / "stats"
    assert main(["stats", str(fit), "--participants", str(tmp_path / "participants.tsv"), "--design", "group + age",
                 "--contrast", "group[patient] - group[control]", "--out", str(out), "--n-perm", "100"]) == 0
    label = "GroupPatientMinusGroupControl"
    for stat in ("t", "z", "p", "fdrz", "fwep"):
        img = nib.load(str(out / f"desc-{label}_stat-{stat}_statmap.nii.gz"))
        assert img.shape == SHAPE + (K,)
    fdrz = nib.load(str(out / f"desc-{label}_stat-fdrz_statmap.nii.gz")).get_fdata()
    summary = pd.read_csv(out / f"desc-{label}_maps.tsv", sep="\t")
    assert summary.loc[0, "n_voxels_fdr"] > 0 and (fdrz[..., 0] > 0).sum() == summary.loc[0, "n_voxels_fdr"]
    fnc = pd.read_csv(out / f"desc-{label}_fnc.tsv", sep="\t")
    assert list(fnc["edge"]) == ["ic01-ic02", "ic01-ic03", "ic02-ic03"]
    assert fnc.loc[2, "q"] < 0.05 and fnc.loc[2, "effect"] > 0 and fnc["p_fwe"].notna().all()
    side = json.loads((out / f"desc-{label}_fnc.json").read_text())
    assert all(c in side for c in ("effect", "t", "p", "z", "q", "d", "p_fwe"))
    assert (out / f"desc-{label}_spectra.tsv").is_file()
    design = pd.read_csv(out / "design.tsv", sep="\t")
    assert list(design.columns) == ["participant_id", "intercept", "group[patient]", "age"] and len(design) == 16
    record = json.loads((out / "stats.json").read_text())
    assert record["ContrastWeights"]["group[patient]"] == 1.0 and record["SignificantFDR"]["fnc"] >= 1


def test_stats_without_effects_finds_nothing_and_bad_inputs_write_nothing(tmp_path, capsys):
    fit = _fake_fit(tmp_path / "fit", 16, seed=4)
    table = _participants(16, np.random.default_rng(4))
    table.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    assert main(["stats", str(fit), "--participants", str(tmp_path / "p.tsv"), "--design", "group",
                 "--contrast", "group[patient] - group[control]"]) == 0
    record = json.loads((fit / "stats/stats.json").read_text())
    assert record["SignificantFDR"]["fnc"] == 0 and record["SignificantFDR"]["spectra"] == 0
    assert "stats/stats.json" in json.loads((fit / ".trends_ivae_outputs.json").read_text())["files"]
    table.iloc[:-1].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    for participants, design, contrast, match in [
        ("short.tsv", "group", "group[patient] - group[control]", "missing from the table: sub-16"),
        ("p.tsv", "group + age + months", "group[patient] - group[control]", "rank deficient"),
        ("p.tsv", "group", "group[sick] - group[control]", "unknown level 'sick'"),
    ]:
        out = tmp_path / "never"
        assert main(["stats", str(fit), "--participants", str(tmp_path / participants), "--design", design,
                     "--contrast", contrast, "--out", str(out)]) == 1
        assert match in capsys.readouterr().err and not out.exists()


def test_simulated_group_effects_change_patients_only():
    from trends_ivae.simulate import FMRISimParams, simulate_fmri
    from trends_ivae.simulate.groups import add_group_effects

    sim = simulate_fmri(FMRISimParams(n_subjects=4, n_volumes=400, n_components=4, n_task=0, shape=(10, 12, 10),
                                      nonlinear=False, seed=2))
    out, effects = add_group_effects(sim, source=0, amplitude_d=1.0, pair=(1, 2), delta_r=0.5)
    assert effects["patients"] == ["02", "04"]
    for s in (0, 2):                                                           # controls untouched
        assert np.array_equal(out.data[s], sim.data[s])
    tc = out.truth.timecourses
    r_patient = np.corrcoef(tc[1, :, 1], tc[1, :, 2])[0, 1]
    r_control = np.corrcoef(tc[0, :, 1], tc[0, :, 2])[0, 1]
    assert r_patient - r_control > 0.3
    gain = np.abs(out.truth.subject_maps[1, 0]).max() / np.abs(sim.truth.subject_maps[1, 0]).max()
    assert np.isclose(gain - 1, effects["amplitude_delta"] / np.abs(sim.truth.subject_maps[1, 0]).max(), rtol=1e-4)
    with pytest.raises(ValueError, match="distinct"):
        add_group_effects(sim, source=1, pair=(1, 1))
