"""The tool's output folders: ``dataset_description.json``, the manifest, atomic replacement.

Every folder the tool writes (a fit, a BIDS App's derivatives, a simulated dataset) is
made in a temporary folder next to it and moved into place whole
(:func:`atomic_output_dir`). ``OUT/.trends_ivae_outputs.json`` (:data:`MANIFEST_NAME`)
lists every file the tool wrote there. A folder holding anything else (:func:`foreign_files`)
is refused before any work, ``force`` or not, so a file a user put there is never
deleted; one holding only the tool's own outputs is replaced with ``force``
(:func:`refuse_existing_dir`). Single output files follow the same rule in
:mod:`trends_ivae.export.guard`. :func:`dataset_description` is the one builder of a BIDS
derivative's ``dataset_description.json``. Single files are written by
:mod:`trends_ivae.atomic`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from .._version import __version__
from ..atomic import write_json_atomic, write_text_atomic

__all__ = ["MANIFEST_NAME", "ForeignFilesError", "read_manifest", "record_outputs", "foreign_files",
           "remove_own_outputs", "refuse_existing_dir", "atomic_output_dir", "dataset_description",
           "write_dataset_description"]

#: what every dataset_description.json of the tool says it is
NAME = "trends_ivae: identifiable VAE decomposition"
DESCRIPTION = "identifiable VAE (nonlinear ICA) of fMRI"


def dataset_description(*, sources: Sequence[str | os.PathLike] = (), app: str | None = None) -> dict:
    """The ``dataset_description.json`` of a BIDS derivative the tool writes.

    Parameters
    ----------
    sources : list of str or path
        The input datasets (``SourceDatasets``, one ``{"URL": ...}`` each, as given);
        none: no ``SourceDatasets``.
    app : str, optional
        Appended to the ``GeneratedBy`` description (e.g. ``"BIDS App (trends-ivae-bids)"``).

    Returns
    -------
    dict
        ``Name``, ``BIDSVersion`` 1.8.0, ``DatasetType`` "derivative", ``GeneratedBy`` (the
        tool and its version) and ``SourceDatasets``.
    """
    desc: dict = {
        "Name": NAME,
        "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__,
                         "Description": DESCRIPTION + (f", {app}" if app else "")}],
    }
    if sources:
        desc["SourceDatasets"] = [{"URL": os.fspath(s)} for s in sources]
    return desc


def write_dataset_description(folder: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`dataset_description` (``kwargs`` passed on) to ``folder/dataset_description.json``
    atomically; returns the path."""
    path = Path(folder) / "dataset_description.json"
    write_json_atomic(path, dataset_description(**kwargs))
    return path


#: the file in an output folder that lists (relative POSIX paths) what the tool wrote there
MANIFEST_NAME = ".trends_ivae_outputs.json"


class ForeignFilesError(FileExistsError):
    """An output folder to be replaced holds files the tool did not write (``files``)."""

    def __init__(self, folder: Path, files: Sequence[str]) -> None:
        self.folder, self.files = Path(folder), list(files)
        if self.files == ["."]:
            super().__init__(f"{self.folder} is a file or link trends-ivae did not write, where an output folder "
                             "would go; it is never replaced, --force included: choose another output folder")
            return
        shown = ", ".join(self.files[:10]) + (f", ... ({len(self.files)} in all)" if len(self.files) > 10 else "")
        super().__init__(f"{self.folder} exists and holds files trends-ivae did not write: {shown}; --force replaces "
                         "only the tool's own outputs and never deletes other files: move them out of "
                         "the folder, or choose another output folder")


