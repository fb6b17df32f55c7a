"""The prepared store: ``prepared.h5`` (h5py, chunked and gzip-compressed).

Layout (``FORMAT_VERSION`` 2)
-----------------------------
Datasets

========================  ==============================  ==================================
``x``                     (n, d) float32                  ``(Y - voxel_mean) @ basis / scale``, all runs concatenated
``u``                     (n,) int64 or (n, p) float32    auxiliary variable; absent for concatenated factors
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
``aux`` (JSON: spec, factors and their levels, combine, window, step, delay), ``subjects``
(JSON list), ``runs`` (JSON run table: subject, subject_index, run, file, n_volumes,
tr, start, entities), ``tr``, ``parameters`` (JSON, incl. the cleaning settings),
``versions`` (JSON: package versions). Rows are ordered subject by subject, so a
subject's rows are contiguous and can be read alone (:func:`read_subject`).

In memory u is one :class:`~trends_ivae.aux_variable.AuxVariable` (``PreparedData.u``);
:meth:`~trends_ivae.aux_variable.AuxVariable.from_store` and ``store_arrays`` map it
to and from these datasets and attributes. Several discrete factors combined by
``concat`` (``u_kind`` 'continuous', ``u_names`` ``"task=face"``, ...) have no ``u``
dataset: they are ``u_factors`` with the factors' levels of ``aux``, and a dense
``(n, sum K_i)`` u, whose width grows with the cohort for per-run windows, is built
only on demand (:meth:`PreparedData.dense_u`). Format 1 (the same layout, but with the
dense ``u`` written for concatenated factors too) is still read; its dense ``u`` is
then not loaded either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..atomic import atomic_path
from ..aux_variable import AuxVariable

__all__ = [
    "reconstruct",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "PreparedData",
    "write_prepared",
    "read_prepared",
    "read_subject",
    "iter_subjects",
    "read_rows",
    "read_meta",
    "read_aux",
    "n_rows",
    "package_versions",
]

FORMAT_VERSION = 2
#: the format versions :func:`read_prepared` and the other readers accept
READABLE_VERSIONS = (1, 2)
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
    u : AuxVariable
        The auxiliary variable, one row per volume (discrete labels, discrete factors
        held as their codes, or continuous columns); ``u_kind``, ``u_names``,
        ``u_factors`` and :meth:`dense_u` are views of it.
    subject, run, volume : ndarray, shape (n,), int64
        Subject index, run index (into ``runs``) and volume index within the run.
    basis : ndarray, shape (n_voxels, d), float32
        Shared spatial basis V.
    voxel_mean : ndarray, shape (n_voxels,), float32
    mask : ndarray, 3-D uint8
    affine : ndarray, shape (4, 4)
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
    """

    x: np.ndarray
    u: AuxVariable = field(repr=False)
    subject: np.ndarray
    run: np.ndarray
    volume: np.ndarray
    basis: np.ndarray
    voxel_mean: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    aux: dict
    subjects: list
    runs: list
    tr: float
    parameters: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    scale: np.ndarray | None = None
    singular_values: np.ndarray | None = None

    def __post_init__(self):
        if self.scale is None:
            self.scale = np.ones(self.basis.shape[1], dtype=np.float32)
        if self.singular_values is None:
            self.singular_values = np.full(self.basis.shape[1], np.nan)
        if not isinstance(self.u, AuxVariable):
            raise TypeError(f"PreparedData.u must be an AuxVariable, got {type(self.u).__name__}")
        if self.u.on_demand and not AuxVariable.stored_as_factors(
                self.aux, "continuous", self.u.factor_codes.shape, self.u.names):
            raise ValueError("PreparedData.u is factors, but aux does not say so: aux must have "
                             "combine='concat' and u's factors (names and levels)")
        n = self.x.shape[0]
        for name in _ROW_DATASETS:
            length = len(self.u) if name in ("u", "u_factors") else getattr(self, name).shape[0]
            if length != n:
                raise ValueError(f"PreparedData.{name} has {length} rows, x has {n}")
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
        """The :class:`~trends_ivae.data.cleaning.CleanSettings` used (for new data)."""
        from .cleaning import CleanSettings

        return CleanSettings.from_dict(self.parameters.get("clean", {}))

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """Fraction of the group's (cleaned) variance in each component (MIGP estimate)."""
        total = self.parameters.get("total_sum_of_squares")
        if not total:
            return np.full(self.n_dims, np.nan)
        return np.asarray(self.singular_values, float) ** 2 / float(total)

    @property
    def u_kind(self) -> str:
        """The store's kind of u: ``"discrete"`` or ``"continuous"`` (also for concatenated factors)."""
        return self.u.store_kind

    @property
    def u_names(self) -> list:
        """Level names (discrete) or column names (continuous; ``"name=level"`` for factors)."""
        return self.u.names

    @property
    def u_factors(self) -> np.ndarray:
        """``(n, n_factors)`` int64: each factor's own level per volume."""
        return self.u.factor_codes

    @property
    def u_on_demand(self) -> bool:
        """True when u is concatenated factors held as their codes (the one-hot columns
        are built by :meth:`dense_u` on each call)."""
        return self.u.on_demand

    # -- access -----------------------------------------------------------
    def dense_u(self, rows=None) -> np.ndarray:
        """u as an array, of all rows or of ``rows``
        (:meth:`~trends_ivae.aux_variable.AuxVariable.dense`): for small data or blocks of rows."""
        return self.u.dense(rows)

    def subject_rows(self, subject: int | str) -> np.ndarray:
        """Row indices of one subject (index or label)."""
        idx = self._subject_index(subject)
        return np.flatnonzero(self.subject == idx)

    def _subject_index(self, subject: int | str) -> int:
        return _subject_index(self.subjects, subject)

    def mask_img(self):
        """The mask as a nibabel image."""
        import nibabel as nib

        return nib.Nifti1Image(np.asarray(self.mask, dtype=np.uint8), np.asarray(self.affine))

    def reconstruct(self, x: np.ndarray | None = None) -> np.ndarray:
        """Voxel time series ``(x * scale) @ basis.T + voxel_mean`` (n, n_voxels)."""
        return reconstruct(self.x if x is None else x, self.basis, self.voxel_mean, self.scale)


