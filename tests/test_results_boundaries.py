"""The boundaries of "compute once, render many", read from the source with ``ast``: compute code never imports the
presentation modules; a chapter's ``report.py`` only reads results (from its ``common`` only the results type and
constants, never an optimiser, the weight cache, the miniature, the paper profile or a loader); a notebook computes
once, through ``replbook.results.compute``; and the parameters dict stops at the door (``run`` and ``claims``)."""

import ast
from pathlib import Path

import nbformat
import pytest

from replbook import codekey
from replbook.chapters import landed_chapters

ROOT = Path(__file__).resolve().parents[1]
SLUGS = [c.slug for c in landed_chapters()]

#: What each report may import from its chapter's common.py: the results type and constants (tables of the
#: paper's numbers, arm names, labels).
REPORT_MAY_IMPORT = {
    "minkpp": {"LABELS", "MinkppResults", "SeedResult"},
    "speechprune": {"KEY_REMOVED", "ORACLE", "QUESTION_ONLY", "SpeechpruneResults"},
    "lobam": {"CLEAN", "FULL_FT", "LOBAM_NAME", "NAIVE", "SCALED", "SCALED_LAM", "SCHEMES", "SELECTED", "LobamResults",
              "SeedResult"},
    "hwsw": {"HwswResults", "Measured", "Quantised", "Table"},
    "fedprophet": {"ArmRun", "FedProphetResults"},
    "clat": {"BASELINE", "CLAT", "RANDOM_LAYERS", "SHARE_LIMIT", "ClatResults", "SeedResult"},
    "oodv2": {"FAMILY", "OPENOOD_NAMES", "Examples", "Oodv2Results", "SeedResult"},
    "cgr": {"BJD", "CGR", "JOINT_REPLAY", "PSEUDO", "REPLAY_SHOWN", "SEQFT", "CgrResults", "SeedResult", "TaskInfo"},
    "smg": {"ARMS", "AUGMENT", "EWC", "LWF", "MLDG", "SEQFT", "SMD_ARB", "SMD_MIX", "SMD_ORIENT", "SMG", "SMG_LARGE",
            "ArmResult", "SmgResults", "TaylorCheck"},
    "osrvit": {"OsrvitResults", "SeedRun"},
}

#: Modules a page must never import (training, the weight cache, data loaders, profiles' computations).
COMPUTE_ONLY = ("torch.optim", "replbook.cache", "replbook.assets", "replbook.data", "replbook.models",
                "replbook.parallel")


