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
        wanted |= {d for d in extra if not d.startswith("replbook[")}  # `all` names the other extras
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e ."} == wanted
    assert "-e ." in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_the_core_is_the_kernels_and_everything_else_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=\[]", d)[0] for d in project["dependencies"]}
    assert core == {"torch", "numpy", "scipy", "pandas", "scikit-learn", "safetensors", "pyyaml", "tqdm"}
    extras = project["optional-dependencies"]
    assert {"book", "fed", "lm", "diffusion", "all", "dev"} <= set(extras)
    assert any(d.startswith("jupyter-book") for d in extras["book"]) and "nbval>=0.11" in extras["book"]
    assert extras["all"] == ["replbook[book,fed,lm,diffusion,media]"]


def test_a_wheel_installs_the_kernels_alone_and_works_outside_a_checkout(tmp_path):
    """The wheel of the package (no build isolation: the tests run offline) requires only the core; installed
    without dependencies beside this environment's packages, outside any checkout, the kernels import and anything
    that needs the project's folders says to set REPLBOOK_ROOT."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    # built from a copy: setuptools writes build/ and *.egg-info/ beside the sources it builds
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("replbook-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        assert "replbook/minkpp.py" in z.namelist() and "replbook/experiments/minkpp/report.py" in z.namelist()
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = {re.split(r"[<>=\[ ;]", r)[0] for r in required if "extra ==" not in r}
    assert unconditional == {"torch", "numpy", "scipy", "pandas", "scikit-learn", "safetensors", "pyyaml", "tqdm"}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REPLBOOK_ROOT", "PYTHONPATH")}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import replbook.minkpp as m; assert 'site' in m.__file__\n"
            "from replbook.paths import project_root\n"
            "try:\n    project_root()\nexcept RuntimeError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REPLBOOK_ROOT" in out.stdout


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
    assert "glue_claims(" in text and "glue_premises(" in text and f'compute("{slug}", P)' in text
    assert code[2].source.strip() == f'source_links("{slug}")' and "remove-input" in code[2].metadata.get("tags", [])
    # the premises and the verdict rules are stated before the numbers
    experiment = positions[2]
    assert re.search(r"\*\*Premises|#+ Premises", text[:experiment]), "state the premises before ## Experiment"
    assert re.search(r"[Vv]erdict rules", text[:experiment]), "state the verdict rules before ## Experiment"
    assert text.index(f'compute("{slug}", P)') > positions[2], "the results are computed (or loaded) in Experiment"
    record = next(c for c in code if "record_claims(" in c.source)
    assert "premises" in record.source
    assert "remove-input" in record.metadata.get("tags", []) and record is code[-1]
