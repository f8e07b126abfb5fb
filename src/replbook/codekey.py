"""Which code a chapter's computation runs, read from the source, and a digest of it that ignores prose.

The **compute code** of a chapter is the static import closure of ``replbook.experiments.<slug>``: every ``replbook``
module it imports, at the top or inside a function, and theirs in turn (a package's ``__init__`` counts with its
submodules), minus the chapter's ``report.py`` and the presentation modules (:data:`PRESENTATION`), which only read
results. Its digest hashes each module's ``ast`` with docstrings removed, so a comment, a docstring or a
reformatting changes nothing, while any statement does.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR.parent

#: The modules that present results (verdicts, intervals, tables and panels, the dashboard): outside every compute
#: key, inside every page's stamp. Compute code never imports them (``tests/test_results_boundaries.py``).
PRESENTATION = ("replbook.verdicts", "replbook.intervals", "replbook.page", "replbook.dashboard")


def module_file(name: str) -> Path | None:
    """The source file of a ``replbook`` module (a package's ``__init__.py``), or None."""
    path = SRC_DIR.joinpath(*name.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def _is_package(name: str) -> bool:
    file = module_file(name)
    return file is not None and file.name == "__init__.py"


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(name: str) -> set[str]:
    """The ``replbook`` modules that module ``name`` imports anywhere in its source (relative imports resolved;
    ``from a import b`` names the submodule ``a.b`` where there is one), with their parent packages."""
    file = module_file(name)
    if file is None:
        raise ModuleNotFoundError(f"no replbook module {name!r} under {SRC_DIR}")
    stat = file.stat()
    return set(_imports(name, file, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=1024)
def _imports(name: str, file: Path, mtime_ns: int, size: int) -> frozenset[str]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "replbook")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "replbook":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if module_file(sub) else module)
    out = set()
    for module in found:
        if module_file(module) is None:
            raise ModuleNotFoundError(f"{name} imports {module}, which has no source under {SRC_DIR}")
        out.add(module)
        out.update(_parents(module))
    return frozenset(out)


def closure(roots: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """Every module reachable from ``roots`` by imports, with their parent packages, sorted; modules in
    ``exclude`` are neither included nor followed."""
    skip = set(exclude)
    todo = [r for r in roots if r not in skip]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in skip:
            continue
        seen.add(name)
        todo.extend(m for m in (imports_of(name) | set(_parents(name))) if m not in seen)
    return sorted(seen - skip)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _dump(node: object) -> str:
    """An ``ast`` as text without positions, leaving out empty lists and ``None`` fields: unlike ``ast.dump``, the
    same for Python 3.11 and 3.12 (which adds an empty ``type_params`` to every function and class)."""
    if isinstance(node, ast.AST):
        fields = []
        for name, value in ast.iter_fields(node):
            if value is None or value == []:
                continue
            fields.append(f"{name}={_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(v) for v in node)}]"
    return repr(node)


@lru_cache(maxsize=512)
def _normalised(path: Path, mtime_ns: int, size: int) -> str:
    return _dump(_strip_docstrings(ast.parse(path.read_text(encoding="utf-8"))))


def normalised_source(name: str) -> str:
    """The module's ``ast`` without docstrings, as text: equal for two sources that differ only in comments,
    docstrings and layout."""
    file = module_file(name)
    if file is None:
        raise ModuleNotFoundError(name)
    stat = file.stat()
    return _normalised(file, stat.st_mtime_ns, stat.st_size)


def digest(modules: Iterable[str]) -> str:
    """sha256 over the normalised source of ``modules`` (names included, order ignored)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode() + b"\0" + normalised_source(name).encode() + b"\0")
    return h.hexdigest()


def chapter_package(slug: str) -> str:
    return f"replbook.experiments.{slug}"


def compute_modules(slug: str) -> list[str]:
    """The compute code of chapter ``slug`` (see the module docstring)."""
    package = chapter_package(slug)
    return closure([package], exclude=(f"{package}.report", *PRESENTATION))


def page_modules(slug: str, extra: Iterable[str] = ()) -> list[str]:
    """What a chapter's page runs: its ``report.py``, the presentation modules and ``extra`` (the modules its
    notebook imports), with everything they import."""
    return closure([f"{chapter_package(slug)}.report", *PRESENTATION, *extra])
