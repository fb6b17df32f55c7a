"""One output guard for every writing path: a file the tool did not write is never replaced.

Each command that writes (prepare, fit, report, sample, simulate, the BIDS App's
participant and group levels, pipelines/group_ivae.py and pipelines/dual_regression.py)
is run with a file of the user's at an output path (and one inside its output folder),
without and with ``--force``: the file must be byte-identical afterwards, the exit code
non-zero, and the message must say what to do, truly (no "pass --force" when --force
would refuse too). One tiny fit (sample_data, 3 components, 2 epochs) serves every case.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest

from trends_ivae.cli.bids_app import main as bids_main
from trends_ivae.cli.main import main
from trends_ivae.export.guard import ForeignOutputError, check_output_files, is_own_file, record_output_files
from trends_ivae.export.outputs import MANIFEST_NAME, read_manifest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "bids"
FIT = ["--n-components", "3", "--n-init", "1", "--max-epochs", "2", "--seed", "0", "--no-report", "-q"]
USERS = b"the user's own file\n"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"guard_{name}", ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _users_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(USERS)
    return _digest(path)


def _code(call) -> int:
    """The exit code of ``call()``: its return value, or a SystemExit's code (parser.error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except SystemExit as exc:
            return exc.code


def _refused(call, capsys, path: Path, digest: str, *, force: bool) -> str:
    """Run ``call``; assert it failed, left ``path`` byte-identical and, without ``force``,
    did not advise --force (which would refuse too). Returns stderr."""
    code = _code(call)
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert _digest(path) == digest
    assert "did not write" in err, err
    if not force:
        assert "pass --force" not in err, err
    return err


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("guard") / "fit"
    assert _code(lambda: main(["fit", "--bids", str(SAMPLE), "--out", str(out), *FIT])) == 0
    return out


@pytest.fixture()
def fit_copy(fit_dir, tmp_path):
    out = tmp_path / "fit"
    shutil.copytree(fit_dir, out)
    return out


# -- the guard itself -------------------------------------------------------------------------------

def test_guard_rules(tmp_path):
    users = tmp_path / "notes.txt"
    _users_file(users)
    with pytest.raises(ForeignOutputError, match="--out.*notes.txt.*did not write.*--force included"):
        check_output_files([users], force=True, what="--out")
    own = tmp_path / "run.nii.gz"
    own.write_bytes(b"x")
    record_output_files([own])
    assert read_manifest(tmp_path) == {"run.nii.gz"} and is_own_file(own)
    with pytest.raises(FileExistsError, match="pass --force to replace it"):
        check_output_files([own], force=False)
    check_output_files([own, tmp_path / "new.json"], force=True)          # its own, with force
    (tmp_path / "folder").mkdir()
    with pytest.raises(ForeignOutputError, match="a folder"):
        check_output_files([tmp_path / "folder"], force=True)
    (tmp_path / "link").symlink_to(own)                                    # a link is never the tool's
    with pytest.raises(ForeignOutputError, match="a link"):
        check_output_files([tmp_path / "link"], force=True)
    page = tmp_path / "old.html"
    page.write_text("<!DOCTYPE html><html><head><title>trends_ivae report: fit</title>")
    assert not is_own_file(page) and is_own_file(page, b"<title>trends_ivae report: ")
    assert not is_own_file(tmp_path / MANIFEST_NAME)


# -- fit ----------------------------------------------------------------------------------------------

def test_fit_keeps_a_users_file(fit_copy, tmp_path, capsys):
    digest = _users_file(fit_copy / "my_fnc.csv")
    for force in (False, True):
        err = _refused(lambda: main(["fit", "--bids", str(SAMPLE), "--out", str(fit_copy), *FIT]
                                    + ["--force"] * force), capsys, fit_copy / "my_fnc.csv", digest, force=force)
        assert "my_fnc.csv" in err and "move them out" in err
    not_a_folder = tmp_path / "results"
    digest = _users_file(not_a_folder)
    for force in (False, True):
        _refused(lambda: main(["fit", "--bids", str(SAMPLE), "--out", str(not_a_folder), *FIT]
                              + ["--force"] * force), capsys, not_a_folder, digest, force=force)


