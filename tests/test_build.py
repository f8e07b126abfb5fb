"""Chapter execution: staleness by content hash of the modules a chapter loaded, a failing or interrupted chapter
never replacing the last good notebook, and Ctrl-C stopping a run within seconds."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from replbook import build
from replbook.experiments.minkpp import PARAMS
from replbook.profiles import resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of the project's notebooks and manifests under a temporary root."""
    for folder in ("notebooks", "data_manifests"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
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


def test_hash_changes_with_parameters_and_notebook_source(sandbox):
    smoke = resolve(PARAMS, "smoke", check_assets=False)
    cpu = resolve(PARAMS, "cpu", check_assets=False)
    before = build.chapter_hash("minkpp", smoke)
    assert before == build.chapter_hash("minkpp", dict(smoke))
    assert before != build.chapter_hash("minkpp", cpu)
    path = sandbox / "notebooks" / "minkpp.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += " "
    nbformat.write(nb, path)
    assert build.chapter_hash("minkpp", smoke) != before


def test_outputs_do_not_change_the_hash(sandbox):
    smoke = resolve(PARAMS, "smoke", check_assets=False)
    before = build.chapter_hash("minkpp", smoke)
    path = sandbox / "notebooks" / "minkpp.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="noise")]
    nbformat.write(nb, path)
    assert build.chapter_hash("minkpp", smoke) == before


def test_a_notebook_without_a_parameters_cell_is_refused(sandbox):
    path = sandbox / "notebooks" / "minkpp.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "parameters"]
    nbformat.write(nb, path)
    with pytest.raises(build.ChapterFailed, match="no cell tagged 'parameters'"):
        build.run_chapter("minkpp", "smoke", progress=False)


def test_failing_chapter_keeps_the_last_good_notebook(sandbox):
    good = build.executed_notebook("minkpp")
    good.parent.mkdir(parents=True)
    good.write_text("last good")
    write_tiny("minkpp", "x = 1", "raise RuntimeError('boom')")
    with pytest.raises(build.ChapterFailed, match=r"chapter minkpp failed in cell 3 .*RuntimeError: boom"):
        build.run_chapter("minkpp", "smoke", progress=False)
    assert good.read_text() == "last good"
    assert (sandbox / "_build" / "failed" / "minkpp.ipynb").exists()
    assert not list(good.parent.glob(".*partial*"))


def test_successful_run_is_stamped_and_then_current(sandbox):
    write_tiny("minkpp", "import replbook.profiles\ny = profile")
    params = resolve(PARAMS, "smoke")
    assert not build.is_current("minkpp", params)
    build.run_chapter("minkpp", "smoke", progress=False)
    executed = nbformat.read(build.executed_notebook("minkpp"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]
    assert not any(build.MODULES_TAG in c.metadata.get("tags", []) for c in executed.cells)
    assert "replbook.profiles" in executed.metadata["replbook"]["modules"]
    assert "epochs = 2" in injected[0].source  # every resolved value is injected, not only overrides
    assert build.is_current("minkpp", params)
    assert not build.is_current("minkpp", resolve(PARAMS, "smoke", {"epochs": 3}))


def test_two_smoke_runs_of_the_chapter_give_identical_metrics(sandbox, monkeypatch):
    import json

    metrics = []
    for run in range(2):
        # A fresh cache each time: the second run trains again rather than loading the first run's models.
        monkeypatch.setenv("REPLBOOK_CACHE", str(sandbox / f"cache{run}"))
        build.run_chapter("minkpp", "smoke", progress=False)
        record = json.loads((sandbox / "results" / "minkpp" / "smoke.json").read_text())
        metrics.append((record["metrics"], [c["ours"] for c in record["claims"]]))
    assert metrics[0] == metrics[1]


def test_an_edit_during_the_run_leaves_the_chapter_stale(sandbox, monkeypatch):
    write_tiny("minkpp", "y = profile")
    real_finish = build._finish_notebook

    def edit_then_finish(*args, **kwargs):  # the source changes while the chapter runs
        nb = nbformat.read(sandbox / "notebooks" / "minkpp.ipynb", as_version=4)
        nb.cells.append(new_code_cell("z = 1"))
        nbformat.write(nb, sandbox / "notebooks" / "minkpp.ipynb")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(build, "_finish_notebook", edit_then_finish)
    build.run_chapter("minkpp", "smoke", progress=False)
    assert not build.is_current("minkpp", resolve(PARAMS, "smoke"))


def test_an_interrupted_run_leaves_no_partial_notebook(sandbox, monkeypatch):
    import papermill

    def interrupted(input_path, output_path, **kwargs):
        Path(output_path).write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build.run_chapter("minkpp", "smoke", progress=False)
    assert not list((sandbox / "book" / "chapters").glob(".*"))


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the replbook sources that key the chapters, free to edit (the kernels still import the real one,
    under the same module names)."""
    copy = tmp_path / "pkg" / "replbook"
    shutil.copytree(build.package_root(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "package_root", lambda: copy)
    return copy


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_staleness_follows_the_modules_each_chapter_loaded(sandbox, package_copy):
    from replbook.experiments.hwsw import PARAMS as HWSW

    write_tiny("minkpp", "import replbook.record\nimport replbook.stats")
    write_tiny("hwsw", "import replbook.record\nimport replbook.costmodel")
    minkpp, hwsw = resolve(PARAMS, "smoke"), resolve(HWSW, "smoke")
    build.run_chapter("minkpp", "smoke", progress=False)
    build.run_chapter("hwsw", "smoke", progress=False)
    assert build.is_current("minkpp", minkpp) and build.is_current("hwsw", hwsw)
    assert "replbook.costmodel" not in build.run_metadata("minkpp")["modules"]

    edit(package_copy / "costmodel.py")  # only hwsw loaded it
    assert build.is_current("minkpp", minkpp) and not build.is_current("hwsw", hwsw)
    edit(package_copy / "build.py")  # no chapter's kernel loads the build
    assert build.is_current("minkpp", minkpp)
    edit(package_copy / "record.py")  # shared by both
    assert not build.is_current("minkpp", minkpp)

    # a new import is recorded by the next run, and from then on keys the chapter
    write_tiny("minkpp", "import replbook.record\nimport replbook.stats\nimport replbook.ood")
    build.run_chapter("minkpp", "smoke", progress=False)
    assert "replbook.ood" in build.run_metadata("minkpp")["modules"] and build.is_current("minkpp", minkpp)
    edit(package_copy / "ood.py")
    assert not build.is_current("minkpp", minkpp)


def test_a_stale_partial_notebook_from_a_killed_run_is_removed_by_the_next_run(sandbox):
    write_tiny("minkpp", "y = 1")
    stale = build.partial_notebook("minkpp")
    stale.parent.mkdir(parents=True)
    stale.write_text("half a notebook from a run killed with SIGKILL")
    build.run_chapter("minkpp", "smoke", progress=False)
    assert not stale.exists() and build.executed_notebook("minkpp").exists()


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
def test_ctrl_c_stops_a_chapter_within_seconds_and_keeps_the_last_good_notebook(sandbox):
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
    deadline = time.time() + 120
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
    assert not build.partial_notebook("minkpp").exists()
    assert not any(Path(f"/proc/{k}").exists() and build._alive(k) for k in kernels)