def _imports(tree: ast.AST, package: str = "") -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``tree`` (relative imports resolved against ``package``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            out.append((module, [a.name for a in node.names]))
    return out


def _module_tree(name: str) -> ast.AST:
    return ast.parse(codekey.module_file(name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("slug", SLUGS)
def test_compute_code_never_imports_presentation(slug):
    modules = codekey.compute_modules(slug)
    assert f"replbook.experiments.{slug}.report" not in modules
    for name in modules:
        imported = codekey.imports_of(name)
        bad = imported & {*codekey.PRESENTATION, f"replbook.experiments.{slug}.report"}
        assert not bad, f"{name} (compute code of {slug}) imports {sorted(bad)}"


@pytest.mark.parametrize("slug", SLUGS)
def test_report_only_reads_results(slug):
    name = f"replbook.experiments.{slug}.report"
    common = f"replbook.experiments.{slug}.common"
    for module, names in _imports(_module_tree(name), name.rpartition(".")[0]):
        targets = [module] + [f"{module}.{n}" for n in names]
        for target in targets:
            assert not any(target == c or target.startswith(c + ".") for c in COMPUTE_ONLY), \
                f"{slug}/report.py imports {target}: a report only reads results"
            assert not target.startswith((f"replbook.experiments.{slug}.miniature",
                                          f"replbook.experiments.{slug}.paper")), \
                f"{slug}/report.py imports {target}"
        if module == common:
            extra = set(names) - REPORT_MAY_IMPORT.get(slug, set())
            assert not extra, f"{slug}/report.py imports {sorted(extra)} from common.py: only the results type and " \
                              f"constants (REPORT_MAY_IMPORT) may be"


def _code_cells(slug: str) -> list[str]:
    nb = nbformat.read(ROOT / "notebooks" / f"{slug}.ipynb", as_version=4)
    return ["\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in nb.cells if c.cell_type == "code"]


def _calls(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.append(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


@pytest.mark.parametrize("slug", SLUGS)
def test_a_notebook_computes_once_through_results_compute(slug):
    cells = [ast.parse(src) for src in _code_cells(slug)]
    computing = [i for i, tree in enumerate(cells) if "compute" in _calls(tree)]
    assert len(computing) == 1 and _calls(cells[computing[0]]).count("compute") == 1, \
        f"notebooks/{slug}.ipynb must call replbook.results.compute exactly once"
    imported = [m for tree in cells for m, names in _imports(tree) for m in [m, *(f"{m}.{n}" for n in names)]]
    assert "replbook.results.compute" in imported
    for module in imported:
        assert not any(module == c or module.startswith(c + ".") for c in COMPUTE_ONLY), \
            f"notebooks/{slug}.ipynb imports {module}: pages render from saved results"
        assert not module.endswith((".miniature", ".paper", ".engine")), f"notebooks/{slug}.ipynb imports {module}"
    for tree in cells:
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "run"), \
                f"notebooks/{slug}.ipynb calls {ast.unparse(node.func)}(): compute() is the one entry"


def _dict_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Arguments named ``params`` or ``p`` that carry the parameters dict (unannotated, or a dict/Mapping of Any)."""
    out = []
    for arg in fn.args.args + fn.args.kwonlyargs + fn.args.posonlyargs:
        if arg.arg not in ("params", "p"):
            continue
        note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        if not note or ("Any" in note and ("dict" in note or "Mapping" in note)):
            out.append(arg.arg)
    return out


def _param_callbacks(slug: str) -> set[str]:
    """The functions a chapter hands to ``ChapterParams`` (``validate=``, ``assets=``): they check parameters."""
    tree = _module_tree(f"replbook.experiments.{slug}")
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ChapterParams":
            for kw in node.keywords:
                if kw.arg in ("validate", "assets"):
                    names |= {n.id for n in ast.walk(kw.value) if isinstance(n, ast.Name)}
                    names |= {n.attr for n in ast.walk(kw.value) if isinstance(n, ast.Attribute)}
    return names


def _door(module: str, function: str) -> bool:
    """The functions that may take the parameters dict: a chapter's ``run`` (its ``__init__``), its report's
    ``claims`` and ``premises``, and the parameter checks it hands to ``ChapterParams``."""
    parts = module.split(".")
    if len(parts) == 3 and function == "run":  # replbook.experiments.<slug>: the package's __init__
        return True
    if parts[-1] == "report" and function in ("claims", "premises"):
        return True
    return len(parts) >= 3 and function in _param_callbacks(parts[2])


def test_the_parameters_stop_at_the_door():
    offenders = []
    for path in sorted((ROOT / "src" / "replbook" / "experiments").rglob("*.py")):
        parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _dict_params(node) \
                    and not _door(module, node.name):
                offenders.append(f"{module}.{node.name}")
    assert offenders == [], f"these take the whole parameters dict below run(): {offenders}; give them the few " \
                            f"values they use, or a small typed config (replbook.profiles.config)"


def test_the_door_check_flags_a_deep_params_argument():
    fn = ast.parse("def train(model, params: dict[str, Any]): pass").body[0]
    assert _dict_params(fn) == ["params"]
    fn = ast.parse("def step(params: dict[str, Tensor]): pass").body[0]  # model parameters are not the dict
    assert _dict_params(fn) == []
    assert _door("replbook.experiments.minkpp", "run") and not _door("replbook.experiments.minkpp.miniature", "run")


@pytest.mark.parametrize("slug", SLUGS)
def test_each_claim_is_judged_by_a_short_function(slug):
    tree = _module_tree(f"replbook.experiments.{slug}.report")
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "claims" in functions, f"{slug}/report.py needs claims(results, params), the one entry to its claims"
    assert [a.arg for a in functions["claims"].args.args[:2]] == ["results", "params"]
    long = {name: n.end_lineno - n.lineno + 1 for name, n in functions.items()
            if "claim" in name and n.end_lineno - n.lineno + 1 > 40}
    assert not long, f"{slug}: claim functions over 40 lines: {long}"
    assert not {"make_claims", "judge_claims", "metrics_record"} & set(functions)