def test_fit_force_message_is_true(fit_copy, capsys):
    assert _code(lambda: main(["fit", "--bids", str(SAMPLE), "--out", str(fit_copy), *FIT])) == 2
    assert "pass --force" in capsys.readouterr().err       # its own outputs: --force then works
    assert _code(lambda: main(["fit", "--bids", str(SAMPLE), "--out", str(fit_copy), *FIT, "--force"])) == 0


# -- report -------------------------------------------------------------------------------------------

def test_report_never_writes_over_a_users_file(fit_copy, tmp_path, capsys):
    cases = [tmp_path / "notes.txt", fit_copy / "my_fnc.csv"]
    for target in cases:
        digest = _users_file(target)
        err = _refused(lambda: main(["report", str(fit_copy), "--output", str(target), "--no-viewer"]),
                       capsys, target, digest, force=False)
        assert "--output" in err and target.name in err
    digest = _users_file(fit_copy / "report.html")         # a page of the user's at the default place
    _refused(lambda: main(["report", str(fit_copy), "--no-viewer"]), capsys, fit_copy / "report.html",
             digest, force=False)


def test_report_replaces_its_own_page(fit_dir, tmp_path):
    from trends_ivae.workflow.report import check_report_page

    page = tmp_path / "pages" / "fit.html"
    assert _code(lambda: main(["report", str(fit_dir), "--output", str(page), "--no-viewer", "--dpi", "20"])) == 0
    assert read_manifest(page.parent) == {"fit.html"}
    check_report_page(page)                                 # the next report may replace it


# -- sample -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("taken", ["sub-01_task-sim_bold.nii.gz", "sub-01_task-sim_events.tsv",
                                   "sub-01_task-sim_bold.json"])
def test_sample_keeps_a_users_file(fit_dir, tmp_path, capsys, taken):
    out = tmp_path / "synth" / "sub-01_task-sim_bold.nii.gz"
    digest = _users_file(out.parent / taken)
    for force in (False, True):
        err = _refused(lambda: main(["sample", str(fit_dir), "--out", str(out), "--seed", "0"]
                                    + ["--force"] * force), capsys, out.parent / taken, digest, force=force)
        assert taken in err
    assert sorted(p.name for p in out.parent.iterdir()) == [taken]   # nothing else written


def test_sample_force_replaces_only_its_own(fit_dir, tmp_path, capsys):
    out = tmp_path / "sub-01_task-sim_bold.nii.gz"
    assert _code(lambda: main(["sample", str(fit_dir), "--out", str(out), "--seed", "1"])) == 0
    assert read_manifest(tmp_path) == {out.name, "sub-01_task-sim_events.tsv", "sub-01_task-sim_bold.json"}
    assert _code(lambda: main(["sample", str(fit_dir), "--out", str(out), "--seed", "2"])) == 2
    assert "pass --force" in capsys.readouterr().err
    assert _code(lambda: main(["sample", str(fit_dir), "--out", str(out), "--seed", "2", "--force"])) == 0
    assert json.loads((tmp_path / "sub-01_task-sim_bold.json").read_text())["RandomSeed"] == 2


# -- simulate -----------------------------------------------------------------------------------------

SIM = ["--subjects", "1", "--scans", "20", "--components", "2", "--task-components", "1"]


def test_simulate_keeps_a_users_file(tmp_path, capsys):
    out = tmp_path / "sim"
    digest = _users_file(out / "mine.txt")
    for force in (False, True):
        _refused(lambda: main(["simulate", str(out), *SIM] + ["--force"] * force), capsys, out / "mine.txt",
                 digest, force=force)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert _code(lambda: main(["simulate", str(tmp_path / "own"), *SIM])) == 0
    assert _code(lambda: main(["simulate", str(tmp_path / "own"), *SIM])) == 2
    assert "pass --force" in capsys.readouterr().err        # true: its own folder
    assert _code(lambda: main(["simulate", str(tmp_path / "own"), *SIM, "--force"])) == 0


