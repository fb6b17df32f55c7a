"""The names of the tool's files: components, entities, run stems, the model file.

String work (no file is read): :func:`component_names` labels the components,
:func:`run_entities` reads an input run's BIDS entities (from its file name and/or
given ones) and :func:`derivative_stem` makes the folder and stem of that run's outputs.
:data:`MODEL_FILE` is where a fit folder keeps its fitted estimator; :func:`model_file`
(which only looks whether a file exists) finds it in folders written before it had that
name (:data:`LEGACY_MODEL_FILE`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ENTITY_ORDER", "MODEL_FILE", "LEGACY_MODEL_FILE", "component_names", "run_entities",
           "derivative_stem", "model_file"]

#: BIDS entity order (BIDS specification, appendix "Entity table")
ENTITY_ORDER = ("sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
                "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part",
                "proc", "hemi", "space", "split", "recording", "chunk", "seg", "res", "den",
                "label", "desc")
#: the fitted estimator (an IVAE or an IFlow) in a fit output folder, relative to it
MODEL_FILE = "model/estimator.pt"
#: the same file in folders written before it was renamed (read when MODEL_FILE is absent)
LEGACY_MODEL_FILE = "model/ivae.pt"
_EXTENSIONS = (".nii.gz", ".nii", ".dtseries.nii", ".func.gii", ".tsv.gz", ".tsv", ".json", ".h5")
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def component_names(n_components: int, prefix: str = "ic") -> list[str]:
    """``ic01, ic02, ...`` (three digits from 100 components on)."""
    width = max(2, len(str(n_components)))
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n_components)]


def run_entities(run: Mapping[str, Any]) -> dict[str, str]:
    """BIDS entities of an input run, in BIDS order, without ``desc``.

    ``run`` may name the input file (``path`` or ``stem``, whose ``key-value`` parts are
    parsed) and/or give entities directly (``sub``, ``ses``, ``task``, ``run``, ...;
    these win). ``sub`` is required. A ``sub-`` prefix on the label is accepted.
    """
    ents: dict[str, str] = {}
    name = run.get("stem") or (Path(str(run["path"])).name if run.get("path") else None)
    if name:
        for ext in _EXTENSIONS:
            if name.endswith(ext):
                name = name[: -len(ext)]
                break
        for part in name.split("_"):
            if "-" in part:
                key, _, value = part.partition("-")
                if key in ENTITY_ORDER and _LABEL.match(value):
                    ents[key] = value
    for key in ENTITY_ORDER:
        if run.get(key) not in (None, ""):
            value = str(run[key])
            if value.startswith(f"{key}-"):
                value = value[len(key) + 1:]
            if not _LABEL.match(value):
                raise ValueError(f"BIDS label {key}={value!r} must be alphanumeric")
            ents[key] = value
    if "sub" not in ents:
        raise ValueError(f"a run needs a subject label ('sub', or a BIDS file name in 'path'); got {dict(run)}")
    ents.pop("desc", None)
    return {k: ents[k] for k in ENTITY_ORDER if k in ents}


def derivative_stem(run: Mapping[str, Any], desc: str = "ivae") -> tuple[Path, str]:
    """``(relative folder, file stem)`` of a run's outputs, e.g.
    ``(sub-01/ses-1/func, sub-01_ses-1_task-rest_run-2_desc-ivae)``."""
    ents = run_entities(run)
    folder = Path(f"sub-{ents['sub']}")
    if "ses" in ents:
        folder = folder / f"ses-{ents['ses']}"
    stem = "_".join(f"{k}-{v}" for k, v in ents.items()) + f"_desc-{desc}"
    return folder / "func", stem


def model_file(out_dir: str | os.PathLike) -> Path:
    """The fitted estimator's file in the fit output folder ``out_dir``.

    ``out_dir/model/estimator.pt`` (:data:`MODEL_FILE`), or ``out_dir/model/ivae.pt``
    (:data:`LEGACY_MODEL_FILE`) when only that one exists (a folder written before the
    rename). Neither needs to exist: the caller says what is missing.
    """
    root = Path(out_dir)
    new, old = root / MODEL_FILE, root / LEGACY_MODEL_FILE
    return old if not new.is_file() and old.is_file() else new