def read_manifest(out_dir: str | os.PathLike) -> set[str] | None:
    """The files (relative POSIX paths) the tool wrote in ``out_dir``, or None without a
    readable :data:`MANIFEST_NAME`."""
    try:
        data = json.loads((Path(out_dir) / MANIFEST_NAME).read_text())
        return {str(f) for f in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(out_dir: Path, files: set[str]) -> None:
    write_text_atomic(out_dir / MANIFEST_NAME,
                      json.dumps({"written_by": f"trends_ivae {__version__}", "files": sorted(files)}, indent=1) + "\n")


def _files_under(root: Path) -> list[str]:
    """Every file and symbolic link under ``root`` (relative POSIX paths; links not followed)."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


def record_outputs(out_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], *,
                   replace: bool = False) -> None:
    """Add ``paths`` (inside ``out_dir``, absolute or relative to it) to its manifest (or,
    with ``replace``, make them the whole manifest); the manifest is replaced atomically."""
    out = Path(out_dir)
    files = set() if replace else (read_manifest(out) or set())
    for p in paths:
        p = Path(p)
        files.add((p.relative_to(out) if p.is_absolute() else p).as_posix())
    _write_manifest(out, files)


def foreign_files(out_dir: str | os.PathLike, within: Sequence[str] | None = None) -> list[str]:
    """The files under ``out_dir`` that the tool did not write (not in its manifest).

    Without a manifest every file counts as foreign. ``within``: only look at these
    relative paths (files or folders). An empty folder holds none. ``out_dir`` itself
    being a file is reported as ``["."]``.
    """
    out = Path(out_dir)
    if not out.exists() and not out.is_symlink():
        return []
    if not out.is_dir() or out.is_symlink():
        return ["."]
    ours = read_manifest(out) or set()
    tops = [out / w for w in within] if within is not None else [out]
    found: list[str] = []
    for top in tops:
        if top.is_dir() and not top.is_symlink():
            found += [(top / f).relative_to(out).as_posix() for f in _files_under(top)]
        elif top.exists() or top.is_symlink():
            found.append(top.relative_to(out).as_posix())
    return sorted({f for f in found if f not in ours and f != MANIFEST_NAME})


def remove_own_outputs(folder: str | os.PathLike) -> list[str]:
    """Delete the files of ``folder``'s manifest, the manifest and the folders left empty;
    the files that remain (none unless a user added some meanwhile) are kept, with
    ``folder``, and returned (a warning names them)."""
    root = Path(folder)
    for rel in sorted(read_manifest(root) or ()):
        target = root / rel
        if target.is_file() or target.is_symlink():
            target.unlink()
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    for here, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):   # deepest first
        with contextlib.suppress(OSError):
            Path(here).rmdir()   # only when empty
    left = _files_under(root) if root.exists() else []
    if left:
        import warnings

        warnings.warn(f"kept files trends-ivae did not write in {root}: {', '.join(left[:10])}", UserWarning,
                      stacklevel=3)
    return left


def refuse_existing_dir(out_dir: str | os.PathLike, force: bool) -> None:
    """The check before an output folder is written: nothing the tool did not write in it, and
    ``force`` when it exists.

    Raises
    ------
    ForeignFilesError
        ``out_dir`` holds files the tool did not write, or is a file (``force`` or not).
    FileExistsError
        ``out_dir`` exists, holds only the tool's own outputs, and ``force`` is False (the
        message says that ``--force`` replaces it, which is then true).
    """
    out = Path(out_dir)
    foreign = foreign_files(out)   # first: with these, --force would not help either
    if foreign:
        raise ForeignFilesError(out, foreign)
    if (out.exists() or out.is_symlink()) and not force:
        raise FileExistsError(f"{out} exists and holds only trends-ivae's own outputs; pass --force "
                              "(force=True) to replace it")


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it replaces ``out_dir``.

    An existing ``out_dir`` that holds files the tool did not write (:func:`foreign_files`)
    raises :class:`ForeignFilesError` at entry, ``force`` or not, so nothing a user put
    there is ever deleted; one that holds only the tool's own outputs raises
    ``FileExistsError`` unless ``force`` (its message then says so: ``--force`` works)
    (:func:`refuse_existing_dir`). The new folder gets a manifest (:data:`MANIFEST_NAME`)
    of every file in it.
    On an exception (a full disk while writing, a failed final move) the temporary folder
    is removed and ``out_dir`` is left untouched: a previous ``out_dir`` is only moved
    aside for the final rename, and moved back when that rename fails.
    """
    out = Path(out_dir)
    refuse_existing_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        _write_manifest(tmp, set(_files_under(tmp)) - {MANIFEST_NAME})
        foreign = foreign_files(out)   # again: a long fit gives a user time to add files
        if foreign:
            raise ForeignFilesError(out, foreign)
        old = None
        if out.exists() or out.is_symlink():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{tmp.name[-8:]}"
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:   # put the previous output back where it was
                os.replace(old, out)
            raise
        if old is not None:
            remove_own_outputs(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
