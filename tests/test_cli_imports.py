"""torch is imported only by the commands that train: ``--help``, ``prepare``, ``simulate``, ``report``,
the parsing of ``report`` and the BIDS App's participant level never load it (each is run
in a fresh interpreter, as from the shell)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "bids"


def _loads_torch(code: str, tmp_path: Path) -> bool:
    """Run ``code`` in a fresh interpreter; whether torch got imported (the code must succeed)."""
    probe = tmp_path / "torch_loaded.txt"
    script = (f"import sys, warnings\nwarnings.simplefilter('ignore')\n{code}\n"
              f"open({str(probe)!r}, 'w').write(str('torch' in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return probe.read_text() == "True"


def _main(argv: list[str], entry: str = "trends_ivae.cli.main") -> str:
    return (f"from {entry} import main\n"
            f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
            f"assert code == 0, code")


@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["fit", "--help"], ["report", "--help"],
                                  ["simulate", "--help"], ["demo", "--help"]])
def test_help_does_not_import_torch(argv, tmp_path):
    assert not _loads_torch(_main(argv), tmp_path)


def test_prepare_and_simulate_do_not_import_torch(tmp_path):
    argv = ["prepare", "--bids", str(SAMPLE), "--participant-label", "01", "--n-dims", "3", "--out", "prep"]
    assert not _loads_torch(_main(argv), tmp_path)
    assert (tmp_path / "prep" / "prepared.h5").is_file()
    argv = ["simulate", "sim", "--subjects", "1", "--scans", "20", "--components", "2"]
    assert not _loads_torch(_main(argv), tmp_path)


def test_bids_app_participant_level_does_not_import_torch(tmp_path):
    argv = [str(SAMPLE), str(tmp_path / "derivs"), "participant", "--participant-label", "01"]
    assert not _loads_torch(_main(argv, "trends_ivae.cli.bids_app"), tmp_path)
    assert (tmp_path / "derivs" / "sub-01").is_dir()


def test_the_workflow_package_imports_no_torch(tmp_path):
    assert not _loads_torch("import trends_ivae.workflow, trends_ivae.cli.options", tmp_path)


def test_report_of_a_fit_does_not_import_torch(tmp_path):
    from trends_ivae.cli.main import main

    out = tmp_path / "fit"
    assert main(["fit", "--bids", str(SAMPLE), "--out", str(out), "--n-components", "3", "--n-init", "1",
                 "--max-epochs", "5", "--no-report", "-q"]) == 0
    assert (out / "model" / "prior.npz").is_file()
    assert not _loads_torch(_main(["report", str(out)]), tmp_path)
    page = (out / "report.html").read_text()
    assert "learned prior is not shown" not in page and "prior" in page
