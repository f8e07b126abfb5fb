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
    # a page opens like a paper: the title, authors and claims first; the parameters cell after it, off the page
    title, params, setup = nb.cells[:3]
    assert title.cell_type == "markdown" and title.source.startswith("# ") and "**Claims under test**" in title.source
    assert {"parameters", "remove-cell"} <= set(params.metadata.get("tags", [])), "cell 2 is the parameters cell"
    assert "remove-cell" in setup.metadata.get("tags", []) and "P = resolve(" in setup.source
    assert "check_assets=False" in setup.source, "a page renders from saved results: compute() checks the assets"
    names = set()
    for line in params.source.splitlines():
        if not line.strip() or line.startswith(("from ", "import ")):
            continue
        match = re.fullmatch(r"(\w+): [\w\[\]]+ = [^#]+  # ([^=]+)", line)
        assert match, f"parameter line needs a type hint and a comment without '=': {line!r}"
        names.add(match.group(1))
    assert names == {"profile"} | {p.name for p in chapter_params(slug).params}
    assert 'profile: str = "smoke"' in params.source
    text = "\n".join(c.source for c in nb.cells)
    headings = ["## Method", "## Setup", "## Experiment", "## Results", "## Paper vs ours", "## Run record"]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions), "the sections come in the contract's order"
    panel = next(c for c in code if "parameters_panel(" in c.source)
    assert "remove-input" in panel.metadata.get("tags", []) and text.index("parameters_panel(") > positions[1]
    assert "glue_claims(" in text and f'compute("{slug}", P)' in text
    assert text.index(f'compute("{slug}", P)') > positions[2], "the results are computed (or loaded) in Experiment"
    record = next(c for c in code if "record_claims(" in c.source)
    assert "remove-input" in record.metadata.get("tags", []) and record is code[-1]
