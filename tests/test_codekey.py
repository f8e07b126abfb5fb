"""The compute code of each chapter, read from the source, and its digest: a statement anywhere in a chapter's
compute closure changes its key (and only the keys of the chapters that import it); a docstring, a comment or the
layout do not; presentation modules are outside every compute key."""

import shutil

import pytest

from replbook import codekey
from replbook.chapters import landed_chapters

SLUGS = [c.slug for c in landed_chapters()]


@pytest.fixture
def src_copy(tmp_path, monkeypatch):
    """A copy of the package's sources, free to edit; codekey reads it instead of the real one."""
    shutil.copytree(codekey.SRC_DIR / "replbook", tmp_path / "replbook", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codekey, "SRC_DIR", tmp_path)
    return tmp_path


def keys() -> dict[str, str]:
    return {slug: codekey.digest(codekey.compute_modules(slug)) for slug in SLUGS}


def test_the_closure_follows_imports_and_leaves_out_presentation():
    modules = codekey.compute_modules("minkpp")
    for name in ("replbook.experiments.minkpp", "replbook.experiments.minkpp.miniature", "replbook.minkpp",
                 "replbook.stats", "replbook.models", "replbook.models.tiny_gpt", "replbook"):
        assert name in modules
    for name in ("replbook.experiments.minkpp.report", *codekey.PRESENTATION, "replbook.experiments.clat"):
        assert name not in modules
    assert "replbook.experiments.minkpp.report" in codekey.page_modules("minkpp")
    assert "replbook.verdicts" in codekey.page_modules("minkpp")


def test_relative_and_from_imports_resolve(tmp_path, monkeypatch):
    pkg = tmp_path / "replbook" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "replbook" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    from replbook import top\n")
    (pkg / "b.py").write_text("g = 1\n")
    (tmp_path / "replbook" / "top.py").write_text("import os\n")
    monkeypatch.setattr(codekey, "SRC_DIR", tmp_path)
    assert codekey.closure(["replbook.sub"]) == ["replbook", "replbook.sub", "replbook.sub.a", "replbook.sub.b",
                                                 "replbook.top"]
    assert codekey.closure(["replbook.sub"], exclude=["replbook.sub.a"]) == ["replbook", "replbook.sub"]


def test_a_statement_changes_exactly_the_keys_of_the_chapters_that_import_it(src_copy):
    before = keys()
    closures = {slug: set(codekey.compute_modules(slug)) for slug in SLUGS}
    modules = sorted(set().union(*closures.values()))
    assert len(modules) > 40
    for name in modules:
        path = codekey.module_file(name)
        text = path.read_text()
        path.write_text(text + "\n_NO_OP = None\n")
        after = keys()
        changed = {slug for slug in SLUGS if after[slug] != before[slug]}
        assert changed == {slug for slug in SLUGS if name in closures[slug]}, name
        path.write_text(text)
    assert keys() == before


def test_docstrings_comments_and_layout_do_not_change_a_key(src_copy):
    before = keys()
    path = codekey.module_file("replbook.minkpp")
    text = path.read_text()
    first = text.index('"""') + 3
    edited = text[:first] + "An edited docstring. " + text[first:]
    edited = edited.replace("\ndef ", "\n# a new comment\n\n\ndef ", 1)
    path.write_text(edited)
    assert keys() == before
    path.write_text(text.replace("\ndef ", "\ndef _extra():\n    return 1\n\n\ndef ", 1))
    assert keys()["minkpp"] != before["minkpp"]


def test_presentation_edits_leave_every_compute_key_unchanged(src_copy):
    before = keys()
    for name in (*codekey.PRESENTATION, *(f"replbook.experiments.{s}.report" for s in SLUGS)):
        path = codekey.module_file(name)
        path.write_text(path.read_text() + "\n_NO_OP = None\n")
    assert keys() == before
