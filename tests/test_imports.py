"""The package's import structure, read from the source (``ast``), so that an import hidden inside a function counts
as much as one at the top: no two modules of ``replbook`` import each other (directly or through others), no chapter
imports another chapter, nothing but a chapter's own package imports an experiment, and no experiment is imported
inside a function."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "replbook"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported replbook module, whether the import sits inside a function) for every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names if alias.name.startswith("replbook"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("replbook"):
                for alias in child.names:  # `from replbook.x import y` names the submodule y where there is one
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if is_module(sub) else child.module, inside))
            visit(child, inside)

    visit(tree, False)
    return found


GRAPH = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def chapter_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "experiments" else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_the_graph_sees_every_chapter_package():
    chapters = {chapter_of(m) for m in GRAPH} - {None}
    assert {"minkpp", "speechprune", "hwsw", "clat", "oodv2"} <= chapters
    assert ("replbook.experiments.minkpp.common", False) in GRAPH["replbook.experiments.minkpp.miniature"]


def test_no_two_modules_import_each_other():
    graph = {m: {target for target, _ in targets} for m, targets in GRAPH.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle_through_a_third_module():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_experiments_are_imported_only_by_their_own_chapter_at_the_top(module):
    for target, in_function in GRAPH[module]:
        chapter = chapter_of(target)
        if chapter is None:
            continue
        assert chapter_of(module) == chapter, f"{module} imports {target}: only the chapter's own package may"
        assert not in_function, f"{module} imports {target} inside a function; import it at the top"


@pytest.mark.parametrize("chapter", sorted({chapter_of(m) for m in GRAPH} - {None}))
def test_miniature_and_paper_never_import_each_other(chapter):
    base = f"replbook.experiments.{chapter}"
    for a, b in (("miniature", "paper"), ("paper", "miniature")):
        targets = {t for t, _ in GRAPH.get(f"{base}.{a}", [])}
        assert f"{base}.{b}" not in targets and base not in targets, f"{base}.{a} imports {b} or the package"


def test_the_finder_reads_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from replbook.experiments.minkpp import report\n")
    assert imports(path) == [("replbook.experiments.minkpp.report", True)]
