"""Name a fit's components: template matching and network-or-artifact labels, into ``labels.tsv``.

:func:`label_fit_folder` is what ``trends-ivae label FIT_DIR`` runs, and what ``analyze``
and the end of ``fit`` can call. It reads the fit folder (BIDS layout:
``group/desc-ivae_components.nii.gz``, ``group/desc-ivae_mask.nii.gz``,
``group/desc-ivae_labels.tsv``, the per-run time-series TSVs) and writes, in ``group/``:

- ``desc-ivae_labels.tsv`` (+ ``.json``): the fit's table with the columns of
  :data:`TEMPLATE_COLUMNS` (with ``--templates``) and :data:`CLASS_COLUMNS` added or
  replaced; the other columns are kept as they are;
- ``desc-ivae_templatematch.tsv``: the correlation of every component with every template;
- ``desc-ivae_templatefit.tsv``: per template, its goodness of fit (one-to-one and best
  component, correlation, found or not);
- ``desc-ivae_features.tsv``: the network-or-artifact features of every component
  (:mod:`trends_ivae.analysis.features`).

Each TSV has a JSON sidecar describing its columns. Nothing is written when an input is
wrong (every check runs first); a file of the user's is never replaced (the fit folder's
manifest says which files are the tool's). Never imports torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .fit import WorkflowError

__all__ = ["LabelSettings", "LabelResult", "FitFolder", "read_fit_folder", "label_fit_folder",
           "write_table", "TEMPLATE_COLUMNS", "CLASS_COLUMNS"]

#: columns of labels.tsv that template matching writes, and what they hold
TEMPLATE_COLUMNS = {
    "network": "The template assigned to the component one-to-one (Hungarian assignment maximising the summed "
               "absolute spatial correlation); n/a when that |correlation| is below the minimum or no template is "
               "left",
    "domain": "The domain of that template, when the key gives one",
    "network_r": "Spatial (Pearson) correlation over the mask of the group map with the one-to-one template "
                 "(negative: the component is the template upside down)",
    "best_network": "The template with the largest |correlation| with the component (several components may "
                    "share it)",
    "best_network_r": "That correlation",
    "domain_order": "The component's rank (from 1) when ordered by domain, then network, then correlation "
                    "(written with --order-by-domain)",
}
#: columns of labels.tsv that the network-or-artifact rule writes
CLASS_COLUMNS = {
    "class": "network, artifact or uncertain, by the documented rule (docs/labels_denoise_stats.md)",
    "class_reasons": "The rule's reasons, ';'-separated",
}
_GROUP = Path("group")
_FILES = {"maps": _GROUP / "desc-ivae_components.nii.gz", "mask": _GROUP / "desc-ivae_mask.nii.gz",
          "labels": _GROUP / "desc-ivae_labels.tsv"}


@dataclass
class LabelSettings:
    """Options of ``trends-ivae label``.

    Attributes
    ----------
    templates : path, optional
        Template maps (4-D), ROIs (4-D) with a network list, or a 3-D label atlas.
    key : path, optional
        Their names (any form of :func:`~trends_ivae.analysis.keys.read_key`).
    min_r : float, default=0.2
        The spatial correlation a one-to-one match needs to name a network.
    order_by_domain : bool, default=False
        Add the ``domain_order`` column.
    classify : bool, default=True
        Compute the features and the network-or-artifact class.
    tissue : bool, optional
        Use the MNI152 tissue shares (default: when the maps are in MNI space; False for
        maps whose blobs have no anatomy, such as the simulator's).
    force : bool, default=False
        Replace this command's own earlier files.
    """

    templates: str | os.PathLike | None = None
    key: str | os.PathLike | None = None
    min_r: float = 0.2
    order_by_domain: bool = False
    classify: bool = True
    tissue: bool | None = None
    force: bool = False


@dataclass
class LabelResult:
    """What :func:`label_fit_folder` wrote."""

    labels: pd.DataFrame
    written: list = field(default_factory=list)
    template_fit: pd.DataFrame | None = None
    features: pd.DataFrame | None = None


@dataclass
class FitFolder:
    """The parts of a fit folder the analysis reads (no torch).

    Attributes
    ----------
    root : Path
    maps_img, mask_img : Nifti1Image
        The group maps (4-D) and the mask.
    labels : DataFrame
        ``group/desc-ivae_labels.tsv``.
    names : list of str
        Component names.
    """

    root: Path
    maps_img: Any
    mask_img: Any
    labels: pd.DataFrame
    names: list

    def timecourses(self) -> list:
        """Each run's time courses: (subject label, run stem, TR, ndarray (n_volumes, k)), in file order."""
        runs = []
        for tsv in sorted(self.root.glob("sub-*/**/*_desc-ivae_timeseries.tsv")):
            side = tsv.with_suffix(".json")
            meta = json.loads(side.read_text()) if side.is_file() else {}
            data = pd.read_csv(tsv, sep="\t")[self.names].to_numpy(float)
            runs.append((tsv.name.split("_")[0][4:], tsv.name[: -len("_timeseries.tsv")],
                         meta.get("RepetitionTime"), data))
        return runs


def read_fit_folder(fit_dir: str | os.PathLike) -> FitFolder:
    """Read the group maps, mask and labels of a fit folder (BIDS layout).

    Raises
    ------
    WorkflowError
        A file is missing (the message names it and says which layout is read).
    """
    import nibabel as nib

    root = Path(fit_dir)
    for path in _FILES.values():
        if not (root / path).is_file():
            raise WorkflowError(f"{root / path} is missing: {root} is not a BIDS-layout output folder of "
                                "'trends-ivae fit' (the MELODIC and GIFT layouts are not read here)")
    labels = pd.read_csv(root / _FILES["labels"], sep="\t", keep_default_na=False, na_values=["n/a"])
    maps = nib.load(str(root / _FILES["maps"]))
    k = 1 if maps.ndim == 3 else maps.shape[3]
    if len(labels) != k:
        raise WorkflowError(f"{root / _FILES['labels']} has {len(labels)} rows, the maps {k} volumes")
    return FitFolder(root, maps, nib.load(str(root / _FILES["mask"])), labels, [str(n) for n in labels["name"]])


def _sidecar(path: Path, columns: dict, extra: dict | None = None) -> dict:
    side = path.with_suffix(".json")
    old = json.loads(side.read_text()) if side.is_file() else {}
    return {**old, **{c: {"Description": d} for c, d in columns.items()}, **(extra or {})}


def write_table(root: Path, rel: Path, table: pd.DataFrame, columns: dict, *, extra: dict | None = None) -> list:
    """Write ``table`` to ``root/rel`` (TSV, ``n/a`` for missing) and its JSON sidecar, whole;
    record both in the folder's manifest. Returns the two paths."""
    from ..atomic import write_json_atomic, write_text_atomic
    from ..export.outputs import record_outputs

    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _sidecar(path, columns, extra)
    write_text_atomic(path, table.to_csv(sep="\t", index=False, float_format="%.6g", na_rep="n/a"))
    write_json_atomic(path.with_suffix(".json"), sidecar, indent=2)
    record_outputs(root, [rel, rel.with_suffix(".json")])
    return [path, path.with_suffix(".json")]


def check_writable(root: Path, rels: list, force: bool, *, updated: tuple = ()) -> None:
    """Refuse before any work: a file the tool did not write, or (without ``force``) this
    command's own earlier file. ``updated`` are the fit's files rewritten in place (they must
    be the tool's, ``force`` or not)."""
    from ..export.outputs import read_manifest

    ours = read_manifest(root) or set()
    for rel in list(rels) + list(updated):
        path = root / rel
        if not (path.exists() or path.is_symlink()):
            continue
        if rel.as_posix() not in ours or path.is_symlink():
            raise WorkflowError(f"{path} is a file trends-ivae did not write; it is never replaced, --force "
                                "included: move it away")
        if rel not in updated and not force:
            raise WorkflowError(f"{path} exists (written by trends-ivae); pass --force to replace it")


def _outputs(settings: LabelSettings) -> list:
    rels = []
    if settings.templates is not None:
        rels += [_GROUP / "desc-ivae_templatematch.tsv", _GROUP / "desc-ivae_templatefit.tsv"]
    if settings.classify:
        rels += [_GROUP / "desc-ivae_features.tsv"]
    return rels + [r.with_suffix(".json") for r in rels]


def label_fit_folder(fit_dir: str | os.PathLike, settings: LabelSettings | None = None) -> LabelResult:
    """Match templates and/or classify the components of a fit folder; update its labels.

    Parameters
    ----------
    fit_dir : path
        The output folder of ``trends-ivae fit`` (BIDS layout).
    settings : LabelSettings, optional

    Returns
    -------
    LabelResult

    Raises
    ------
    WorkflowError
        The folder, the templates or their key cannot be used (nothing is written).
    """
    from ..analysis.keys import TemplateKeyError
    from ..analysis.templates import TemplateError, component_maps, domain_order, load_templates, match_templates

    s = settings or LabelSettings()
    if s.templates is None and not s.classify:
        raise WorkflowError("nothing to do: give templates, or keep the network-or-artifact classification")
    if s.key is not None and s.templates is None:
        raise WorkflowError("a key needs templates (--key names the volumes or labels of --templates)")
    folder = read_fit_folder(fit_dir)
    root = folder.root
    check_writable(root, _outputs(s), s.force, updated=(_FILES["labels"], _FILES["labels"].with_suffix(".json")))
    labels = folder.labels.copy()
    result = LabelResult(labels=labels)
    written, columns = [], {}
    maps = component_maps(folder.maps_img, folder.mask_img)
    match = None
    if s.templates is not None:
        try:
            templates = load_templates(s.templates, folder.mask_img, s.key)
        except (TemplateError, TemplateKeyError) as exc:
            raise WorkflowError(str(exc)) from None
        match = match_templates(maps, templates, s.min_r)
        comp = match.component_table()
        for col in comp.columns:
            labels[col] = comp[col].to_numpy()
        columns.update({c: TEMPLATE_COLUMNS[c] for c in comp.columns})
        if s.order_by_domain:
            rank = np.empty(len(comp), int)
            rank[domain_order(comp)] = np.arange(1, len(comp) + 1)
            labels["domain_order"] = rank
            columns["domain_order"] = TEMPLATE_COLUMNS["domain_order"]
        result.template_fit = match.template_table(folder.names)
    if s.classify:
        from ..analysis.classify import classify_components
        from ..analysis.features import FEATURE_COLUMNS, component_features

        from ..report.space import detect_space

        feats = component_features(folder.maps_img, folder.mask_img, folder.timecourses(), names=folder.names,
                                   mni=detect_space(folder.maps_img).mni if s.tissue is None else s.tissue)
        classes = classify_components(feats)
        labels["class"] = classes["class"].to_numpy()
        labels["class_reasons"] = classes["reasons"].to_numpy()
        columns.update(CLASS_COLUMNS)
        result.features = feats
    # every check has run: write
    if match is not None:
        r = pd.DataFrame(match.r, columns=match.names)
        r.insert(0, "name", folder.names)
        written += write_table(root, _GROUP / "desc-ivae_templatematch.tsv", r,
                               {"name": "Component name"},
                               extra={"Description": "Spatial (Pearson) correlation over the mask of each group "
                                                     "map (rows) with each template (columns)",
                                      "Templates": str(s.templates), "Key": None if s.key is None else str(s.key)})
        written += write_table(root, _GROUP / "desc-ivae_templatefit.tsv", result.template_fit, _TEMPLATE_FIT,
                               extra={"MinimumCorrelation": s.min_r})
    if result.features is not None:
        written += write_table(root, _GROUP / "desc-ivae_features.tsv", result.features, FEATURE_COLUMNS)
    written += write_table(root, _FILES["labels"], labels, columns)
    result.labels, result.written = labels, written
    return result


_TEMPLATE_FIT = {
    "template": "Template name (from the key)",
    "domain": "Its domain, when the key gives one",
    "component": "The component assigned to it one-to-one (Hungarian); n/a when there are fewer components",
    "r": "Spatial correlation with that component",
    "best_component": "The component most correlated with the template",
    "best_r": "That correlation",
    "found": "Whether the one-to-one correlation reaches the minimum (the template's network is found)",
}
