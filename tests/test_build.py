"""Chapter execution: staleness by content hash, and a failing chapter never replacing the last good notebook."""

import shutil
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
    nb.cells[0].metadata["tags"] = []
    nbformat.write(nb, path)
    with pytest.raises(build.ChapterFailed, match="no cell tagged 'parameters'"):
        build.run_chapter("minkpp", "smoke", progress=False)


def test_failing_chapter_keeps_the_last_good_notebook(sandbox):
    good = build.executed_notebook("minkpp")
    good.parent.mkdir(parents=True)
    good.write_text("last good")
    params_cell = nbformat.read(sandbox / "notebooks" / "minkpp.ipynb", as_version=4).cells[0]
    broken = new_notebook(cells=[params_cell, new_code_cell("x = 1"), new_code_cell("raise RuntimeError('boom')")])
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(broken, sandbox / "notebooks" / "minkpp.ipynb")
    with pytest.raises(build.ChapterFailed, match=r"chapter minkpp failed in cell 3 .*RuntimeError: boom"):
        build.run_chapter("minkpp", "smoke", progress=False)
    assert good.read_text() == "last good"
    assert (sandbox / "_build" / "failed" / "minkpp.ipynb").exists()
    assert not list(good.parent.glob(".*partial*"))


def test_successful_run_is_stamped_and_then_current(sandbox):
    params_cell = nbformat.read(sandbox / "notebooks" / "minkpp.ipynb", as_version=4).cells[0]
    tiny = new_notebook(cells=[params_cell, new_code_cell("y = profile")])
    tiny.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(tiny, sandbox / "notebooks" / "minkpp.ipynb")
    params = resolve(PARAMS, "smoke")
    assert not build.is_current("minkpp", params)
    build.run_chapter("minkpp", "smoke", progress=False)
    executed = nbformat.read(build.executed_notebook("minkpp"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-input" in injected[0].metadata["tags"]
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
    params_cell = nbformat.read(sandbox / "notebooks" / "minkpp.ipynb", as_version=4).cells[0]
    tiny = new_notebook(cells=[params_cell, new_code_cell("y = profile")])
    tiny.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(tiny, sandbox / "notebooks" / "minkpp.ipynb")
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
