"""Read the key of a template or atlas file: the name (and domain) of each volume or label.

One reader, :func:`read_key`, for the forms in use:

``tsv``
    A nilearn-style labels table (``.tsv`` / ``.csv`` with a header): a ``name`` (or
    ``label``) column, an optional ``index`` column (the volume number from 1, or the
    label value of a 3-D atlas) and an optional ``domain`` (or ``network``) column.
``indexed``
    GIFT / NeuroMark ``.txt`` keys: one line per template, ``INDEX<TAB>NAME[<TAB>DOMAIN]``
    (tabs, or two or more spaces, between the fields; a first line ``index name ...`` is
    read as a header); ``INDEX NAME`` with single spaces gives the rest of the line as
    the name.
``names``
    One name per line, in volume (or label value) order.
``networks``
    GIFT ``RSN.txt`` style lists, ``NAME, ROI, ROI, ...``: each network is the union of
    the listed volumes of a 4-D binary ROI file (or of the listed label values of a 3-D
    atlas). Commas inside a name are kept (only the trailing integers are ROIs).

Blank lines and lines starting with ``#`` are skipped; the last line needs no newline.
The form is detected from the text (:func:`detect_format`); pass ``fmt`` to force one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["TemplateKey", "TemplateKeyError", "KEY_FORMATS", "read_key", "detect_format"]

#: the forms :func:`read_key` reads
KEY_FORMATS = ("tsv", "indexed", "names", "networks")

_INT = re.compile(r"^\s*\d+\s*$")
_FIELDS = re.compile(r"\t+|\s{2,}")
_SPACED = re.compile(r"^\s*\d+ +\S")


class TemplateKeyError(ValueError):
    """A key file that cannot be read, or that does not fit its image (the message names both)."""


@dataclass(frozen=True)
class TemplateKey:
    """The names of a template file's templates.

    Attributes
    ----------
    names : list of str
        One name per template.
    domains : list of str
        The domain of each template ("" when the key gives none).
    values : list of tuple of int
        For each template, the volumes (from 1, 4-D files) or label values (3-D atlases)
        that make it: one each, or several for a network that is a union of ROIs.
    fmt : str
        The form read (one of :data:`KEY_FORMATS`).
    source : str
        The key file.
    """

    names: list
    domains: list
    values: list
    fmt: str
    source: str

    def __len__(self) -> int:
        return len(self.names)


def _lines(text: str) -> list[str]:
    return [ln.rstrip("\r") for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def detect_format(path: str | os.PathLike, text: str) -> str:
    """The key form of ``text`` (read from ``path``): see the module's docstring."""
    lines = _lines(text)
    suffix = Path(path).suffix.lower()
    if suffix in (".tsv", ".csv"):
        return "tsv"
    if lines and all("," in ln and _INT.match(ln.rsplit(",", 1)[1]) for ln in lines):
        return "networks"
    body = lines[1:] if lines and not _INT.match(lines[0].split()[0]) else lines
    if body and all(len(_FIELDS.split(ln.strip())) >= 2 and _INT.match(_FIELDS.split(ln.strip())[0])
                    for ln in body):
        return "indexed"
    if lines and all(_SPACED.match(ln) for ln in lines):
        return "indexed"
    return "names"


def _from_table(path: Path, table: pd.DataFrame) -> TemplateKey:
    cols = {c.lower().strip(): c for c in table.columns}
    name_col = cols.get("name") or cols.get("label") or cols.get("labels")
    if name_col is None:
        raise TemplateKeyError(f"{path}: a labels table needs a 'name' (or 'label') column; it has {list(table.columns)}")
    names = [str(n) for n in table[name_col]]
    if "index" in cols:
        try:
            values = [(int(v),) for v in table[cols["index"]]]
        except (TypeError, ValueError) as exc:
            raise TemplateKeyError(f"{path}: the 'index' column must hold integers ({exc})") from None
    else:
        values = [(i + 1,) for i in range(len(names))]
    dom_col = cols.get("domain") or cols.get("network")
    domains = ["" if pd.isna(d) else str(d) for d in table[dom_col]] if dom_col else [""] * len(names)
    return TemplateKey(names, domains, values, "tsv", str(path))


def _read_tsv(path: Path) -> TemplateKey:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep)
    except (ValueError, pd.errors.ParserError) as exc:
        raise TemplateKeyError(f"{path}: not a readable labels table ({exc})") from None
    return _from_table(path, table)


def _read_networks(path: Path, lines: list[str]) -> TemplateKey:
    names, values = [], []
    for ln in lines:
        parts = [p.strip() for p in ln.split(",")]
        k = len(parts)
        while k > 1 and _INT.match(parts[k - 1]):
            k -= 1
        name = ", ".join(parts[:k]).strip()
        if not name or k == len(parts):
            raise TemplateKeyError(f"{path}: the line {ln!r} is not 'NAME, ROI, ROI, ...'")
        names.append(name)
        values.append(tuple(int(p) for p in parts[k:]))
    return TemplateKey(names, [""] * len(names), values, "networks", str(path))


def _read_indexed(path: Path, lines: list[str]) -> TemplateKey:
    first = _FIELDS.split(lines[0].strip())
    if not _INT.match(lines[0].split()[0]):
        header = [f.lower() for f in first]
        table = pd.DataFrame([_FIELDS.split(ln.strip()) for ln in lines[1:]])
        table.columns = header[: table.shape[1]] + [f"c{i}" for i in range(len(header), table.shape[1])]
        return _from_table(path, table)
    names, domains, values = [], [], []
    for ln in lines:
        fields = _FIELDS.split(ln.strip())
        if len(fields) < 2:                       # "INDEX NAME WITH SPACES": one space after the index
            fields = ln.strip().split(None, 1)
        values.append((int(fields[0]),))
        names.append(fields[1].strip())
        domains.append(fields[2].strip() if len(fields) > 2 else "")
    return TemplateKey(names, domains, values, "indexed", str(path))


def read_key(path: str | os.PathLike, fmt: str | None = None) -> TemplateKey:
    """Read a key file in any of :data:`KEY_FORMATS` (detected unless ``fmt`` is given).

    Raises
    ------
    TemplateKeyError
        The file is missing, empty, of an unknown form, or a line does not parse (the
        message names the file and the line).
    """
    p = Path(path)
    if not p.is_file():
        raise TemplateKeyError(f"{p}: no such key file")
    if fmt is not None and fmt not in KEY_FORMATS:
        raise TemplateKeyError(f"{p}: unknown key format {fmt!r}; one of {', '.join(KEY_FORMATS)}")
    text = p.read_text(errors="replace")
    lines = _lines(text)
    if not lines:
        raise TemplateKeyError(f"{p}: the key file is empty")
    fmt = fmt or detect_format(p, text)
    if fmt == "tsv":
        key = _read_tsv(p)
    elif fmt == "networks":
        key = _read_networks(p, lines)
    elif fmt == "indexed":
        try:
            key = _read_indexed(p, lines)
        except (IndexError, ValueError) as exc:
            raise TemplateKeyError(f"{p}: not an 'INDEX<TAB>NAME[<TAB>DOMAIN]' key ({exc})") from None
    else:
        key = TemplateKey([ln.strip() for ln in lines], [""] * len(lines), [(i + 1,) for i in range(len(lines))],
                          "names", str(p))
    if len(set(key.names)) < len(key.names):
        dup = sorted({n for n in key.names if key.names.count(n) > 1})
        raise TemplateKeyError(f"{p}: names appear twice: {', '.join(dup[:5])}")
    return key
