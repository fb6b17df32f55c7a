"""The one-shot GPU check (``benchmarks/gpu_check.py``) at its tiny size on the CPU: the
table's rows and fields, the JSON file, the GPU rows marked absent without CUDA, and the
device-side simulator's shapes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"what", "device", "precision", "data", "status", "samples", "epochs", "seconds", "samples_per_s",
          "mcc", "peak_gpu_mb"}


def _check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "check.json"
    torch.set_num_threads(1)
    assert _check().main(["--tiny", "--threads", "1", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_tiny_check_writes_every_row_with_its_fields(result, capsys):
    rows = result["rows"]
    assert all(set(r) == FIELDS for r in rows)
    kinds = {(r["what"].split()[0], r["device"], r["precision"], r["data"]) for r in rows}
    for dev, prec, data in [("cpu", "float32", "resident"), ("cuda", "float32", "resident"),
                            ("cuda", "bf16 autocast", "resident"), ("cuda", "float32", "streamed"),
                            ("cuda", "bf16 autocast", "streamed")]:
        assert ("throughput", dev, prec, data) in kinds
    assert {r["precision"] for r in rows if r["what"].startswith("cohort")} == {"float32", "bf16 autocast"}
    cuda = torch.cuda.is_available()
    assert result["machine"]["gpu"] == (torch.cuda.get_device_name(0) if cuda else None)
    for r in rows:
        if r["status"] == "ok":
            assert r["seconds"] > 0 and r["samples_per_s"] > 0 and r["samples"] > 0 and r["epochs"] > 0
            assert (r["peak_gpu_mb"] is not None) == (r["device"] == "cuda")
        else:
            assert not cuda and r["device"] == "cuda" or r["precision"] == "bf16 autocast"
            assert r["status"].startswith("absent") and r["seconds"] is None and r["samples_per_s"] is None
    fitted = [r for r in rows if r["what"].startswith("cohort") and r["status"] == "ok"]
    assert fitted and all(0.0 <= r["mcc"] <= 1.0 for r in fitted)
    chk = result["bf16_check"]
    assert chk["tolerance"] == 0.01
    if not cuda:
        assert chk["passed"] is None and chk["bf16_mcc"] is None


def test_tiny_check_prints_one_table(tmp_path, capsys):
    mod = _check()
    rows = [mod.Row("throughput", "cpu", "float32", "resident", samples=10, epochs=1, seconds=0.5,
                    samples_per_s=18.0),
            mod.Row("throughput", "cuda", "float32", "resident", status="absent (no CUDA device)")]
    text = mod.table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| what | device")
    assert "| 18 |" in lines[2] and "absent (no CUDA device)" in lines[3]
    assert mod.bf16_check(rows)["passed"] is None
    cohort = [mod.Row("cohort", "cuda", "float32", "resident", mcc=0.90),
              mod.Row("cohort", "cuda", "bf16 autocast", "resident", mcc=0.895)]
    assert mod.bf16_check(cohort)["passed"] is True
    cohort[1].mcc = 0.87
    assert mod.bf16_check(cohort)["passed"] is False


def test_device_side_simulator_shapes_and_levels():
    mod = _check()
    X, U, S = mod.simulate_segments(torch, 5, 40, 3, 6, torch.device("cpu"), seed=0)
    assert X.shape == (200, 6) and U.shape == (200, 1) and S.shape == (200, 3)
    assert X.dtype == torch.float32 and X.device.type == "cpu"
    assert np.array_equal(np.unique(U.numpy()), np.arange(5))
    np.testing.assert_allclose(X.mean(0).numpy(), 0, atol=1e-5)
    X2, _, _ = mod.simulate_segments(torch, 5, 40, 3, 6, torch.device("cpu"), seed=0)
    assert torch.equal(X, X2)
    # the sources' scale changes between segments (what makes u informative)
    per_seg = S.reshape(5, 40, 3).std(1)
    assert float(per_seg.max() / per_seg.min()) > 1.5
