"""What a new user meets on the command line: unusable checkpoints, events without
``trial_type``, resting data, file names without ``sub-``, a wrong ``--task``,
progress, the model order and fMRIPrep denoising."""
from __future__ import annotations

import pickle
import warnings

import pytest

from trends_ivae.cli.main import main
from trends_ivae.simulate import FMRISimParams, simulate_fmri, write_bids

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--n-components", "3", "--n-dims", "6", "--n-init", "1", "--max-epochs", "3",
        "--batch-size", "32", "--seed", "0", "--no-report", "--no-keep-prepared"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    sim = simulate_fmri(FMRISimParams(n_subjects=2, n_volumes=60, n_components=3, n_task=1,
                                      shape=(10, 12, 10), seed=3))
    return write_bids(sim, tmp_path_factory.mktemp("sim") / "bids")


@pytest.fixture(scope="module")
def prepared(bids, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prep") / "prep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prepare", "--bids", str(bids), "--out", str(folder), "--n-dims", "3"]) == 0
    return folder / "prepared.h5"


class _MakesAFile:
    """Unpickling this would create ``path``: what a checkpoint must never do."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _fit_with_checkpoints(prepared, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fit", "--prepared", str(prepared), "--out", str(out), *FAST,
                 "--checkpoint-dir", str(tmp_path / "ckpt")])
    return code, out, capsys.readouterr().err


def test_a_checkpoint_carrying_code_is_refused_and_never_run(prepared, tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    (tmp_path / "ckpt").mkdir()
    bad = tmp_path / "ckpt" / "restart00.pt"
    bad.write_bytes(pickle.dumps({"model": _MakesAFile(marker)}))
    code, out, err = _fit_with_checkpoints(prepared, tmp_path, capsys)
    assert code == 1
    assert not marker.exists()
    assert not out.exists()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(bad) in err and "not a usable trends-ivae checkpoint" in err
    assert "delete it" in err and "--checkpoint-dir" in err


def test_a_truncated_checkpoint_names_the_file(prepared, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    code, out, _ = _fit_with_checkpoints(prepared, tmp_path, capsys)   # a good run writes restart00.pt
    assert code == 0
    whole = (ckpt / "restart00.pt").read_bytes()
    (ckpt / "restart00.pt").write_bytes(whole[: len(whole) // 2])
    import shutil

    shutil.rmtree(out)
    code, out, err = _fit_with_checkpoints(prepared, tmp_path, capsys)
    assert code == 1
    assert not out.exists()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(ckpt / "restart00.pt") in err and "not a usable trends-ivae checkpoint" in err
    assert "delete it" in err


def test_a_checkpoint_of_another_model_names_the_difference(prepared, tmp_path, capsys):
    code, out, _ = _fit_with_checkpoints(prepared, tmp_path, capsys)   # 3 components
    assert code == 0
    code = main(["fit", "--prepared", str(prepared), "--out", str(tmp_path / "two"), *FAST,
                 "--n-components", "2", "--checkpoint-dir", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "two").exists()
    assert "restart00.pt" in err and "another model" in err and "n_components 3 instead of 2" in err


def _bold(bids, sub):
    return next((bids / f"sub-{sub}" / "func").glob("*_bold.nii.gz"))


def test_events_without_trial_type_are_one_condition_with_a_warning(bids, tmp_path, capsys):
    events = []
    for sub in ("01", "02"):
        src = next((bids / f"sub-{sub}" / "func").glob("*_events.tsv"))
        dst = tmp_path / f"sub-{sub}_notype_events.tsv"
        dst.write_text("\n".join("\t".join(line.split("\t")[:2]) for line in src.read_text().splitlines()))
        events.append(str(dst))
    with pytest.warns(UserWarning, match=r"sub-01_notype_events.tsv.*'trial_type'.*one condition, 'event'"):
        code = main(["prepare", "--func", str(_bold(bids, "01")), str(_bold(bids, "02")),
                     "--events", *events, "--aux", "task", "--n-dims", "3", "--out", str(tmp_path / "p")])
    assert code == 0
    assert "u=task (discrete, 2 levels)" in capsys.readouterr().out   # rest and 'event'


@pytest.fixture(scope="module")
def resting(bids, tmp_path_factory):
    """The simulated dataset without its events files."""
    import shutil

    root = tmp_path_factory.mktemp("rest") / "bids"
    shutil.copytree(bids, root)
    for ev in root.rglob("*_events.tsv"):
        ev.unlink()
    return root


def test_resting_data_get_window_u_by_default_and_say_so(resting, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(resting), "--out", str(out), *FAST, "--window", "10"]) == 0
    err = capsys.readouterr().err
    assert "no run has events" in err and "--aux window" in err
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["arguments"]["aux"] == "window"
    assert config["aux"]["spec"] == "window"
    assert config["arguments"]["chosen"]["aux"]["value"] == "window"


def test_a_typed_task_aux_on_resting_data_says_which_aux_to_use(resting, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fit", "--bids", str(resting), "--out", str(out), *FAST, "--aux", "task+window"])
    assert code == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "needs events" in err and "--aux window" in err


def test_the_bids_app_also_chooses_window_u_for_resting_data(resting, tmp_path, capsys):
    import json

    from trends_ivae.cli.bids_app import main as bids_main

    out = tmp_path / "derivs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bids_main([str(resting), str(out), "group", *FAST, "--window", "10"]) == 0
    assert "no run has events" in capsys.readouterr().err
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["aux"]["spec"] == "window"


def _anonymous_runs(bids, tmp_path):
    import shutil

    files = []
    for i, sub in enumerate(("01", "02")):
        dst = tmp_path / f"bold_run{i + 1}.nii.gz"
        shutil.copy(_bold(bids, sub), dst)
        files.append(str(dst))
    return files


def test_files_without_sub_become_one_subject_each_with_a_warning(bids, tmp_path, capsys):
    files = _anonymous_runs(bids, tmp_path)
    opts = ["--aux", "window", "--window", "10", "--n-dims", "3", "--tr", "2"]
    with pytest.warns(UserWarning, match=r"2 of the 2 .*no 'sub-'.*own subject.*--subject 01 01"):
        assert main(["prepare", "--func", *files, *opts, "--out", str(tmp_path / "a")]) == 0
    assert "2 subject(s)" in capsys.readouterr().out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["prepare", "--func", *files, *opts, "--subject", "01", "01",
                     "--out", str(tmp_path / "b")]) == 0
    assert "1 subject(s)" in capsys.readouterr().out
    assert not [w for w in caught if "sub-" in str(w.message)]


def test_a_wrong_task_lists_the_tasks_that_exist(bids, tmp_path, capsys):
    from trends_ivae.cli.bids_app import main as bids_main

    out = tmp_path / "out"
    assert main(["fit", "--bids", str(bids), "--task", "faces", "--out", str(out), *FAST]) == 1
    assert "tasks there: sim" in capsys.readouterr().err
    assert not out.exists()
    for level in ("participant", "group"):
        assert bids_main([str(bids), str(tmp_path / level), level, "--task", "faces", *FAST]) == 1
        err = capsys.readouterr().err
        assert "'faces'" in err and "tasks there: sim" in err, level


class _Terminal:
    """A stderr that says it is a terminal, and keeps what is written to it."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass


def test_progress_bars_on_a_terminal_only_and_not_with_q(bids, tmp_path, monkeypatch, capsys):
    import sys

    args = ["fit", "--bids", str(bids), *FAST]
    monkeypatch.setenv("COLUMNS", "200")   # the width of the pretended terminal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "--out", str(tmp_path / "plain")]) == 0       # stderr is not a terminal
        assert capsys.readouterr().err == ""
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert main([*args, "--out", str(tmp_path / "tty")]) == 0
        shown = term.buffer.getvalue()
        quiet = _Terminal()
        monkeypatch.setattr(sys, "stderr", quiet)
        assert main([*args, "--out", str(tmp_path / "quiet"), "-q"]) == 0
    for step in ("prepare: mask", "prepare: clean and reduce", "iVAE restart 1/1"):
        assert step in shown
    assert "2/2" in shown and "3/3" in shown and "epoch" in shown   # subjects, epochs
    assert "ELBO" in shown
    assert quiet.buffer.getvalue() == ""


def test_n_components_auto_is_estimated_printed_and_recorded(bids, prepared, tmp_path, capsys):
    import json

    import h5py

    fast = FAST[4:]   # without --n-components and --n-dims
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--bids", str(bids), "--out", str(out), "--n-components", "auto", *fast]) == 0
    err = capsys.readouterr().err
    assert "--n-components auto:" in err and "MDL after i.i.d. subsampling" in err and "cap" in err
    config = json.loads((out / "model" / "config.json").read_text())
    chosen = config["arguments"]["chosen"]["n_components"]
    assert chosen["method"] == "mdl" and chosen["n_components"] == config["arguments"]["n_components"]
    assert chosen["n_components"] <= chosen["max_order"] and chosen["cap_reason"]
    assert abs(chosen["n_components"] - 3) <= 1    # three simulated sources
    assert config["model"]["n_components"] == chosen["n_components"]
    assert config["prepare"]["n_dims_requested"] == "auto"
    sidecar = json.loads((out / "group" / "desc-ivae_components.json").read_text())
    assert f"ic{chosen['n_components']:02d}" in json.dumps(sidecar)
    # from a prepared file (3 dimensions): the estimate is capped there, and said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", "--prepared", str(prepared), "--out", str(tmp_path / "again"),
                     "--n-components", "auto", *fast]) == 0
    assert "--n-components auto:" in capsys.readouterr().err
    # a prepared file without the spectrum: a clean error
    old = tmp_path / "old.h5"
    old.write_bytes(prepared.read_bytes())
    with h5py.File(old, "a") as f:
        params = json.loads(f.attrs["parameters"])
        params.pop("spectrum")
        f.attrs["parameters"] = json.dumps(params)
    assert main(["fit", "--prepared", str(old), "--out", str(tmp_path / "old"), "--n-components", "auto",
                 *fast]) == 1
    err = capsys.readouterr().err
    assert "no eigenspectrum" in err and "old.h5" in err and "Traceback" not in err
    assert not (tmp_path / "old").exists()
