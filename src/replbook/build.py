"""Compute chapters, render their pages with papermill, and build the book with Jupyter Book 1.

Two kinds of staleness (compute once, render many):

- **compute-stale**: the chapter's saved results carry another compute key than the code and parameters give now
  (:mod:`replbook.results`). The build recomputes them, in a ``replbook compute`` subprocess, before rendering.
- **page-stale**: the page's stamp differs. The stamp hashes the source notebook's cells, the resolved parameters,
  the sha256 of the saved results (JSON and arrays), and the ``ast`` digest of the page code: the chapter's
  ``report.py``, the presentation modules and the ``replbook`` modules the notebook imports, with what they import
  (:func:`replbook.codekey.page_modules`). The build re-renders the page from the saved results with
  ``REPLBOOK_RENDER_ONLY=1``: nothing trains, no model runs, and a results miss is an error.

A page is rendered into a temporary file and moved into place only when every cell ran, so a failure or an interrupt
(Ctrl-C stops the kernel within seconds) never replaces the last good page.
"""

from __future__ import annotations

import ast
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
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from replbook import codekey
from replbook import results as saved
from replbook.chapters import chapter, chapter_params, landed_chapters
from replbook.dashboard import MissingResults, write_dashboard
from replbook.paths import project_root
from replbook.profiles import resolve

INJECTED_TAG = "injected-parameters"


class ChapterFailed(RuntimeError):
    """A chapter's computation or page raised."""


class ChapterInterrupted(KeyboardInterrupt):
    """A chapter run was stopped (Ctrl-C); its kernel is gone and the last good page is kept."""


def source_notebook(slug: str) -> Path:
    return project_root() / "notebooks" / f"{slug}.ipynb"


def executed_notebook(slug: str) -> Path:
    return project_root() / "book" / "chapters" / f"{slug}.ipynb"


