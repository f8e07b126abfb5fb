"""Run chapters with papermill and build the book with Jupyter Book 1.

An executed chapter lives at ``book/chapters/<slug>.ipynb`` with, in its metadata, the hash of what produced it:
the source notebook's cells, the resolved parameters, and the files of the ``replbook`` modules the chapter's kernel
had loaded when it finished (recorded by a cell the build appends to every run and removes afterwards). Editing a
module that a chapter never loads leaves it current; a chapter whose hash is unchanged is not rerun.

A chapter is executed into a temporary file and moved into place only when every cell ran, so a failure or an
interrupt (Ctrl-C stops the kernel within seconds) never replaces the last good executed notebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat

from replbook.chapters import chapter, chapter_params, landed_chapters
from replbook.dashboard import MissingResults, write_dashboard
from replbook.paths import project_root
from replbook.profiles import resolve

INJECTED_TAG = "injected-parameters"
MODULES_TAG = "replbook-loaded-modules"
#: Appended to every run: prints the replbook modules the kernel loaded, as JSON (read back, then removed).
MODULES_CELL = ("import json as _json, sys as _sys\n"
                "print(_json.dumps(sorted(m for m in _sys.modules if m == 'replbook' or m.startswith('replbook.'))))")


class ChapterFailed(RuntimeError):
    """A chapter notebook raised in one of its cells."""


class ChapterInterrupted(KeyboardInterrupt):
    """A chapter run was stopped (Ctrl-C); its kernel is gone and the last good notebook is kept."""


def source_notebook(slug: str) -> Path:
    return project_root() / "notebooks" / f"{slug}.ipynb"


def executed_notebook(slug: str) -> Path:
    return project_root() / "book" / "chapters" / f"{slug}.ipynb"


def partial_notebook(slug: str) -> Path:
    return executed_notebook(slug).with_name(f".{slug}.partial.ipynb")


def package_root() -> Path:
    """The folder of the ``replbook`` package whose files key the chapters."""
    return Path(__file__).resolve().parent


def module_digests() -> dict[str, str]:
    """sha256 of the file of every module of the package, keyed by dotted name (``replbook.record``)."""
    root = package_root()
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _cells(slug: str) -> list[tuple]:
    """The source notebook's cells as they key a run: type, source and tags (outputs never count)."""
    nb = nbformat.read(source_notebook(slug), as_version=4)
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def _hash(cells: list[tuple], params: Mapping[str, Any], modules: Iterable[str] | None,
          digests: Mapping[str, str]) -> str:
    names = sorted(digests) if modules is None else sorted(set(modules))
    src = {name: digests.get(name, "missing") for name in names}
    payload = json.dumps({"cells": cells, "params": dict(params), "src": src}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def chapter_hash(slug: str, params: Mapping[str, Any], modules: Iterable[str] | None = None) -> str:
    """Content hash of (source cells, resolved parameters, the files of ``modules`` as they are now): the
    staleness key. ``modules`` are the dotted names a run loaded (``None``: every module of the package); a module
    whose file is gone hashes as missing."""
    return _hash(_cells(slug), params, modules, module_digests())


def run_metadata(slug: str) -> dict[str, Any]:
    """The ``replbook`` metadata of the executed notebook (hash, modules, params, wall time); {} if none."""
    path = executed_notebook(slug)
    if not path.exists():
        return {}
    return dict(nbformat.read(path, as_version=4).metadata.get("replbook", {}))


def is_current(slug: str, params: Mapping[str, Any]) -> bool:
    meta = run_metadata(slug)
    if "hash" not in meta:
        return False
    return meta["hash"] == chapter_hash(slug, params, meta.get("modules"))


def _with_modules_cell(slug: str, folder: Path) -> Path:
    """A copy of the source notebook with the loaded-modules cell appended, written into ``folder``."""
    nb = nbformat.read(source_notebook(slug), as_version=4)
    cell = nbformat.v4.new_code_cell(MODULES_CELL)
    cell.metadata["tags"] = [MODULES_TAG, "remove-cell"]
    nb.cells.append(cell)
    path = folder / f"{slug}.ipynb"
    nbformat.write(nb, path)
    return path


def _loaded_modules(nb: nbformat.NotebookNode) -> list[str]:
    """Read and remove the loaded-modules cell of an executed notebook."""
    for i, cell in enumerate(nb.cells):
        if MODULES_TAG in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            del nb.cells[i]
            return json.loads(text.strip().splitlines()[-1])
    raise ChapterFailed("the executed notebook lost the cell that records its loaded modules.")


def _finish_notebook(path: Path, slug: str, params: Mapping[str, Any], wall: float, cells: list[tuple],
                     digests: Mapping[str, str]) -> None:
    """Record the modules the run loaded, stamp the metadata with the hash of what the run started from (its
    ``cells`` and module ``digests``, so an edit during the run leaves the chapter stale) and remove the
    injected-parameters cell from the page (the chapter shows its parameters as a table)."""
    nb = nbformat.read(path, as_version=4)
    modules = _loaded_modules(nb)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.metadata["replbook"] = {"slug": slug, "hash": _hash(cells, params, modules, digests), "modules": modules,
                               "params": dict(params), "wall_time_s": round(wall, 1)}
    nbformat.write(nb, path)


def _kernel_pids() -> list[int]:
    """Process ids of the Jupyter kernels this process started (its children running ipykernel), from /proc."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"ipykernel" in cmdline:
                pids.append(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _stop_kernels(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM each kernel's process group (a kernel leads its own session), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.05)


def _execute(source: Path, out: Path, params: Mapping[str, Any], progress: bool) -> None:
    """papermill in a worker thread, so that Ctrl-C reaches this (main) thread; on an interrupt, the kernel
    (which lives in its own session, out of reach of the terminal's signal) is stopped here."""
    import papermill

    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            papermill.execute_notebook(str(source), str(out), parameters=dict(params), cwd=str(project_root()),
                                       kernel_name="python3", progress_bar=progress, report_mode=False)
        except BaseException as err:  # handed to the main thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="papermill", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        _stop_kernels(_kernel_pids())
        worker.join(5.0)
        raise
    if "error" in outcome:
        raise outcome["error"]


def run_chapter(slug: str, profile: str = "smoke", overrides: Mapping[str, Any] | None = None,
                progress: bool = True) -> float:
    """Execute ``notebooks/<slug>.ipynb`` at ``profile`` into ``book/chapters/<slug>.ipynb``; returns wall seconds.

    Parameters are resolved and validated (assets included) before papermill starts; all of them are injected,
    so the executed notebook records every value it ran with.
    """
    from papermill.exceptions import PapermillExecutionError

    chapter(slug)
    params = resolve(chapter_params(slug), profile, overrides)
    source = json.loads(source_notebook(slug).read_text(encoding="utf-8"))
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in source["cells"]):
        # papermill only warns, then runs the stored values: a cpu build would silently be a smoke run
        raise ChapterFailed(f"notebooks/{slug}.ipynb has no cell tagged 'parameters', so the {profile} values "
                            f"cannot be injected; tag its parameters cell 'parameters'.")
    out = executed_notebook(slug)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_notebook(slug)
    partial.unlink(missing_ok=True)  # left by a run that was killed outright
    # what the run starts from: an edit during the run must leave the chapter stale
    cells, digests = _cells(slug), module_digests()
    started = time.time()
    # A non-inline MPLBACKEND (e.g. Agg) inherited by the kernel would leave the book without figures.
    saved_backend = os.environ.pop("MPLBACKEND", None)
    finished = False
    try:
        with tempfile.TemporaryDirectory(prefix=f"replbook-{slug}-") as folder:
            _execute(_with_modules_cell(slug, Path(folder)), partial, params, progress)
        finished = True
    except PapermillExecutionError as err:
        failed = project_root() / "_build" / "failed" / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(failed)
        raise ChapterFailed(
            f"chapter {slug} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}. The half-run notebook is {failed}; the last good one is kept."
        ) from None
    except KeyboardInterrupt:
        raise ChapterInterrupted(
            f"chapter {slug} ({profile}) was interrupted after {time.time() - started:.0f} s; its kernel is "
            f"stopped and the last good notebook is kept."
        ) from None
    finally:
        if saved_backend is not None:
            os.environ["MPLBACKEND"] = saved_backend
        if not finished:  # interrupted or failed: never leave a half-run notebook in the book
            partial.unlink(missing_ok=True)
    wall = time.time() - started
    _finish_notebook(partial, slug, params, wall, cells, digests)
    partial.replace(out)
    return wall


def publish_results(profile: str) -> None:
    """Copy each landed chapter's results JSON beside the rendered pages (``_build/html/results/<slug>/``), where
    the run record at the end of every chapter links to it."""
    for ch in landed_chapters():
        source = project_root() / "results" / ch.slug / f"{profile}.json"
        target = project_root() / "_build" / "html" / "results" / ch.slug / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def build_book(profile: str = "cpu", only: list[str] | None = None, force: bool = False,
               log=print) -> None:
    """Run the stale chapters (or only ``only``), write the verdict dashboard, render the whole book with Jupyter
    Book and publish the results files beside it."""
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
    try:
        write_dashboard(profile)
    except MissingResults as err:
        raise ChapterFailed(str(err)) from None
    started = time.time()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(project_root()), "--all", "-W",
           "--keep-going"]
    proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ChapterFailed(f"jupyter-book build failed (warnings are errors):\n{tail}")
    publish_results(profile)
    log(f"{'book':<12} rendered in {time.time() - started:.1f} s -> {project_root() / '_build' / 'html'}")
