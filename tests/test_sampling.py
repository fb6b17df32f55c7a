"""fMRI generated from a fitted model (GroupIVAE.sample, trends-ivae sample): sampled runs
look like the real ones (per-condition mean maps, voxel variance), are marked synthetic,
and bad requests are refused without writing anything."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from trends_ivae import GroupIVAE
from trends_ivae.cli.main import main
from trends_ivae.data.bids import find_bids_runs
from trends_ivae.data.cleaning import clean_run

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bids"


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    assert main(["fit", "--bids", str(SAMPLE), "--out", str(out), "--n-components", "8", "--n-init", "1",
                 "--seed", "0", "--no-report", "-q"]) == 0
    return out


def test_sampled_runs_match_the_real_data(fit_dir):
    model = GroupIVAE.load(fit_dir, device="cpu")
    p = model.prepared_
    mask = p.mask_img()
    inside = np.asarray(mask.dataobj) > 0
    real, fake, labels = [], [], []
    for i, run in enumerate(find_bids_runs(SAMPLE)):
        real.append(clean_run(run, mask, p.clean_settings, tr=p.tr))
        s = model.sample(like_run=i, random_state=i)
        assert s.img.shape == mask.shape + (real[-1].shape[0],)
        fake.append(s.img.get_fdata(dtype=np.float32)[inside].T)
        labels.append(np.asarray(s.u["task"].astype(str)))
    R, F, L = np.vstack(real), np.vstack(fake), np.concatenate(labels)
    conditions = sorted(set(L) - {"rest"})
    assert len(conditions) == 3
    for c in conditions:
        a, b = R[L == c].mean(0) - R.mean(0), F[L == c].mean(0) - F.mean(0)
        assert np.corrcoef(a, b)[0, 1] >= 0.8, c
    ratio = F.var(0).mean() / R.var(0).mean()
    assert 0.8 <= ratio <= 1.2
    quiet = model.sample(like_run=0, noise=False, random_state=0)
    assert quiet.img.get_fdata().var(-1)[inside].mean() < F[:len(real[0])].var(0).mean()


def test_u_of_a_sampled_run(fit_dir):
    model = GroupIVAE.load(fit_dir, device="cpu")
    s = model.sample(condition="motor", n_volumes=70, random_state=0)
    assert (s.u["task"].astype(str) == "motor").all() and s.img.shape[-1] == 70
    assert s.events.to_dict("records") == [{"onset": 0.0, "duration": 140.0, "trial_type": "motor"}]
    assert s.u["window"].nunique() == 4        # the reference run's windows, in order
    ev = pd.DataFrame({"onset": [0.0, 40.0], "duration": [20.0, 20.0], "trial_type": ["visual", "motor"]})
    s = model.sample(ev, n_volumes=40, random_state=0)
    assert list(s.u["task"].astype(str)[:12]) == ["visual"] * 10 + ["rest"] * 2
    assert s.sidecar["Synthetic"] is True and s.sidecar["Model"]["Estimator"] == "IVAE"
    with pytest.raises(ValueError, match="not seen during fit"):
        model.sample(condition="smell")
    with pytest.raises(ValueError, match="no subject factor"):
        model.sample(subject="01")
    with pytest.raises(ValueError, match="like_run"):
        model.sample(like_run=99)


def test_sample_command(fit_dir, tmp_path, capsys):
    out = tmp_path / "synth" / "sub-01_task-synth_bold.nii.gz"
    assert main(["sample", str(fit_dir), "--out", str(out), "--condition", "auditory", "--n-volumes", "12"]) == 0
    img = nib.load(out)
    assert img.shape[-1] == 12 and np.isclose(img.header.get_zooms()[-1], 2.0)
    side = json.loads(out.with_name("sub-01_task-synth_bold.json").read_text())
    assert side["Synthetic"] is True and side["Sources"] == str(fit_dir.resolve())
    events = pd.read_csv(out.with_name("sub-01_task-synth_events.tsv"), sep="\t")
    assert list(events.trial_type) == ["auditory"]
    before = sorted(p.name for p in out.parent.iterdir())
    for argv, message in [([], "exist"), (["--force", "--condition", "smell"], "not seen"),
                          (["--force", "--events", str(tmp_path / "none.tsv")], "no such file")]:
        with pytest.raises(SystemExit):
            main(["sample", str(fit_dir), "--out", str(out), *argv])
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == before      # nothing partial, nothing removed
    with pytest.raises(SystemExit):
        main(["sample", str(tmp_path / "nofit"), "--out", str(tmp_path / "a.nii.gz")])
    assert "does not exist" in capsys.readouterr().err


def test_sample_seed_is_recorded_and_reproduces(fit_dir, tmp_path):
    """--seed N twice gives byte-identical files; the sidecar records N itself, and the seed
    recorded for a run drawn without one gives that run back."""
    outs = [tmp_path / d / "sub-01_task-sim_bold.nii.gz" for d in ("a", "b")]
    for out in outs:
        assert main(["sample", str(fit_dir), "--out", str(out), "--seed", "0", "--n-volumes", "20"]) == 0
    for name in ("sub-01_task-sim_bold.nii.gz", "sub-01_task-sim_bold.json", "sub-01_task-sim_events.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "sub-01_task-sim_bold.json").read_text())["RandomSeed"] == 0
    model = GroupIVAE.load(fit_dir, device="cpu")
    drawn = model.sample(n_volumes=20, random_state=np.random.RandomState(3))
    again = model.sample(n_volumes=20, random_state=drawn.sidecar["RandomSeed"])
    assert np.array_equal(drawn.img.get_fdata(), again.img.get_fdata())
    with pytest.raises(SystemExit):
        main(["sample", str(fit_dir), "--out", str(tmp_path / "c.nii.gz"), "--seed", "-1"])


def test_sampled_run_keeps_the_fits_space(fit_dir, tmp_path):
    out = tmp_path / "sub-01_task-sim_bold.nii.gz"
    assert main(["sample", str(fit_dir), "--out", str(out), "--n-volumes", "5"]) == 0
    fit = nib.load(fit_dir / "group" / "desc-ivae_components.nii.gz").header
    run = nib.load(out).header
    assert (int(run["qform_code"]), int(run["sform_code"])) == (int(fit["qform_code"]), int(fit["sform_code"]))
    assert int(fit["sform_code"]) == 4          # sample_data is in MNI space (4/4), not the generic 1/2
    assert np.allclose(run.get_best_affine(), fit.get_best_affine())
