"""The layer rules of docs/architecture.md, read from the source: the loading and writing
layers (data, reduction, export) never import torch, the torch networks (estimators/nn)
never import nibabel or nilearn, and the package's imports have no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trends_ivae"


def _imports(path: Path, toplevel_only: bool) -> set[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]   # the containing package
    nodes = tree.body if toplevel_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out.add(mod)
                if not node.module:   # from . import x
                    out.update(f"{mod}.{a.name}" for a in node.names)
            else:
                out.add(node.module)
    return out


def _modules(sub: str = "") -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


#: the layers that load and write files: never torch (counting imports inside functions)
NO_TORCH = ("data", "reduction", "export", "analysis")


def test_loading_and_writing_layers_never_import_torch():
    files = [p for room in NO_TORCH for p in _modules(room)]
    assert len(files) > 20
    bad = {str(p.relative_to(PACKAGE)): sorted(m for m in _imports(p, False) if m.split(".")[0] == "torch")
           for p in files}
    assert not {k: v for k, v in bad.items() if v}


def test_torch_networks_never_import_nibabel_or_nilearn():
    banned = {"nibabel", "nilearn"}
    files = _modules("estimators/nn")
    assert len(files) > 5
    bad = {str(p.relative_to(PACKAGE)): sorted(m for m in _imports(p, False) if m.split(".")[0] in banned)
           for p in files}
    assert not {k: v for k, v in bad.items() if v}


def _graph(toplevel_only: bool = True) -> dict[str, set[str]]:
    names = {}
    for p in _modules():
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = p
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        deps = set()
        for imp in _imports(path, toplevel_only=toplevel_only):
            while imp and imp not in names:
                imp = imp.rpartition(".")[0]
            if imp and imp != mod and not mod.startswith(imp + "."):   # a package's own __init__ is not a cycle
                deps.add(imp)
        graph[mod] = deps
    return graph


def test_no_import_cycle_at_module_level():
    graph = _graph()
    # the graph is read right: a few edges that must be there
    assert "trends_ivae.estimators.base" in graph["trends_ivae.estimators.ivae"]
    assert "trends_ivae.estimators.nn.flow" in graph["trends_ivae.estimators.flow"]
    assert "trends_ivae.data.cleaning" in graph["trends_ivae.reduction.prepare"]
    _assert_acyclic(graph)


def test_no_import_cycle_counting_imports_inside_functions():
    """Deferred imports hide a cycle from the import system, not from the design: count them
    too. None is allowed: the base estimator reads every model-file format from the
    registry its subclasses enter themselves in, never by importing them."""
    graph = _graph(toplevel_only=False)
    assert "trends_ivae.estimators.model_file" in graph["trends_ivae.estimators.base"]   # the graph is read
    for sub in ("ivae", "flow"):
        assert f"trends_ivae.estimators.{sub}" not in graph["trends_ivae.estimators.base"]
    assert "trends_ivae.estimators.ivae" not in graph["trends_ivae.estimators.distributed"]
    _assert_acyclic(graph)


def _assert_acyclic(graph: dict[str, set[str]]) -> None:
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


#: rooms a room never imports (imports inside functions counted): the data path runs one way
NEVER = {
    "data": {"reduction", "estimators", "group", "analysis", "export", "report", "workflow", "cli", "interfaces"},
    "reduction": {"estimators", "group", "analysis", "export", "report", "workflow", "cli", "interfaces"},
    "estimators": {"data", "reduction", "group", "analysis", "export", "report", "workflow", "cli", "interfaces"},
    "group": {"analysis", "report", "workflow", "cli", "interfaces"},
    "analysis": {"estimators", "report", "workflow", "cli", "interfaces"},
    "export": {"estimators", "group", "analysis", "report", "workflow", "cli", "interfaces"},
    "report": {"group", "workflow", "cli", "interfaces"},
    "workflow": {"cli", "interfaces"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "root"


def test_rooms_import_only_up_the_data_path():
    graph = _graph(toplevel_only=False)
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                 if _room(d) in NEVER.get(_room(m), ()))
    assert _room("trends_ivae.data") == "data" and _room("trends_ivae.estimators.nn.train") == "estimators"
    assert not bad, bad