def partial_notebook(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial.ipynb")


# --------------------------------------------------------------------------------------------------- staleness


def _cells(slug: str) -> list[tuple]:
    """The source notebook's cells as they key a page: type, source and tags (outputs never count)."""
    nb = nbformat.read(source_notebook(slug), as_version=4)
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def notebook_imports(slug: str) -> set[str]:
    """The ``replbook`` modules the source notebook's code cells import (IPython magics skipped)."""
    nb = nbformat.read(source_notebook(slug), as_version=4)
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            found.update(n for n in names if n.split(".")[0] == "replbook" and codekey.module_file(n))
    return found


def page_files(slug: str) -> dict[str, str]:
    """sha256 of the repository files the chapter's report lists in ``PAGE_FILES`` (tables of the paper's numbers
    and the like): read from the source, so the build need not import the report."""
    tree = ast.parse(codekey.module_file(f"replbook.experiments.{slug}.report").read_text(encoding="utf-8"))
    listed: tuple[str, ...] = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PAGE_FILES" for t in node.targets):
            listed = ast.literal_eval(node.value)
    return {rel: saved.sha256_file(project_root() / rel) for rel in listed}


def page_code(slug: str) -> str:
    """The ``ast`` digest of the code a page runs, and of the repository files its report reads."""
    files = json.dumps(page_files(slug), sort_keys=True)
    return hashlib.sha256((codekey.digest(codekey.page_modules(slug, notebook_imports(slug))) + files).encode()
                          ).hexdigest()


def page_stamp(slug: str, params: Mapping[str, Any], results_path: Path) -> str:
    """The stamp of a page rendered from the results at ``results_path`` with ``params`` (see the module docstring)."""
    payload = {"cells": _cells(slug), "params": dict(params), "results": saved.files_sha256(results_path),
               "code": page_code(slug)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def page_metadata(path: Path) -> dict[str, Any]:
    """The ``replbook`` metadata of an executed page (stamp, params, render time); {} if none."""
    if not path.exists():
        return {}
    try:
        return dict(nbformat.read(path, as_version=4).metadata.get("replbook", {}))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class ChapterState:
    """Where a chapter stands at a profile: its results (``current``, ``stale`` or ``missing``), its page (the
    same, judged only when the results are current), and the measured compute and render seconds."""

    slug: str
    profile: str
    results: str
    page: str
    compute_s: float | None
    render_s: float | None


def state(slug: str, profile: str) -> ChapterState:
    params = resolve(chapter_params(slug), profile, check_assets=False)
    path = saved.book_path(slug, profile)
    header = saved.read_header(path)
    compute_s = header["record"]["compute_wall_s"] if header else None
    if header is None:
        results = "missing"
    else:
        results = "current" if header["compute_key"]["value"] == saved.compute_key(slug, params).value else "stale"
    meta = page_metadata(executed_notebook(slug))
    if results != "current" or not meta or meta.get("profile") != profile:
        page = "missing" if not meta or meta.get("profile") != profile else "stale"
    else:
        fresh = meta.get("stamp") == page_stamp(slug, params, path) and saved.claims_path(path).exists()
        page = "current" if fresh else "stale"
    render_s = meta.get("render_wall_s") if meta.get("profile") == profile else None
    return ChapterState(slug, profile, results, page, compute_s, render_s)


# --------------------------------------------------------------------------------------------------- compute


@contextmanager
def _environ(**values: str | None):
    saved_env = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def compute_chapter(slug: str, profile: str, overrides: Mapping[str, Any] | None = None, book: bool = True,
                    force: bool = False) -> float:
    """Compute (or load) the chapter's results in a ``replbook compute`` subprocess, so each chapter starts from a
    clean interpreter (threads, Flower, worker pools); ``book`` lets it write ``results/`` at the profile's
    defaults, ``force`` recomputes saved results. Returns wall seconds."""
    cmd = [sys.executable, "-m", "replbook", "compute", slug, "--profile", profile]  # one chapter, one process
    cmd += (["--book"] if book else []) + (["--force"] if force else [])
    if overrides:
        cmd += ["--params-json", json.dumps(dict(overrides))]
    env = {**os.environ, saved.WRITE_BOOK_ENV: "1" if book else "0"}
    env.pop(saved.RENDER_ONLY_ENV, None)
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=project_root(), env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise ChapterInterrupted(f"chapter {slug} ({profile}) was interrupted while computing, after "
                                 f"{time.time() - started:.0f} s; its saved results are unchanged.") from None
    if code == 130:
        raise ChapterInterrupted(f"chapter {slug} ({profile}) was interrupted while computing.")
    if code != 0:
        raise ChapterFailed(f"chapter {slug} ({profile}): computing its results failed (exit {code}); the message "
                            f"is above.")
    return time.time() - started


# --------------------------------------------------------------------------------------------------- render


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
        state_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state_ not in ("Z", "X")


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


def _kernel_manager_class() -> type:
    """A kernel manager on IPC sockets: the local kernel talks over files, not unencrypted TCP (and ipykernel's
    warning about TCP goes away)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="replbook-kernel-")) / "kernel"))
            super().__init__(**kwargs)

    return IPCKernelManager


def _execute(source: Path, out: Path, params: Mapping[str, Any], progress: bool) -> None:
    """papermill in a worker thread, so that Ctrl-C reaches this (main) thread; on an interrupt, the kernel
    (which lives in its own session, out of reach of the terminal's signal) is stopped here."""
    import papermill

    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            papermill.execute_notebook(str(source), str(out), parameters=dict(params), cwd=str(project_root()),
                                       kernel_name="python3", progress_bar=progress, report_mode=False,
                                       kernel_manager_class=_kernel_manager_class())
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


def _check_source(slug: str, profile: str) -> None:
    source = json.loads(source_notebook(slug).read_text(encoding="utf-8"))
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in source["cells"]):
        # papermill only warns, then runs the stored values: a cpu build would silently be a smoke run
        raise ChapterFailed(f"notebooks/{slug}.ipynb has no cell tagged 'parameters', so the {profile} values "
                            f"cannot be injected; tag its parameters cell 'parameters'.")


def render_page(slug: str, params: Mapping[str, Any], out: Path, progress: bool = False,
                render_only: bool = True) -> float:
    """Execute the source notebook with ``params`` into ``out`` from the saved results (``render_only``: nothing
    computes, a miss fails); stamp it. The page writes its claims beside the results (the book's only at the
    profile's defaults). The last good page at ``out`` is kept when anything fails."""
    from papermill.exceptions import PapermillExecutionError

    _check_source(slug, params["profile"])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_notebook(out)
    partial.unlink(missing_ok=True)  # left by a run that was killed outright
    cells, code = _cells(slug), page_code(slug)  # what the page starts from: an edit during it leaves it stale
    started = time.time()
    # A non-inline MPLBACKEND (e.g. Agg) inherited by the kernel would leave the book without figures.
    finished = False
    try:
        with _environ(MPLBACKEND=None, **{saved.RENDER_ONLY_ENV: "1" if render_only else None,
                                          saved.WRITE_BOOK_ENV: "1"}):
            _execute(source_notebook(slug), partial, params, progress)
        finished = True
    except PapermillExecutionError as err:
        failed = project_root() / "_build" / "failed" / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(failed)
        raise ChapterFailed(
            f"chapter {slug} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}. The half-run notebook is {failed}; the last good page is kept."
        ) from None
    except KeyboardInterrupt:
        raise ChapterInterrupted(
            f"chapter {slug} ({params['profile']}) was interrupted after {time.time() - started:.0f} s; its kernel "
            f"is stopped and the last good page is kept."
        ) from None
    finally:
        if not finished:  # interrupted or failed: never leave a half-run page in the book
            partial.unlink(missing_ok=True)
    wall = time.time() - started
    results_path = saved.locate(slug, dict(params))
    if results_path is None:
        raise ChapterFailed(f"chapter {slug} rendered, but no saved results match its parameters.")
    nb = nbformat.read(partial, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    payload = {"cells": cells, "params": dict(params), "results": saved.files_sha256(results_path), "code": code}
    nb.metadata["replbook"] = {
        "slug": slug, "profile": params["profile"], "params": dict(params), "render_wall_s": round(wall, 1),
        "stamp": hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest(),
        "results": os.path.relpath(results_path, project_root()),
    }
    nbformat.write(nb, partial)
    partial.replace(out)
    return wall


# --------------------------------------------------------------------------------------------------- commands


def run_chapter(slug: str, profile: str = "smoke", overrides: Mapping[str, Any] | None = None,
                output: Path | None = None, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """``replbook run``: compute (or load) one chapter's results and render its page. At the profile's own defaults
    the results and page are the book's (``results/``, ``book/chapters/``); with other parameters both go to
    ``runs/<slug>/<key12>/`` (or the page to ``output``), and the book is untouched. Returns the page's path."""
    chapter(slug)
    # values are checked before any work; assets only where something is computed (results.compute checks them)
    params = resolve(chapter_params(slug), profile, overrides, check_assets=False)
    if saved.locate(slug, params) is None:
        resolve(chapter_params(slug), profile, overrides)  # it will compute: a missing asset stops it here
    book = saved.is_profile_default(slug, params)
    started = time.time()
    compute_chapter(slug, profile, {k: v for k, v in (overrides or {}).items() if v is not None}, book=book)
    key = saved.compute_key(slug, params).value
    if output is None:
        output = executed_notebook(slug) if book else saved.run_path(slug, key).with_name(f"{slug}.ipynb")
    render_page(slug, params, Path(output), progress=progress)
    log(f"{slug:<12} computed and rendered in {time.time() - started:.1f} s -> {output}")
    log(f"{'':<12} results -> {saved.locate(slug, params, key)}")
    return Path(output)


def publish_results(profile: str) -> None:
    """Copy each landed chapter's results files (JSON, arrays, claims) beside the rendered pages
    (``_build/html/results/<slug>/``), where the run record at the end of every chapter links to them; and its
    sources (``_build/html/files/<slug>/``: the notebook, the kernel modules, the experiment package as a zip), which
    the line under its title links."""
    import zipfile

    html = project_root() / "_build" / "html"
    for ch in landed_chapters():
        source = saved.book_path(ch.slug, profile)
        for path in (source, saved.arrays_path(source), saved.claims_path(source)):
            if path.exists():
                target = html / "results" / ch.slug / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        files = html / "files" / ch.slug
        files.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_notebook(ch.slug), files / f"{ch.slug}.ipynb")
        for kernel in ch.kernels:
            shutil.copyfile(codekey.module_file(f"replbook.{kernel}"), files / f"{kernel}.py")
        package = codekey.module_file(codekey.chapter_package(ch.slug)).parent
        with zipfile.ZipFile(files / "experiment.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for py in sorted(package.rglob("*.py")):
                z.write(py, py.relative_to(package.parent.parent.parent).as_posix())


def build_book(profile: str = "cpu", only: list[str] | None = None, force: bool = False,
               render_only: bool = False, log: Callable[[str], None] = print) -> None:
    """Recompute the compute-stale chapters (none with ``render_only``: they are listed and the build fails),
    re-render the stale pages from saved results, write the verdict dashboard and render the book with Jupyter
    Book; then publish the results files beside it."""
    slugs = only or [c.slug for c in landed_chapters()]
    for slug in slugs:
        chapter(slug)
    if render_only:
        blocked = []
        for slug in slugs:
            st = state(slug, profile)
            if st.results != "current":
                blocked.append(f"{slug}: results {st.results} (results/{slug}/{profile}.json"
                               f"{' is absent' if st.results == 'missing' else ' has another compute key'})")
        if blocked:
            raise ChapterFailed("render-only build, but these chapters need computing:\n  " + "\n  ".join(blocked)
                                + f"\nrun `replbook build --profile {profile}` where their assets are.")
    for slug in slugs:
        st = state(slug, profile)
        params = resolve(chapter_params(slug), profile, check_assets=False)
        compute_s = render_s = None
        if force or st.results != "current":
            log(f"{slug:<12} computing ({profile}; results {st.results}) ...")
            resolve(chapter_params(slug), profile)  # the assets, before any work
            compute_s = compute_chapter(slug, profile, book=True, force=force)
        if force or compute_s is not None or st.page != "current":
            render_s = render_page(slug, params, executed_notebook(slug))
        parts = [f"computed in {compute_s:.0f} s" if compute_s is not None else "results current",
                 f"rendered in {render_s:.0f} s" if render_s is not None else "page current"]
        log(f"{slug:<12} {', '.join(parts)}")
    missing = [c.slug for c in landed_chapters() if page_metadata(executed_notebook(c.slug)).get("profile") != profile]
    if missing:
        raise ChapterFailed(f"chapters {missing} have no {profile} page; run `replbook build --profile {profile} "
                            f"--only {' '.join(missing)}`.")
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