# -- prepare ------------------------------------------------------------------------------------------

PREP = ["prepare", "--bids", str(SAMPLE), "--participant-label", "01", "02", "--n-dims", "4"]


@pytest.mark.parametrize("taken", ["prepared.h5", "prepare_config.json"])
def test_prepare_keeps_a_users_file(tmp_path, capsys, taken):
    out = tmp_path / "prep"
    digest = _users_file(out / taken)
    for force in (False, True):
        _refused(lambda: main([*PREP, "--out", str(out)] + ["--force"] * force), capsys, out / taken, digest,
                 force=force)
    assert [p.name for p in out.iterdir()] == [taken]


def test_prepare_force_replaces_only_its_own(tmp_path, capsys):
    out = tmp_path / "prep"
    assert _code(lambda: main([*PREP, "--out", str(out)])) == 0
    assert read_manifest(out) == {"prepared.h5", "prepare_config.json"}
    assert _code(lambda: main([*PREP, "--out", str(out)])) == 2
    assert "pass --force" in capsys.readouterr().err
    digest = _users_file(out / "notes.txt")                # beside its outputs: kept
    assert _code(lambda: main([*PREP, "--out", str(out), "--force"])) == 0
    assert _digest(out / "notes.txt") == digest


# -- the BIDS App -------------------------------------------------------------------------------------

def _app(bids_out, *argv):
    return lambda: bids_main([str(SAMPLE), str(bids_out), *argv])


def test_bids_group_keeps_a_users_file(tmp_path, capsys):
    out = tmp_path / "app"
    digest = _users_file(out / "group" / "my_notes.txt")
    _refused(_app(out, "group", *FIT[:-2], "--force"), capsys, out / "group" / "my_notes.txt", digest,
             force=True)


def test_bids_group_message_is_true(tmp_path, capsys):
    out = tmp_path / "app"
    digest = _users_file(out / "group" / "my_notes.txt")
    _refused(_app(out, "group", *FIT[:-2]), capsys, out / "group" / "my_notes.txt", digest, force=False)


@pytest.mark.parametrize("force", [False, True])
def test_bids_participant_keeps_a_users_file(tmp_path, capsys, force):
    out = tmp_path / "app"
    share = out / "sub-01" / "sub-01_desc-ivae_share.h5"
    digest = _users_file(share)
    _refused(_app(out, "participant", "--participant-label", "01", *["--force"] * force), capsys, share, digest,
             force=force)


# -- pipelines/ ---------------------------------------------------------------------------------------

def test_group_ivae_pipeline_keeps_a_users_file(tmp_path, capsys):
    group_ivae = _script("group_ivae")
    out = tmp_path / "results"
    digest = _users_file(out / "my_fnc.csv")
    config = str(ROOT / "pipelines" / "configs" / "rest_study.toml")
    for force in (False, True):
        _refused(lambda: group_ivae.main([config, "--out", str(out)] + ["--force"] * force), capsys,
                 out / "my_fnc.csv", digest, force=force)


def test_dual_regression_keeps_a_users_file(fit_dir, tmp_path, capsys):
    dual_regression = _script("dual_regression")
    out = tmp_path / "dr"
    digest = _users_file(out / "my_fnc.csv")
    argv = [str(fit_dir), "--bids", str(SAMPLE), "--participant-label", "01", "--out", str(out), "--force"]
    try:
        code = _code(lambda: dual_regression.main(argv))
    except FileExistsError as exc:   # (the script lets the guard's error through)
        assert "did not write" in str(exc)
        code = 1
    assert code not in (0, None) and _digest(out / "my_fnc.csv") == digest


def test_dual_regression_message_is_true(fit_dir, tmp_path, capsys):
    dual_regression = _script("dual_regression")
    out = tmp_path / "dr"
    digest = _users_file(out / "my_fnc.csv")
    _refused(lambda: dual_regression.main([str(fit_dir), "--bids", str(SAMPLE), "--participant-label", "01",
                                           "--out", str(out)]), capsys, out / "my_fnc.csv", digest, force=False)
