"""The shape of the package, read from the source alone (docs/architecture.md).

Beside the layer rules of ``test_layers.py``: few modules directly in the package, none
over 500 lines, no private name taken from another module, no function but ``__init__``
with more than 12 parameters, and no region of 10 or more lines written twice (the same
lines, or the same shape with other names, strings and numbers).
"""
from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trends_ivae"
MAX_ROOT_MODULES = 5
MAX_LINES = 500
MAX_PARAMS = 12
MIN_REPEAT = 10


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(p: Path) -> str:
    return p.relative_to(PACKAGE.parent).as_posix()


def test_few_modules_directly_in_the_package():
    root = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "_version.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_no_module_over_500_lines():
    long = {_rel(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[str]:
    """``from m import _x`` and ``m._x`` on a module imported by name, in ``path``, for the
    package's own modules (relative imports and ``trends_ivae.*``)."""
    tree = ast.parse(path.read_text())
    found, module_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("trends_ivae")):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")
                else:
                    module_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("trends_ivae") and alias.asname:
                    module_names.add(alias.asname)
    ours = {n for n in module_names if n[:1].islower()}   # modules and functions, not classes
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in ours and node.value.id not in {"self", "cls"}):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_imported_from_another_module():
    bad = {_rel(p): hits for p in _modules() if (hits := private_imports(p))}
    assert not bad, bad


def test_no_function_but_init_takes_more_than_12_parameters():
    bad = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "__init__":
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                names = [n for n in names if n not in ("self", "cls")]
                if len(names) > MAX_PARAMS:
                    bad[f"{_rel(p)}:{node.lineno} {node.name}"] = len(names)
    assert not bad, bad


def _text_shape(line: str) -> str:
    """A line of prose (a docstring's) as a shape: words and numbers as placeholders."""
    return " ".join(re.sub(r"\d+(\.\d+)?", "0", re.sub(r"[A-Za-z_]\w*", "N", line)).split())


def _shapes(text: str) -> list[tuple[int, str]]:
    """(line number, the line's shape) for each line with code or docstring text: names,
    strings and numbers replaced by placeholders, each docstring line by its shape;
    comments and blank lines left out."""
    by_line: dict[int, list[str]] = defaultdict(list)
    prev = None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            if tok.type != tokenize.COMMENT:
                prev = tok
            continue
        if tok.type == tokenize.STRING and (prev is None or prev.type in (tokenize.NEWLINE, tokenize.INDENT,
                                                                          tokenize.DEDENT, tokenize.NL)):
            for k, line in enumerate(tok.string.splitlines()):   # a docstring: its lines as prose
                if line.strip():
                    by_line[tok.start[0] + k].append(_text_shape(line))
            prev = tok
            continue
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            word = "N"
        elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_START", -1):
            word = "S"
        elif tok.type in (getattr(tokenize, "FSTRING_MIDDLE", -1), getattr(tokenize, "FSTRING_END", -1)):
            prev = tok
            continue
        elif tok.type == tokenize.NUMBER:
            word = "0"
        else:
            word = tok.string
        by_line[tok.start[0]].append(word)
        prev = tok
    lines = [(n, " ".join(words)) for n, words in sorted(by_line.items())]
    return [(n, shape) for n, shape in lines if not shape.startswith(("import ", "from "))]   # imports: no logic


def repeated_regions(paths: list[Path], min_lines: int = MIN_REPEAT) -> list[str]:
    """Pairs of places whose ``min_lines`` consecutive code lines have the same shape."""
    seen: dict[tuple, tuple[str, int]] = {}
    pairs = set()
    for p in paths:
        shapes = _shapes(p.read_text())
        for i in range(len(shapes) - min_lines + 1):
            window = tuple(s for _, s in shapes[i:i + min_lines])
            if len(set(window)) <= 3:   # a list or a run of one kind of line (``self.a = a``, ``"name",``)
                continue
            where = (_rel(p), shapes[i][0])
            first = seen.setdefault(window, where)
            if first != where and not (first[0] == where[0] and abs(first[1] - where[1]) < min_lines):
                pairs.add((first[0], first[1], where[0], where[1]))
    # one row per pair of files and region start, not per overlapping window
    out, last = [], {}
    for a, la, b, lb in sorted(pairs):
        if last.get((a, b)) is not None and la - last[(a, b)][0] < min_lines:
            continue
        last[(a, b)] = (la, lb)
        out.append(f"{a}:{la} ~ {b}:{lb}")
    return out


def test_no_region_of_10_lines_written_twice():
    dup = repeated_regions(_modules())
    assert not dup, dup


COPIED = """def load(path, n):
    \"\"\"Read the table at ``path``.\"\"\"
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rows.append(line.split("\\t"))
    if len(rows) < n:
        raise ValueError(f"{path}: fewer than {n} rows")
    header, body = rows[0], rows[1:]
    table = {k: [r[i] for r in body] for i, k in enumerate(header)}
    return table, len(body)
"""


def test_the_repeat_finder_finds_a_renamed_copy(tmp_path):
    (tmp_path / "a.py").write_text(COPIED)
    renamed = COPIED.replace("load", "read_table").replace("rows", "lines").replace("table", "columns")
    (tmp_path / "b.py").write_text("X = 1\n\n\n" + renamed.replace("fewer than", "under"))
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert repeated_regions([tmp_path / "a.py", tmp_path / "b.py"])
        assert not repeated_regions([tmp_path / "a.py"])
        (tmp_path / "c.py").write_text("\n".join(f"self.v{i} = v{i}" for i in range(30)) + "\n")
        assert not repeated_regions([tmp_path / "a.py", tmp_path / "c.py"])   # a run of one kind of line
    finally:
        PACKAGE = saved


def test_the_private_name_finder_sees_both_forms(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from .other import _helper, public\nfrom . import sibling\nsibling._hidden()\n"
                 "self_ok = public.__name__\n")
    hits = private_imports(f)
    assert any("_helper" in h for h in hits) and any("sibling._hidden" in h for h in hits)
    assert len(hits) == 2
