"""Finding functional runs: a BIDS dataset, or explicit lists of files.

Both routes produce a list of :class:`RunSpec`, the unit that
:func:`trends_ivae.reduction.prepare.prepare` consumes. A ``RunSpec`` holds the image (a
path or an in-memory nibabel image), its events and confounds (paths or
DataFrames), its BIDS entities (``sub``, ``ses``, ``task``, ``run``, ...), the
participant's row of ``participants.tsv`` and the sidecar's ``RepetitionTime``.

BIDS layout understood here: ``sub-<label>/[ses-<label>/]func/sub-<label>*_bold.nii[.gz]``
(raw or fMRIPrep-style derivatives, where files carry ``_space-``/``_desc-``
entities), events in ``<same stem>_events.tsv``, sidecar in ``<same stem>_bold.json``
with the inheritance principle for the top-level ``task-<label>_bold.json`` and
``task-<label>_events.tsv``, and ``participants.tsv`` at the root. The
``derivatives/``, ``sourcedata/`` and hidden folders are skipped.

The files are found and their names parsed by nilearn
(:func:`nilearn.interfaces.bids.get_bids_files`,
:func:`~nilearn.interfaces.bids.parse_bids_filename`). Written here: the filters
(nilearn's take one exact label per entity; these take lists, and run numbers compare
as integers), the companions of a run (its events, sidecar and confounds, with the
derivatives' raw-name fallback and the top-level inheritance, which nilearn does not
resolve per run) and ``participants.tsv`` (see ``docs/architecture.md``, "Where we use
the field's libraries and where not").
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import pandas as pd
from nilearn.interfaces.bids import get_bids_files, parse_bids_filename

from .images import ImageLike, PrepareError, image_name

__all__ = ["RunSpec", "find_bids_runs", "runs_from_files", "parse_entities"]

TableLike = Union[str, Path, pd.DataFrame, np.ndarray]

_BOLD_SUFFIX = re.compile(r"_bold\.nii(\.gz)?$")


@dataclass
class RunSpec:
    """One functional run and what goes with it.

    Attributes
    ----------
    img : str, Path or nibabel image
        The 4D BOLD image.
    events : str, Path, DataFrame or None
        BIDS events (``onset``, ``duration``, ``trial_type``), needed for ``aux="task"``.
    confounds : str, Path, DataFrame, ndarray or None
        Confound time series, one row per volume (TSV with a header, or a
        whitespace-separated numeric text file whose columns are named ``"0"``, ``"1"``, ...).
    entities : dict
        BIDS entities, at least ``sub`` (the subject label); ``run`` and ``task``
        when known.
    participant : dict
        The subject's row of ``participants.tsv`` (``participant_id`` removed).
    tr : float or None
        ``RepetitionTime`` from the JSON sidecar, if any.
    """

    img: ImageLike
    events: TableLike | None = None
    confounds: TableLike | None = None
    entities: dict = field(default_factory=dict)
    participant: dict = field(default_factory=dict)
    tr: float | None = None

    @property
    def subject(self) -> str:
        """The subject label (``entities['sub']``)."""
        return str(self.entities.get("sub", "01"))

    @property
    def name(self) -> str:
        """The image's file name, or a description of an in-memory image."""
        return image_name(self.img)


def parse_entities(filename: str | Path) -> dict:
    """BIDS ``key-value`` entities of a file name (``sub-01_task-rest_bold.nii.gz``).

    Parsed by :func:`nilearn.interfaces.bids.parse_bids_filename`; parts without a
    value (``..._echo_bold``) and the suffix are left out, a name without a suffix
    (``sub-01.nii.gz``) keeps its last entity, and a name that is not BIDS
    (``a.nii.gz``) has none.
    """
    stem, _, ext = Path(filename).name.partition(".")
    if "-" in stem.rpartition("_")[2]:   # no suffix (``sub-01.nii.gz``): the last part is an entity too
        stem += "_none"
    ref = parse_bids_filename(stem + "." + ext)   # nilearn expects an extension after the suffix
    # nilearn >= 0.13: ref["entities"]; before, the entities sit in ref itself, named in "file_fields"
    entities = ref["entities"] if "entities" in ref else {f: ref.get(f) for f in ref.get("file_fields", [])}
    return {k: v for k, v in entities.items() if k and v}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except Exception as exc:
        raise PrepareError(f"JSON sidecar {str(path)!r} cannot be read: {exc}") from exc


def _read_participants(bids_dir: Path) -> dict[str, dict]:
    path = bids_dir / "participants.tsv"
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise PrepareError(f"participants file {str(path)!r} cannot be read: {exc}") from exc
    if "participant_id" not in table.columns:
        raise PrepareError(f"participants file {str(path)!r} has no 'participant_id' column")
    out = {}
    for _, row in table.iterrows():
        label = str(row["participant_id"])
        label = label[4:] if label.startswith("sub-") else label
        out[label] = {k: v for k, v in row.items() if k != "participant_id"}
    return out


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        value = [value]
    return [str(v) for v in value]