def _subject_index(subjects: list, subject: int | str, where: str = "") -> int:
    """The index of ``subject`` (an index, or a label with or without ``sub-``) among ``subjects``."""
    if isinstance(subject, (int, np.integer)):
        if not 0 <= subject < len(subjects):
            raise IndexError(f"subject index {subject} out of range (0..{len(subjects) - 1})")
        return int(subject)
    label = str(subject)[4:] if str(subject).startswith("sub-") else str(subject)
    if label not in subjects:
        raise KeyError(f"no subject {subject!r}{where}; known: {subjects}")
    return subjects.index(label)


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return obj.tolist() if isinstance(obj, np.ndarray) else str(obj)


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
    stored = data.u.store_arrays()   # no "u" for concatenated factors: u_factors holds them
    with atomic_path(path, suffix=".tmp.h5") as tmp, h5py.File(tmp, "w") as f:
        n = data.n_samples
        row_chunk = max(1, min(n, 8192))
        opts = dict(compression="gzip", compression_opts=compression_level, shuffle=True)
        for name in _ROW_DATASETS:
            arr = stored[name] if name in stored else getattr(data, name)
            if arr is None:
                continue
            arr = np.asarray(arr)   # u: int64 labels or float32 columns, as AuxVariable holds them
            if name != "u":
                arr = arr.astype(np.float32 if name == "x" else np.int64)
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
    return path


