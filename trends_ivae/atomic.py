"""Atomic writes: a file appears whole under its name, or not at all.

Every writer in the package goes through :func:`atomic_path`: it writes to a temporary
name in the target's folder, and only a completed write is renamed onto the target
(``os.replace``, atomic on POSIX and Windows). An error or an interrupt leaves the
previous file, if any, untouched and removes the temporary one. No heavy imports: io,
model and the CLI all use it.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The target. Its folder is created if needed.
    suffix : str
        Appended to the target's name for the temporary file (kept so that writers which
        pick a format from the extension, such as ``h5py`` or ``nibabel``, can be given
        ``suffix=".tmp" + ext``).

    Yields
    ------
    pathlib.Path
        Where to write. Nothing is left there afterwards.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    """Write ``obj`` as indented JSON (strict: no NaN) to ``path`` atomically."""
    dumps_kwargs.setdefault("indent", 2)
    dumps_kwargs.setdefault("allow_nan", False)
    write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n")
