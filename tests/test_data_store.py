"""prepared.h5: round trip, subject-by-subject reading, atomic writes."""
import dataclasses
import json

import h5py
import numpy as np
import pytest

from trends_ivae.aux_variable import AuxVariable
from trends_ivae.data import store
from trends_ivae.data.store import (FORMAT_VERSION, PreparedData, iter_subjects, read_prepared,
                                  read_subject, write_prepared)


def _data(kind="discrete"):
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[1:3, 1:4, :] = 1
    nvox = int(mask.sum())
    n, d = 30, 4
    codes = np.zeros((n, 1), np.int64)
    u = (AuxVariable.discrete(rng.integers(0, 3, n), ["rest", "face", "house"], factor_codes=codes)
         if kind == "discrete" else AuxVariable.continuous(rng.normal(size=(n, 2)), ["c0", "c1"], factor_codes=codes))
    runs = [
        {"subject": "01", "subject_index": 0, "run": "1", "file": "a.nii", "n_volumes": 10, "tr": 2.0, "start": 0, "entities": {}},
        {"subject": "01", "subject_index": 0, "run": "2", "file": "b.nii", "n_volumes": 10, "tr": 2.0, "start": 10, "entities": {}},
        {"subject": "02", "subject_index": 1, "run": "1", "file": "c.nii", "n_volumes": 10, "tr": 2.0, "start": 20, "entities": {}},
    ]
    return PreparedData(
        x=rng.normal(size=(n, d)).astype(np.float32), u=u,
        subject=np.repeat([0, 1], [20, 10]), run=np.repeat([0, 1, 2], 10), volume=np.tile(np.arange(10), 3),
        basis=np.linalg.qr(rng.normal(size=(nvox, d)))[0].astype(np.float32),
        voxel_mean=rng.normal(size=nvox).astype(np.float32), mask=mask, affine=np.diag([3.0, 3, 3, 1]),
        aux={"spec": "task"}, subjects=["01", "02"], runs=runs, tr=2.0,
        parameters={"n_dims": d, "clean": {"detrend": True}}, versions=store.package_versions(),
    )


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_round_trip(tmp_path, kind):
    data = _data(kind)
    path = write_prepared(tmp_path / "prepared.h5", data)
    back = read_prepared(path)
    for name in ("x", "subject", "run", "volume", "basis", "voxel_mean", "mask", "affine", "scale", "u_factors"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.u.kind == kind and back.u.names == data.u.names
    np.testing.assert_array_equal(back.u.data, data.u.data)
    assert back.u.data.dtype == (np.int64 if kind == "discrete" else np.float32)
    for name in ("u_kind", "u_names", "aux", "subjects", "runs", "tr", "parameters"):
        assert getattr(back, name) == getattr(data, name)
    assert back.versions["format_version"] == FORMAT_VERSION
    assert back.clean_settings.detrend is True
    assert back.mask_img().shape == (4, 5, 3)
    with h5py.File(path) as f:
        assert f["x"].compression == "gzip" and f["x"].chunks is not None
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["versions"])["numpy"] == np.__version__


def test_read_subject_by_subject(tmp_path):
    data = _data()
    path = write_prepared(tmp_path / "p.h5", data)
    sub = read_subject(path, "sub-02")
    np.testing.assert_array_equal(sub["x"], data.x[20:])
    assert sub["subject"] == "02" and sub["index"] == 1
    assert [s["x"].shape[0] for s in iter_subjects(path)] == [20, 10]
    np.testing.assert_array_equal(data.subject_rows("01"), np.arange(20))
    with pytest.raises(KeyError):
        read_subject(path, "03")


def test_refuses_overwrite_and_leaves_nothing_partial(tmp_path, monkeypatch):
    data = _data()
    path = write_prepared(tmp_path / "p.h5", data)
    with pytest.raises(FileExistsError, match="p.h5"):
        write_prepared(path, data)
    write_prepared(path, data, overwrite=True)

    def boom(obj):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_dumps", boom)
    with pytest.raises(RuntimeError):
        write_prepared(tmp_path / "new.h5", data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]


def test_shape_checks():
    data = _data()
    with pytest.raises(ValueError, match="u has 5 rows"):
        dataclasses.replace(data, u=data.u[:5])
    with pytest.raises(TypeError, match="must be an AuxVariable"):
        dataclasses.replace(data, u=None)
    factors = AuxVariable.from_factors(np.zeros((30, 2), np.int64), [{"name": "a", "levels": ["x"]},
                                                                    {"name": "b", "levels": ["y"]}])
    with pytest.raises(ValueError, match="aux does not say so"):   # factors need their levels in aux
        dataclasses.replace(data, u=factors)