def _open(path):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared file {str(path)!r} does not exist")
    f = h5py.File(path, "r")
    version = int(f.attrs.get("format_version", -1))
    if version not in READABLE_VERSIONS:
        f.close()
        raise ValueError(f"{str(path)!r} has format_version {version}; this version reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    return f


def _meta(f) -> dict:
    a = f.attrs
    return dict(
        u_kind=str(a["u_kind"]), u_names=json.loads(a["u_names"]), aux=json.loads(a["aux"]),
        subjects=json.loads(a["subjects"]), runs=json.loads(a["runs"]), tr=float(a["tr"]),
        parameters=json.loads(a["parameters"]), versions=json.loads(a["versions"]),
    )


def _factors_only(f, meta: dict) -> bool:
    """True when the file's u is concatenated factors given by ``u_factors`` (the dense
    ``u``, absent from format 2, is then neither read nor needed)."""
    factors_only = AuxVariable.stored_as_factors(meta["aux"], meta["u_kind"], f["u_factors"].shape, meta["u_names"])
    if not factors_only and "u" not in f:
        raise ValueError(f"{f.filename!r} has no dataset 'u' and its u is not concatenated factors")
    return factors_only


def _aux_rows(f, meta: dict, rows: slice = slice(None)) -> AuxVariable:
    """u of the rows ``rows`` of an open file."""
    u = None if _factors_only(f, meta) else f["u"][rows]
    return AuxVariable.from_store(u, meta["u_kind"], meta["u_names"], meta["aux"], f["u_factors"][rows])


def read_prepared(path: str | Path) -> PreparedData:
    """Read a whole ``prepared.h5`` written by :func:`write_prepared` (format 1 or 2).

    Concatenated factors' u is read as their codes (format 1 stored it dense too; that
    is not read): ``u`` of the result is an ``AuxVariable`` of kind ``"factors"``.
    """
    with _open(path) as f:
        meta = _meta(f)
        arrays = {name: f[name][()] for name in _ROW_DATASETS if name not in ("u", "u_factors")}
        arrays["u"] = _aux_rows(f, meta)
        for name in ("basis", "voxel_mean", "scale", "singular_values", "mask", "affine"):
            arrays[name] = f[name][()]
        meta = {k: v for k, v in meta.items() if k not in ("u_kind", "u_names")}
        return PreparedData(**arrays, **meta)


def read_aux(path: str | Path, rows: slice = slice(None)) -> AuxVariable:
    """u of the rows ``rows`` (a slice, possibly strided) of a prepared file, as an
    ``AuxVariable`` (concatenated factors as their codes), without reading ``x``."""
    with _open(path) as f:
        return _aux_rows(f, _meta(f), rows)


def read_subject(path: str | Path, subject: int | str) -> dict:
    """One subject's rows of a prepared file, without reading the others.

    Returns
    -------
    dict
        ``x``, ``u``, ``u_factors``, ``run``, ``volume`` (that subject's rows),
        ``subject`` (its label) and ``index``. For concatenated factors ``u`` is their
        one-hot columns built from these rows' ``u_factors`` (rows x all the levels).
    """
    with _open(path) as f:
        subjects = json.loads(f.attrs["subjects"])
        idx = _subject_index(subjects, subject, f" in {str(path)!r}")
        runs = [r for r in json.loads(f.attrs["runs"]) if r["subject_index"] == idx]
        start = min(r["start"] for r in runs)
        stop = max(r["start"] + r["n_volumes"] for r in runs)
        meta = _meta(f)
        out = {name: (_aux_rows(f, meta, slice(start, stop)).dense() if name == "u" else f[name][start:stop])
               for name in _ROW_DATASETS if name != "subject"}
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
    (:func:`trends_ivae.estimators.distributed.row_share`): only those rows are kept in memory.
    For concatenated factors ``"u"`` is their one-hot columns built from these rows'
    ``u_factors`` (rows x all the levels): ask for ``"u_factors"`` instead where the
    factors do, or :func:`read_aux` (``fit --distributed`` does).
    """
    with _open(path) as f:
        n = int(f["x"].shape[0])
        start, stop, step = rows.indices(n)
        if step < 1:
            raise ValueError("read_rows needs a slice with a positive step")
        unknown = [k for k in names if k not in _ROW_DATASETS]
        if unknown:
            raise KeyError(f"not row datasets: {unknown}; known: {list(_ROW_DATASETS)}")
        meta = _meta(f) if "u" in names else None
        return {k: (_aux_rows(f, meta, slice(start, stop, step)).dense() if k == "u" else f[k][start:stop:step])
                for k in names}


def reconstruct(x: np.ndarray, basis: np.ndarray, voxel_mean: np.ndarray | None = None,
                scale: np.ndarray | None = None) -> np.ndarray:
    """Back to voxel space: ``(x * scale) @ basis.T + voxel_mean``."""
    x = np.asarray(x, dtype=np.float32)
    if scale is not None:
        x = x * np.asarray(scale, dtype=np.float32)
    Y = x @ np.asarray(basis, dtype=np.float32).T
    if voxel_mean is not None:
        Y = Y + np.asarray(voxel_mean, dtype=np.float32)
    return Y
