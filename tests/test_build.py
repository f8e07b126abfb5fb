"""Rendering pages from saved results: the page stamp (notebook cells, parameters, the results files, the page
code), a failing or interrupted page never replacing the last good one, Ctrl-C stopping a run within seconds, and a
render-only build that refuses to compute."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ensure_smoke_results
from nbformat.v4 import new_code_cell, new_notebook

from replbook import build, codekey, results
from replbook.experiments.minkpp import PARAMS
from replbook.profiles import resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of the project's notebooks and manifests under a temporary root, with minkpp's smoke results."""
    for folder in ("notebooks", "data_manifests", "data"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    source = ensure_smoke_results("minkpp") / "minkpp"
    (tmp_path / "results" / "minkpp").mkdir(parents=True)
    for suffix in (".json", ".npz"):
        shutil.copy(source / f"smoke{suffix}", tmp_path / "results" / "minkpp" / f"smoke{suffix}")
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def params_cell(slug: str):
    nb = nbformat.read(build.source_notebook(slug), as_version=4)
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def write_tiny(slug: str, *sources: str) -> None:
    """Replace a chapter's source notebook with its parameters cell and ``sources`` as code cells."""
    nb = new_notebook(cells=[params_cell(slug), *(new_code_cell(src) for src in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, build.source_notebook(slug))


SMOKE = resolve(PARAMS, "smoke", check_assets=False)


def stamp(sandbox) -> str:
    return build.page_stamp("minkpp", SMOKE, sandbox / "results" / "minkpp" / "smoke.json")


def test_the_stamp_follows_cells_parameters_and_results_but_not_outputs(sandbox):
    before = stamp(sandbox)
    assert build.page_stamp("minkpp", resolve(PARAMS, "smoke", {"epochs": 3}, check_assets=False),
                            sandbox / "results" / "minkpp" / "smoke.json") != before
    path = sandbox / "notebooks" / "minkpp.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="noise")]
    nbformat.write(nb, path)
    assert stamp(sandbox) == before
    nb.cells[1].source += " "
    nbformat.write(nb, path)
    assert stamp(sandbox) != before
    nb.cells[1].source = nb.cells[1].source[:-1]
    nbformat.write(nb, path)
    (sandbox / "results" / "minkpp" / "smoke.json").write_text(
        (sandbox / "results" / "minkpp" / "smoke.json").read_text() + " ")
    assert stamp(sandbox) != before


def test_a_presentation_edit_stales_the_page_and_not_the_results(sandbox, tmp_path_factory, monkeypatch):
    copy = tmp_path_factory.mktemp("src")
    shutil.copytree(codekey.SRC_DIR / "replbook", copy / "replbook", ignore=shutil.ignore_patterns("__pycache__"))
    key, page = results.compute_key("minkpp", SMOKE).value, stamp(sandbox)
    monkeypatch.setattr(codekey, "SRC_DIR", copy)
    path = copy / "replbook" / "verdicts.py"
    path.write_text(path.read_text() + "\n_NO_OP = None\n")
    assert results.compute_key("minkpp", SMOKE).value == key and stamp(sandbox) != page
    path = copy / "replbook" / "minkpp.py"
    path.write_text(path.read_text() + "\n_NO_OP = None\n")
    assert results.compute_key("minkpp", SMOKE).value != key


def test_a_notebook_without_a_parameters_cell_is_refused(sandbox):
    path = sandbox / "notebooks" / "minkpp.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "parameters"]
    nbformat.write(nb, path)
    with pytest.raises(build.ChapterFailed, match="no cell tagged 'parameters'"):
        build.render_page("minkpp", SMOKE, build.executed_notebook("minkpp"))


def test_failing_page_keeps_the_last_good_one(sandbox):
    good = build.executed_notebook("minkpp")
    good.parent.mkdir(parents=True)
    good.write_text("last good")
    write_tiny("minkpp", "x = 1", "raise RuntimeError('boom')")
    with pytest.raises(build.ChapterFailed, match=r"chapter minkpp failed in cell 3 .*RuntimeError: boom"):
        build.render_page("minkpp", SMOKE, good)
    assert good.read_text() == "last good"
    assert (sandbox / "_build" / "failed" / "minkpp.ipynb").exists()
    assert not list(good.parent.glob(".*partial*"))


def test_a_rendered_page_is_stamped_current_and_renders_from_saved_results(sandbox):
    assert build.state("minkpp", "smoke").page == "missing"
    build.render_page("minkpp", SMOKE, build.executed_notebook("minkpp"))
    st = build.state("minkpp", "smoke")
    assert (st.results, st.page) == ("current", "current") and st.render_s > 0
    executed = nbformat.read(build.executed_notebook("minkpp"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]
    assert "epochs = 2" in injected[0].source  # every resolved value is injected, not only overrides
    claims = results.claims_path(sandbox / "results" / "minkpp" / "smoke.json")
    assert claims.exists() and "C1" in claims.read_text()
    assert not (sandbox / "cache" / "models").exists()  # nothing trained: the page read the saved results


def test_a_results_miss_fails_the_render(sandbox):
    (sandbox / "results" / "minkpp" / "smoke.json").unlink()
    with pytest.raises(build.ChapterFailed, match="ResultsMissing"):
        build.render_page("minkpp", SMOKE, build.executed_notebook("minkpp"))


def test_an_edit_during_the_render_leaves_the_page_stale(sandbox, monkeypatch):
    write_tiny("minkpp", "y = profile")
    real = build._execute

    def edit_then_execute(*args, **kwargs):  # the source changes while the page renders
        real(*args, **kwargs)
        nb = nbformat.read(sandbox / "notebooks" / "minkpp.ipynb", as_version=4)
        nb.cells.append(new_code_cell("z = 1"))
        nbformat.write(nb, sandbox / "notebooks" / "minkpp.ipynb")

    monkeypatch.setattr(build, "_execute", edit_then_execute)
    build.render_page("minkpp", SMOKE, build.executed_notebook("minkpp"))
    assert build.state("minkpp", "smoke").page == "stale"


def test_an_interrupted_render_leaves_no_partial_page(sandbox, monkeypatch):
    import papermill

    def interrupted(input_path, output_path, **kwargs):
        Path(output_path).write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build.render_page("minkpp", SMOKE, build.executed_notebook("minkpp"))
    assert not list((sandbox / "book" / "chapters").glob(".*"))


def test_a_stale_partial_page_from_a_killed_run_is_removed_by_the_next_render(sandbox):
    write_tiny("minkpp", "y = 1")
    out = build.executed_notebook("minkpp")
    stale = build.partial_notebook(out)
    stale.parent.mkdir(parents=True)
    stale.write_text("half a notebook from a run killed with SIGKILL")
    build.render_page("minkpp", SMOKE, out)
    assert not stale.exists() and out.exists()


def test_a_render_only_build_names_every_chapter_it_would_have_to_compute(sandbox, capsys):
    (sandbox / "results" / "minkpp" / "smoke.json").write_text('{"compute_key": {"value": "old"}, "record": '
                                                               '{"compute_wall_s": 1}}')
    with pytest.raises(build.ChapterFailed) as err:
        build.build_book("smoke", only=["minkpp", "hwsw"], render_only=True)
    lines = str(err.value).splitlines()
    assert any(line.strip().startswith("minkpp: results stale") for line in lines)
    assert any(line.strip().startswith("hwsw: results missing") for line in lines)


def kernels_of(pid: int) -> list[int]:
    """Jupyter kernels started by process ``pid``."""
    out = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if b"ipykernel" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out.append(int(child))
            except OSError:
                pass
    return out


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process table from /proc (Linux)")
def test_ctrl_c_stops_a_chapter_within_seconds_and_keeps_the_last_good_page(sandbox):
    write_tiny("minkpp", "import time\ntime.sleep(300)")
    good = build.executed_notebook("minkpp")
    good.parent.mkdir(parents=True)
    good.write_text("last good")
    env = {**os.environ, "REPLBOOK_ROOT": str(sandbox), "REPLBOOK_CACHE": str(sandbox / "cache")}
    # its own session, as a terminal's foreground job: Ctrl-C is SIGINT to the whole process group
    # SIGINT restored to its default: a suite started in the background (nohup, `&`) passes SIGINT on as ignored,
    # and Python then installs no KeyboardInterrupt handler in the child
    proc = subprocess.Popen([sys.executable, "-m", "replbook", "run", "minkpp"], cwd=sandbox, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while not (kernels := kernels_of(proc.pid)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert kernels, "the kernel never started"
    time.sleep(3)  # the kernel is inside the sleeping cell
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=30)
    assert time.time() - sent < 10
    assert proc.returncode == 130
    lines = [line[line.index("replbook:"):] for line in err.replace("\r", "\n").splitlines() if "replbook:" in line]
    assert len(lines) == 1 and "interrupted" in lines[0] and "minkpp" in lines[0], err[-2000:]
    assert good.read_text() == "last good"
    assert not build.partial_notebook(good).exists()
    assert not any(Path(f"/proc/{k}").exists() and build._alive(k) for k in kernels)
