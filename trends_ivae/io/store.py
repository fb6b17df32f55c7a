"""The prepared store: ``prepared.h5`` (h5py, chunked and gzip-compressed).

Layout (``FORMAT_VERSION`` 1)
-----------------------------
Datasets

========================  ==============================  ==================================
``x``                     (n, d) float32                  ``(Y - voxel_mean) @ basis / scale``, all runs concatenated
``u``                     (n,) int64 or (n, p) float32    auxiliary variable
``u_factors``             (n, n_factors) int64            each factor's own label (e.g. task when u is task+window)
``subject``               (n,) int64                      subject index (into attr ``subjects``)
``run``                   (n,) int64                      run index (into the run table)
``volume``                (n,) int64                      volume index within its run
``basis``                 (n_voxels, d) float32           shared spatial basis V, orthonormal columns
``voxel_mean``            (n_voxels,) float32             group mean removed before projection
``scale``                 (d,) float32                    1 (plain scores) or the whitening scale
``singular_values``       (d,) float64                    group singular values (MIGP estimates)
``mask``                  3-D uint8                       the mask on the input grid
``affine``                (4, 4) float64                  its affine
========================  ==============================  ==================================

Attributes: ``format_version``, ``u_kind`` ('discrete' | 'continuous'), ``u_names``,
``aux`` (JSON: spec, factors and their levels, window, step, delay), ``subjects``
(JSON list), ``runs`` (JSON run table: subject, subject_index, run, file, n_volumes,
tr, start, entities), ``tr``, ``parameters`` (JSON, incl. the cleaning settings),
``versions`` (JSON: package versions). Rows are ordered subject by subject, so a
subject's rows are contiguous and can be read alone (:func:`read_subject`).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "PreparedData",
    "write_prepared",
    "read_prepared",
    "read_subject",
    "iter_subjects",
    "read_rows",
    "read_meta",
    "n_rows",
    "package_versions",
]

FORMAT_VERSION = 1
_ROW_DATASETS = ("x", "u", "u_factors", "subject", "run", "volume")


def package_versions() -> dict:
    """Versions of the packages that shaped the prepared data."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version(), "format_version": FORMAT_VERSION}
    for pkg in ("trends-ivae", "numpy", "scipy", "pandas", "nibabel", "nilearn", "h5py", "joblib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


@dataclass
class PreparedData:
    """Everything the model needs (x, u) and everything needed to map back to the brain.

    Attributes
    ----------
    x : ndarray, shape (n, d), float32
        Reduced data, all runs of all subjects concatenated (subject by subject).
    u : ndarray, shape (n,) int64 or (n, p) float32
        Auxiliary variable.
    subject, run, volume : ndarray, shape (n,), int64
        Subject index, run index (into ``runs``) and volume index within the run.
    basis : ndarray, shape (n_voxels, d), float32
        Shared spatial basis V.
    voxel_mean : ndarray, shape (n_voxels,), float32
    mask : ndarray, 3-D uint8
    affine : ndarray, shape (4, 4)
    u_kind : {'discrete', 'continuous'}
    u_names : list of str
        Level names (discrete) or column names (continuous).
    aux : dict
        The u spec: ``spec``, ``factors`` (name and levels), ``combine``, ``window``, ...
    subjects : list of str
        Subject labels, in index order.
    runs : list of dict
        The run table.
    tr : float
        Repetition time in seconds (of the first run; each run's is in ``runs``).
    parameters : dict
        The prepare options, incl. ``clean`` (the cleaning settings).
    versions : dict
        Package versions and ``format_version``.
    scale : ndarray, shape (d,)
        Whitening scale (ones when not whitened).
    singular_values : ndarray, shape (d,)
    u_factors : ndarray, shape (n, n_factors), int64
        Each factor's own labels.
    """

    x: np.ndarray
    u: np.ndarray
    subject: np.ndarray
    run: np.ndarray
    volume: np.ndarray
    basis: np.ndarray
    voxel_mean: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    u_kind: str
    u_names: list
    aux: dict
    subjects: list
    runs: list
    tr: float
    parameters: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    scale: np.ndarray | None = None
    singular_values: np.ndarray | None = None
    u_factors: np.ndarray | None = None

    def __post_init__(self):
        if self.scale is None:
            self.scale = np.ones(self.basis.shape[1], dtype=np.float32)
        if self.singular_values is None:
            self.singular_values = np.full(self.basis.shape[1], np.nan)
        if self.u_factors is None:
            self.u_factors = np.zeros((self.x.shape[0], 0), dtype=np.int64)
        n = self.x.shape[0]
        for name in _ROW_DATASETS:
            arr = getattr(self, name)
            if arr.shape[0] != n:
                raise ValueError(f"PreparedData.{name} has {arr.shape[0]} rows, x has {n}")
        if self.basis.shape[1] != self.x.shape[1]:
            raise ValueError(f"basis has {self.basis.shape[1]} columns, x has {self.x.shape[1]}")
        if int(self.mask.sum()) != self.basis.shape[0]:
            raise ValueError(f"mask has {int(self.mask.sum())} voxels, basis has {self.basis.shape[0]} rows")

    # -- sizes ------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Total number of volumes."""
        return int(self.x.shape[0])

    @property
    def n_dims(self) -> int:
        """Reduced dimension d."""
        return int(self.x.shape[1])

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    @property
    def n_voxels(self) -> int:
        return int(self.basis.shape[0])

    @property
    def clean_settings(self):
        """The :class:`~trends_ivae.io.cleaning.CleanSettings` used (for new data)."""
        from .cleaning import CleanSettings

        return CleanSettings.from_dict(self.parameters.get("clean", {}))

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """Fraction of the group's (cleaned) variance in each component (MIGP estimate)."""
        total = self.parameters.get("total_sum_of_squares")
        if not total:
            return np.full(self.n_dims, np.nan)
        return np.asarray(self.singular_values, float) ** 2 / float(total)

    # -- access -----------------------------------------------------------
    def subject_rows(self, subject: int | str) -> np.ndarray:
        """Row indices of one subject (index or label)."""
        idx = self._subject_index(subject)
        return np.flatnonzero(self.subject == idx)

    def _subject_index(self, subject: int | str) -> int:
        if isinstance(subject, (int, np.integer)):
            if not 0 <= subject < self.n_subjects:
                raise IndexError(f"subject index {subject} out of range (0..{self.n_subjects - 1})")
            return int(subject)
        label = str(subject)
        label = label[4:] if label.startswith("sub-") else label
        if label not in self.subjects:
            raise KeyError(f"no subject {subject!r}; known: {self.subjects}")
        return self.subjects.index(label)

    def mask_img(self):
        """The mask as a nibabel image."""
        import nibabel as nib

        return nib.Nifti1Image(np.asarray(self.mask, dtype=np.uint8), np.asarray(self.affine))

    def reconstruct(self, x: np.ndarray | None = None) -> np.ndarray:
        """Voxel time series ``(x * scale) @ basis.T + voxel_mean`` (n, n_voxels)."""
        from .reduction import reconstruct

        return reconstruct(self.x if x is None else x, self.basis, self.voxel_mean, self.scale)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default)


