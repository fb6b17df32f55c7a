"""The output guard: a file the tool did not write is never replaced, ``--force`` included.

Output *folders* follow the manifest rule of :mod:`trends_ivae.export.outputs` (only a
folder holding nothing but the tool's own files is replaced). Single output *files*
(the report page, a sampled run and its companions, ``prepared.h5``) follow the same
rule through :func:`check_output_files`: an existing file is the tool's own when the
manifest of its folder (:data:`~trends_ivae.export.outputs.MANIFEST_NAME`) lists it, or
when it carries the tool's mark (a byte string near its start, e.g. the report page's
title, for pages written before the manifest recorded them). Anything else, a folder or
a link where a file would go included, is refused whatever ``force`` says, with a
message naming the path and what to do. :func:`record_output_files` adds what was
written to the manifest of its folder, so that the next run may replace it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from .outputs import MANIFEST_NAME, read_manifest, record_outputs

__all__ = ["ForeignOutputError", "REPORT_MARK", "is_own_file", "check_output_files", "record_output_files"]

#: the bytes near the start of every report page the tool writes (its <title>)
REPORT_MARK = b"<title>trends_ivae report: "

#: how far into a file a mark is looked for
_MARK_WINDOW = 4096


class ForeignOutputError(FileExistsError):
    """An output path holds a file (or folder, or link) that the tool did not write."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        kind = "a folder" if self.path.is_dir() and not self.path.is_symlink() else \
            "a link" if self.path.is_symlink() else "a file"
        super().__init__(f"{what} {str(self.path)!r} is {kind} trends-ivae did not write; it is never "
                         "replaced, --force included: move or rename it, or "
                         + (f"give {what} another path" if what.startswith("-") else "choose another output path"))


def is_own_file(path: str | os.PathLike, mark: bytes | None = None) -> bool:
    """Whether the existing ``path`` is a file the tool wrote.

    Parameters
    ----------
    path : path
        An existing path.
    mark : bytes, optional
        A byte string the tool writes near the start of such files (looked for in the
        first 4 KiB); without it only the manifest counts.

    Returns
    -------
    bool
        True when ``path`` is a regular file (not a link) listed in the manifest of its
        folder, or one that carries ``mark``.
    """
    p = Path(path)
    if p.is_symlink() or not p.is_file() or p.name == MANIFEST_NAME:
        return False
    if p.name in (read_manifest(p.parent) or set()):
        return True
    if mark is None:
        return False
    try:
        with open(p, "rb") as fh:
            return mark in fh.read(_MARK_WINDOW)
    except OSError:
        return False


def check_output_files(paths: Iterable[str | os.PathLike], *, force: bool, what: str = "output",
                       mark: bytes | None = None, replace_own: bool = False) -> None:
    """Refuse to write ``paths`` when one of them must not be replaced.

    Parameters
    ----------
    paths : iterable of path
        The files about to be written.
    force : bool
        Replace the tool's own earlier files.
    what : str, default="output"
        How the message names the paths (the option, e.g. ``"--out"``).
    mark : bytes, optional
        The tool's mark in such files (:func:`is_own_file`).
    replace_own : bool, default=False
        Replace the tool's own files even without ``force`` (a page the tool rebuilds).

    Raises
    ------
    ForeignOutputError
        A path is a file, folder or link the tool did not write (whatever ``force``).
    FileExistsError
        A path is the tool's own earlier file and neither ``force`` nor ``replace_own``
        (the message says to pass ``--force``, which then succeeds).
    """
    existing = []
    for p in map(Path, paths):
        if not (p.exists() or p.is_symlink()):
            continue
        if not is_own_file(p, mark):
            raise ForeignOutputError(p, what)
        existing.append(str(p))
    if existing and not (force or replace_own):
        raise FileExistsError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''} (written by "
                              "trends-ivae); pass --force to replace "
                              + ("it" if len(existing) == 1 else "them"))


def record_output_files(paths: Sequence[str | os.PathLike]) -> None:
    """Add the written ``paths`` to the manifest of their folders (one manifest per folder)."""
    by_folder: dict[Path, list[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.absolute().parent, []).append(p.name)
    for folder, names in by_folder.items():
        record_outputs(folder, names)
