"""Packaging and repository contracts: environment.yml mirrors pyproject.toml; notebooks follow the chapter contract."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from replbook.chapters import chapter_params, landed_chapters

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e ."} == wanted
    assert "-e ." in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_torch_is_pinned_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert all("-c constraints.txt" in line for line in makefile.splitlines() if "pip install" in line)


@pytest.mark.parametrize("slug", [c.slug for c in landed_chapters()])
def test_source_notebook_follows_the_chapter_contract(slug):
    nb = nbformat.read(ROOT / "notebooks" / f"{slug}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") for c in code), "source notebooks are stored without outputs"
    assert "parameters" in nb.cells[0].metadata.get("tags", []), "the first cell is the parameters cell"
    names = set()
    for line in nb.cells[0].source.splitlines():
        if not line.strip() or line.startswith(("from ", "import ")):
            continue
        match = re.fullmatch(r"(\w+): [\w\[\]]+ = [^#]+  # ([^=]+)", line)
        assert match, f"parameter line needs a type hint and a comment without '=': {line!r}"
        names.add(match.group(1))
    assert names == {"profile"} | {p.name for p in chapter_params(slug).params}
    assert 'profile: str = "smoke"' in nb.cells[0].source
    text = "\n".join(c.source for c in nb.cells)
    for heading in ("## Method", "## Setup", "## Experiment", "## Results", "## Paper vs ours", "## Record"):
        assert heading in text
    assert "glue_claims(" in text and "recorder.write(" in text