def write_prepared(path: str | Path, data: PreparedData, *, overwrite: bool = False,
                   compression_level: int = 4) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : str or Path
        Target file, usually ``<out>/prepared.h5``.
    data : PreparedData
    overwrite : bool, default=False
        Refuse (``FileExistsError``) when ``path`` exists and this is False.

    Returns
    -------
    Path
    """
    import h5py

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True (--force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            n = data.n_samples
            row_chunk = max(1, min(n, 8192))
            opts = dict(compression="gzip", compression_opts=compression_level, shuffle=True)
            for name in _ROW_DATASETS:
                arr = np.asarray(getattr(data, name))
                if name == "x":
                    arr = arr.astype(np.float32)
                elif name == "u":
                    arr = arr.astype(np.int64 if data.u_kind == "discrete" else np.float32)
                else:
                    arr = arr.astype(np.int64)
                chunks = (row_chunk,) + arr.shape[1:] if arr.size else None
                if arr.ndim == 2 and arr.shape[1] == 0:
                    f.create_dataset(name, data=arr)
                else:
                    f.create_dataset(name, data=arr, chunks=chunks, **opts)
            nv, d = data.basis.shape
            f.create_dataset("basis", data=np.asarray(data.basis, np.float32),
                             chunks=(max(1, min(nv, 16384)), d), **opts)
            f.create_dataset("voxel_mean", data=np.asarray(data.voxel_mean, np.float32), **opts)
            f.create_dataset("scale", data=np.asarray(data.scale, np.float32))
            f.create_dataset("singular_values", data=np.asarray(data.singular_values, np.float64))
            f.create_dataset("mask", data=np.asarray(data.mask, np.uint8), **opts)
            f.create_dataset("affine", data=np.asarray(data.affine, np.float64))
            a = f.attrs
            a["format_version"] = FORMAT_VERSION
            a["u_kind"] = data.u_kind
            a["u_names"] = _dumps(list(map(str, data.u_names)))
            a["aux"] = _dumps(data.aux)
            a["subjects"] = _dumps(list(map(str, data.subjects)))
            a["runs"] = _dumps(data.runs)
            a["tr"] = float(data.tr)
            a["parameters"] = _dumps(data.parameters)
            a["versions"] = _dumps(data.versions or package_versions())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _open(path):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared file {str(path)!r} does not exist")
    f = h5py.File(path, "r")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        f.close()
        raise ValueError(f"{str(path)!r} has format_version {version}; this version reads {FORMAT_VERSION}")
    return f


def _meta(f) -> dict:
    a = f.attrs
    return dict(
        u_kind=str(a["u_kind"]), u_names=json.loads(a["u_names"]), aux=json.loads(a["aux"]),
        subjects=json.loads(a["subjects"]), runs=json.loads(a["runs"]), tr=float(a["tr"]),
        parameters=json.loads(a["parameters"]), versions=json.loads(a["versions"]),
    )


def read_prepared(path: str | Path) -> PreparedData:
    """Read a whole ``prepared.h5`` written by :func:`write_prepared`."""
    with _open(path) as f:
        arrays = {name: f[name][()] for name in _ROW_DATASETS}
        for name in ("basis", "voxel_mean", "scale", "singular_values", "mask", "affine"):
            arrays[name] = f[name][()]
        return PreparedData(**arrays, **_meta(f))


def read_subject(path: str | Path, subject: int | str) -> dict:
    """One subject's rows of a prepared file, without reading the others.

    Returns
    -------
    dict
        ``x``, ``u``, ``u_factors``, ``run``, ``volume`` (that subject's rows),
        ``subject`` (its label) and ``index``.
    """
    with _open(path) as f:
        subjects = json.loads(f.attrs["subjects"])
        if isinstance(subject, (int, np.integer)):
            idx = int(subject)
            if not 0 <= idx < len(subjects):
                raise IndexError(f"subject index {idx} out of range (0..{len(subjects) - 1})")
        else:
            label = str(subject)[4:] if str(subject).startswith("sub-") else str(subject)
            if label not in subjects:
                raise KeyError(f"no subject {subject!r} in {str(path)!r}; known: {subjects}")
            idx = subjects.index(label)
        runs = [r for r in json.loads(f.attrs["runs"]) if r["subject_index"] == idx]
        start = min(r["start"] for r in runs)
        stop = max(r["start"] + r["n_volumes"] for r in runs)
        out = {name: f[name][start:stop] for name in _ROW_DATASETS if name != "subject"}
    out.update(subject=subjects[idx], index=idx)
    return out


def iter_subjects(path: str | Path) -> Iterator[dict]:
    """Yield :func:`read_subject` for every subject in order."""
    with _open(path) as f:
        n = len(json.loads(f.attrs["subjects"]))
    for i in range(n):
        yield read_subject(path, i)


def n_rows(path: str | Path) -> int:
    """Number of rows (volumes) of a prepared file, without reading them."""
    with _open(path) as f:
        return int(f["x"].shape[0])


def read_meta(path: str | Path) -> dict:
    """The attributes of a prepared file (``u_kind``, ``u_names``, ``aux``, ``subjects``,
    ``runs``, ``tr``, ``parameters``, ``versions``), without reading any row."""
    with _open(path) as f:
        return _meta(f)


def read_rows(path: str | Path, rows: slice,
              names: Sequence[str] = ("x", "u", "subject", "run", "volume")) -> dict[str, np.ndarray]:
    """The rows ``rows`` (a slice, possibly strided) of the row datasets ``names``.

    This is how each process of a distributed fit reads its share of the rows
    (:func:`trends_ivae.distributed.row_share`): only those rows are kept in memory.
    """
    with _open(path) as f:
        n = int(f["x"].shape[0])
        start, stop, step = rows.indices(n)
        if step < 1:
            raise ValueError("read_rows needs a slice with a positive step")
        unknown = [k for k in names if k not in _ROW_DATASETS]
        if unknown:
            raise KeyError(f"not row datasets: {unknown}; known: {list(_ROW_DATASETS)}")
        return {k: f[k][start:stop:step] for k in names}
