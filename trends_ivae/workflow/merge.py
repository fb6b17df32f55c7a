"""Moving a group fit's folder into the BIDS App's OUTPUT_DIR, beside the participant shares.

The fit is written whole into a temporary folder first; :func:`merge_group_outputs` then
moves it in with renames only, putting what it replaces aside and undoing every move when
one fails, so that OUTPUT_DIR holds either the previous results or the new ones. Only the
tool's own files are ever replaced (:func:`foreign_group_files`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["LAYOUT_DIRS", "group_targets", "foreign_group_files", "merge_group_outputs"]

#: layout -> the folder of OUTPUT_DIR its results go to (the BIDS layout: OUTPUT_DIR itself)
LAYOUT_DIRS = {"melodic": "ivae.ica", "gift": "gift"}


def group_targets(out: Path, layout: str) -> list[Path]:
    """What a group stage replaces as a whole in ``out``."""
    if layout == "bids":
        return [out / "group", out / "model", out / "prepared.h5"]
    return [out / LAYOUT_DIRS[layout]]


def foreign_group_files(out: Path, layout: str) -> list[str]:
    """Files among those a group stage replaces (its targets, the per-run outputs, the report)
    that the tool did not write; a ``--force`` run refuses to touch them."""
    from ..export.outputs import foreign_files

    if layout != "bids":
        return foreign_files(out / LAYOUT_DIRS[layout])
    within = [t.relative_to(out).as_posix() for t in group_targets(out, layout) if t.exists()]
    within += [p.relative_to(out).as_posix() for p in out.glob("sub-*/**/func/*_desc-ivae_*")]   # not the shares
    within += ["report.html"] if (out / "report.html").exists() else []
    return foreign_files(out, within=within)


def merge_group_outputs(tmp_out: Path, out: Path, layout: str, backup: Path) -> None:
    """Move the fit's output ``tmp_out`` into ``out``, next to the participant shares.

    Whatever it replaces (earlier group results under ``--force``) is first moved into
    ``backup`` (same file system: renames only); when a move fails, everything done is
    undone, so ``out`` keeps its previous contents, and the error propagates.

    Raises
    ------
    ForeignFilesError
        A file the tool did not write appeared among the targets while the fit ran.
    OSError
        A move failed (everything was undone).
    """
    from ..export.outputs import MANIFEST_NAME, ForeignFilesError, read_manifest, record_outputs

    journal: list[tuple[Path, Path | None]] = []   # (destination, where its old version went)
    foreign = foreign_group_files(out, layout)   # again: files a user added while the group stage ran
    if foreign:
        raise ForeignFilesError(out if layout == "bids" else out / LAYOUT_DIRS[layout], foreign)
    ours = read_manifest(out) or set()
    aside = {t.relative_to(out).as_posix() for t in group_targets(out, layout)}

    def put(src: Path, dest: Path) -> None:
        old = None
        if dest.exists() or dest.is_symlink():
            old = backup / f"{len(journal):05d}-{dest.name}"
            os.replace(dest, old)
        journal.append((dest, old))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)

    backup.mkdir(parents=True, exist_ok=True)
    try:
        for target in group_targets(out, layout):   # stale group results go aside as a whole
            if target.exists():
                old = backup / f"{len(journal):05d}-{target.name}"
                os.replace(target, old)
                journal.append((target, old))
        if layout != "bids":
            put(tmp_out, out / LAYOUT_DIRS[layout])
            return
        new = read_manifest(tmp_out) or set()
        for item in sorted(tmp_out.rglob("*")):
            if item.is_dir() or item.name in ("dataset_description.json", MANIFEST_NAME):
                continue
            put(item, out / item.relative_to(tmp_out))
        kept = {f for f in ours if not any(f == a or f.startswith(a + "/") for a in aside)}
        record_outputs(out, sorted(kept | (new - {"dataset_description.json"})), replace=True)
    except BaseException:
        for dest, old in reversed(journal):
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest, ignore_errors=True)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            if old is not None:
                os.replace(old, dest)
        raise
