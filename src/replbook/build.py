"""Run chapters with papermill and build the book with Jupyter Book 1.

An executed chapter lives at ``book/chapters/<slug>.ipynb`` with, in its metadata, the hash of what produced it:
the source notebook's cells, the resolved parameters and every file of ``src/replbook``. A chapter whose hash is
unchanged is not rerun. A chapter is executed into a temporary file and moved into place only when every cell ran,
so a failure never replaces the last good executed notebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from replbook.chapters import chapter, chapter_params, landed_chapters
from replbook.paths import project_root
from replbook.profiles import resolve

INJECTED_TAG = "injected-parameters"


class ChapterFailed(RuntimeError):
    """A chapter notebook raised in one of its cells."""


def source_notebook(slug: str) -> Path:
    return project_root() / "notebooks" / f"{slug}.ipynb"


def executed_notebook(slug: str) -> Path:
    return project_root() / "book" / "chapters" / f"{slug}.ipynb"


def _src_hash() -> str:
    digest = hashlib.sha256()
    src = Path(__file__).resolve().parent
    for path in sorted(src.rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chapter_hash(slug: str, params: Mapping[str, Any]) -> str:
    """Content hash of (source cells, resolved parameters, src/replbook): the staleness key."""
    nb = nbformat.read(source_notebook(slug), as_version=4)
    cells = [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]
    payload = json.dumps({"cells": cells, "params": dict(params), "src": _src_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def is_current(slug: str, params: Mapping[str, Any]) -> bool:
    path = executed_notebook(slug)
    if not path.exists():
        return False
    meta = nbformat.read(path, as_version=4).metadata.get("replbook", {})
    return meta.get("hash") == chapter_hash(slug, params)


def _finish_notebook(path: Path, slug: str, params: Mapping[str, Any], wall: float, source_hash: str) -> None:
    """Collapse the injected-parameters cell (kept as the visible record of the run) and stamp the metadata with
    the hash of what the run started from (an edit during the run must leave the chapter stale)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nb.metadata["replbook"] = {"slug": slug, "hash": source_hash, "params": dict(params),
                               "wall_time_s": round(wall, 1)}
    nbformat.write(nb, path)


def run_chapter(slug: str, profile: str = "smoke", overrides: Mapping[str, Any] | None = None,
                progress: bool = True) -> float:
    """Execute ``notebooks/<slug>.ipynb`` at ``profile`` into ``book/chapters/<slug>.ipynb``; returns wall seconds.

    Parameters are resolved and validated (assets included) before papermill starts; all of them are injected,
    so the executed notebook records every value it ran with.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    chapter(slug)
    params = resolve(chapter_params(slug), profile, overrides)
    source = json.loads(source_notebook(slug).read_text(encoding="utf-8"))
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in source["cells"]):
        # papermill only warns, then runs the stored values: a cpu build would silently be a smoke run
        raise ChapterFailed(f"notebooks/{slug}.ipynb has no cell tagged 'parameters', so the {profile} values "
                            f"cannot be injected; tag its first cell 'parameters'.")
    out = executed_notebook(slug)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{slug}.partial.ipynb")
    source_hash = chapter_hash(slug, params)
    started = time.time()
    # A non-inline MPLBACKEND (e.g. Agg) inherited by the kernel would leave the book without figures.
    saved_backend = os.environ.pop("MPLBACKEND", None)
    finished = False
    try:
        papermill.execute_notebook(
            str(source_notebook(slug)), str(partial), parameters=dict(params), cwd=str(project_root()),
            kernel_name="python3", progress_bar=progress, report_mode=False,
        )
        finished = True
    except PapermillExecutionError as err:
        failed = project_root() / "_build" / "failed" / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(failed)
        raise ChapterFailed(
            f"chapter {slug} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}. The half-run notebook is {failed}; the last good one is kept."
        ) from None
    finally:
        if saved_backend is not None:
            os.environ["MPLBACKEND"] = saved_backend
        if not finished:  # interrupted or failed: never leave a half-run notebook in the book
            partial.unlink(missing_ok=True)
    wall = time.time() - started
    _finish_notebook(partial, slug, params, wall, source_hash)
    partial.replace(out)
    return wall


def build_book(profile: str = "cpu", only: list[str] | None = None, force: bool = False,
               log=print) -> None:
    """Run the stale chapters (or only ``only``), then render the whole book with Jupyter Book."""
    slugs = only or [c.slug for c in landed_chapters()]
    for slug in slugs:
        chapter(slug)
    for slug in slugs:
        params = resolve(chapter_params(slug), profile, check_assets=False)
        if not force and is_current(slug, params):
            log(f"{slug:<12} up to date ({profile})")
            continue
        log(f"{slug:<12} running ({profile}) ...")
        wall = run_chapter(slug, profile)
        log(f"{slug:<12} ran in {wall:.1f} s")
    missing = [c.slug for c in landed_chapters() if not executed_notebook(c.slug).exists()]
    if missing:
        raise ChapterFailed(f"chapters {missing} have never run; run `replbook build --only {' '.join(missing)}`.")
    started = time.time()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(project_root()), "--all", "-W",
           "--keep-going"]
    proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ChapterFailed(f"jupyter-book build failed (warnings are errors):\n{tail}")
    log(f"{'book':<12} rendered in {time.time() - started:.1f} s -> {project_root() / '_build' / 'html'}")