def _strip_prefix(values: list[str] | None, prefix: str) -> list[str] | None:
    if values is None:
        return None
    return [v[len(prefix):] if v.startswith(prefix) else v for v in values]


def _same_run(value: str, wanted: list[str]) -> bool:
    """Run labels compare as integers when both are numeric (``run-01`` == ``run-1``)."""
    for w in wanted:
        if value == w:
            return True
        if value.isdigit() and w.isdigit() and int(value) == int(w):
            return True
    return False


def _inherited(bids_dir: Path, bold: Path, suffix: str, entities: dict) -> Path | None:
    """``<stem>_<suffix>`` next to the run, else inherited from the top level."""
    stem = _BOLD_SUFFIX.sub("", bold.name)
    direct = bold.with_name(f"{stem}_{suffix}")
    if direct.is_file():
        return direct
    # fMRIPrep derivatives: drop space/desc/res/den for the raw-style companion
    raw_stem = "_".join(
        part for part in stem.split("_")
        if part.split("-")[0] not in {"space", "desc", "res", "den", "cohort"}
    )
    if raw_stem != stem and bold.with_name(f"{raw_stem}_{suffix}").is_file():
        return bold.with_name(f"{raw_stem}_{suffix}")
    if "task" in entities:
        top = bids_dir / f"task-{entities['task']}_{suffix}"
        if top.is_file():
            return top
    return None


def _find_confounds(bold: Path) -> Path | None:
    stem = _BOLD_SUFFIX.sub("", bold.name)
    raw_stem = "_".join(
        part for part in stem.split("_")
        if part.split("-")[0] not in {"space", "desc", "res", "den", "cohort"}
    )
    for name in (f"{raw_stem}_desc-confounds_timeseries.tsv",
                 f"{raw_stem}_desc-confounds_regressors.tsv",
                 f"{stem}_confounds.tsv"):
        if bold.with_name(name).is_file():
            return bold.with_name(name)
    return None


def _bold_files(root: Path) -> list[Path]:
    """Every ``sub-*/[ses-*/]func/sub-*_bold.nii[.gz]`` under ``root`` (nilearn's search), sorted."""
    found = get_bids_files(root, file_tag="bold", file_type="nii*", modality_folder="func")
    return sorted(Path(f) for f in found if _BOLD_SUFFIX.search(Path(f).name) and Path(f).is_file())


def find_bids_runs(
    bids_dir: str | Path,
    *,
    task: str | Sequence[str] | None = None,
    session: str | Sequence[str] | None = None,
    run: str | int | Sequence[str | int] | None = None,
    participant_label: str | Sequence[str] | None = None,
    space: str | None = None,
    with_confounds: bool = False,
) -> list[RunSpec]:
    """Discover the BOLD runs of a BIDS dataset.

    Parameters
    ----------
    bids_dir : str or Path
        Root of the dataset (holds ``sub-*`` folders and optionally ``participants.tsv``).
        A derivatives folder (fMRIPrep output) works too.
    task, session, run, participant_label : str, int or list, optional
        Keep only runs with these entity values (``sub-``/``ses-``/``task-`` prefixes
        are accepted and stripped; run numbers compare as integers).
    space : str, optional
        Keep only files with this ``space-`` entity (derivatives).
    with_confounds : bool, default=False
        Attach ``*_desc-confounds_timeseries.tsv`` files when found (derivatives).

    Returns
    -------
    list of RunSpec
        Sorted by subject, session, task and run.

    Raises
    ------
    PrepareError
        When the folder has no matching run, or a sidecar / participants file is unreadable.
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise PrepareError(f"BIDS directory {str(root)!r} does not exist")
    tasks = _strip_prefix(_as_list(task), "task-")
    sessions = _strip_prefix(_as_list(session), "ses-")
    runs_wanted = _strip_prefix(_as_list(run), "run-")
    subjects = _strip_prefix(_as_list(participant_label), "sub-")
    participants = _read_participants(root)

    found: list[RunSpec] = []
    for bold in _bold_files(root):
        ent = parse_entities(bold.name)
        label = ent.get("sub")
        if label is None or bold.relative_to(root).parts[0] != f"sub-{label}":
            continue
        if subjects is not None and label not in subjects:
            continue
        if tasks is not None and ent.get("task") not in tasks:
            continue
        if sessions is not None and ent.get("ses") not in sessions:
            continue
        if runs_wanted is not None and not _same_run(ent.get("run", ""), runs_wanted):
            continue
        if space is not None and ent.get("space") != space:
            continue
        sidecar_tr = None
        sidecar = _inherited(root, bold, "bold.json", ent)
        if sidecar is not None:
            meta = _read_json(sidecar)
            if "RepetitionTime" in meta:
                sidecar_tr = meta["RepetitionTime"]
        found.append(RunSpec(
            img=bold,
            events=_inherited(root, bold, "events.tsv", ent),
            confounds=_find_confounds(bold) if with_confounds else None,
            entities=ent,
            participant=dict(participants.get(label, {})),
            tr=sidecar_tr,
        ))
    if not found:
        filters = {k: v for k, v in dict(task=tasks, session=sessions, run=runs_wanted,
                                         participant_label=subjects, space=space).items() if v}
        raise PrepareError(
            f"no BOLD run (sub-*/[ses-*/]func/*_bold.nii[.gz]) found in {str(root)!r}"
            + (f" with filters {filters}" if filters else "") + _what_exists(root, filters)
        )
    found.sort(key=lambda r: (r.entities.get("sub", ""), r.entities.get("ses", ""),
                              r.entities.get("task", ""), _run_key(r.entities.get("run", "")),
                              str(r.img)))
    return found


#: filter name of find_bids_runs -> (entity, how the message names its values)
_FILTER_ENTITIES = {"task": ("task", "tasks"), "session": ("ses", "sessions"), "run": ("run", "runs"),
                    "participant_label": ("sub", "subjects"), "space": ("space", "spaces")}


def _what_exists(root: Path, filters: dict) -> str:
    """``"; tasks there: a, b"`` for each filter given, from all BOLD files under ``root``."""
    if not filters:
        return ""
    bolds = _bold_files(root)
    parts = []
    for name in filters:
        entity, plural = _FILTER_ENTITIES[name]
        values = sorted({parse_entities(p.name).get(entity) for p in bolds} - {None}, key=_run_key)
        parts.append(f"{plural} there: {', '.join(values) if values else 'none'}")
    return "; " + "; ".join(parts) if parts else ""


def _run_key(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def runs_from_files(
    funcs: Sequence[ImageLike],
    events: Sequence[TableLike | None] | None = None,
    confounds: Sequence[TableLike | None] | None = None,
    *,
    subjects: Sequence[str] | None = None,
    participants: str | Path | pd.DataFrame | None = None,
) -> list[RunSpec]:
    """Wrap explicit lists of images (paths or nibabel images) as :class:`RunSpec`.

    Parameters
    ----------
    funcs : list of str, Path or nibabel image
        The 4D runs.
    events, confounds : list, optional
        One entry per run (None for a run without); same length as ``funcs``.
    subjects : list of str, optional
        The subject label of each run. When omitted, the ``sub-`` entity of each file
        name is used, and a run whose name has none is its own subject (``"01"``,
        ``"02"``, ... in order; with a warning when there are several such runs).
    participants : path or DataFrame, optional
        A participants table (``participant_id`` column) giving columns usable as u.

    Returns
    -------
    list of RunSpec
        In the order given. Runs of a subject get ``run`` labels 1, 2, ... in order
        when their file names carry no ``run-`` entity.
    """
    funcs = list(funcs)
    if not funcs:
        raise PrepareError("no functional image given")
    n = len(funcs)
    for what, values in (("events", events), ("confounds", confounds), ("subjects", subjects)):
        if values is not None and len(values) != n:
            raise PrepareError(f"{len(values)} {what} entries for {n} functional images; give one per image")
    table: dict[str, dict] = {}
    if participants is not None:
        if isinstance(participants, pd.DataFrame):
            df = participants.astype(str)
        else:
            try:
                df = pd.read_csv(participants, sep="\t", dtype=str, keep_default_na=False)
            except Exception as exc:
                raise PrepareError(f"participants file {str(participants)!r} cannot be read: {exc}") from exc
        if "participant_id" not in df.columns:
            raise PrepareError("participants table has no 'participant_id' column")
        for _, row in df.iterrows():
            label = str(row["participant_id"])
            label = label[4:] if label.startswith("sub-") else label
            table[label] = {k: v for k, v in row.items() if k != "participant_id"}
    specs = []
    anonymous = 0
    run_counter: dict[str, int] = {}
    for i, img in enumerate(funcs):
        ent = parse_entities(image_name(img)) if isinstance(img, (str, Path)) else {}
        if subjects is not None:
            ent["sub"] = str(subjects[i])[4:] if str(subjects[i]).startswith("sub-") else str(subjects[i])
        elif "sub" not in ent:
            anonymous += 1
            ent["sub"] = f"{anonymous:02d}"
        run_counter[ent["sub"]] = run_counter.get(ent["sub"], 0) + 1
        ent.setdefault("run", str(run_counter[ent["sub"]]))
        specs.append(RunSpec(
            img=img,
            events=None if events is None else events[i],
            confounds=None if confounds is None else confounds[i],
            entities=ent,
            participant=dict(table.get(ent["sub"], {})),
        ))
    if anonymous > 1:
        example = " ".join(["01"] * min(anonymous, 3)) + (" ..." if anonymous > 3 else "")
        warnings.warn(f"{anonymous} of the {n} functional images have no 'sub-' entity in their names, "
                      f"so each is taken as its own subject (01 ... {anonymous:02d}); if they are runs "
                      f"of fewer subjects, give each file's subject: --subject {example} on the command "
                      "line, subjects=[...] in Python", UserWarning, stacklevel=2)
    return specs
