"""The publishing workflows: every step is a Makefile target, the YAML passes actionlint and zizmor offline, and
the targets the workflows call run here (render from saved results, recompute and compare, the pull request in a dry
run)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = ROOT / ".venv" / "bin"


def phony_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", text, re.M | re.S).group(1)
    return set(phony.replace("\\", " ").split())


def steps(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [s for job in doc["jobs"].values() for s in job["steps"]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_a_makefile_target(path):
    targets = phony_targets()
    runs = [s["run"] for s in steps(path) if "run" in s]
    assert runs
    for command in runs:
        words = command.split()
        assert words[0] == "make" and words[1] in targets and len(words) == 2, \
            f"{path.name}: step {command!r} must be one Makefile target (settings through env:)"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_hold_least_privilege_and_pinned_actions(path):
    doc = yaml.safe_load(path.read_text())
    assert doc["permissions"] == {} and "concurrency" in doc
    for step in steps(path):
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), f"{step['uses']} is not pinned by hash"
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_the_book_publishes_committed_results_on_push_and_by_hand():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = doc[True]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    assert [s["run"] for s in steps(ROOT / ".github" / "workflows" / "book.yml") if "run" in s] == [
        "make setup", "make render"]


@pytest.mark.skipif(not (BIN / "actionlint").exists(), reason="make setup installs actionlint")
def test_actionlint_and_zizmor_find_nothing():
    lint = subprocess.run([BIN / "actionlint", *WORKFLOWS], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = subprocess.run([BIN / "zizmor", "--offline", "--config", ROOT / ".github" / "zizmor.yml",
                            ROOT / ".github" / "workflows"], capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def make(sandbox: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``make`` in a sandbox copy of the project with this checkout's virtual environment (never reinstalled)."""
    venv = ROOT / ".venv"
    cmd = ["make", "-C", str(sandbox), f"VENV={venv}", "-o", str(venv / ".installed"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "REPLBOOK_ROOT": str(sandbox), "REPLBOOK_CACHE": str(sandbox / "cache"),
                               **(env or {})})


#: The chapter the workflow targets recompute in a sandbox: the quickest smoke profile (about 4 s from nothing).
CHAPTER = "speechprune"


@pytest.fixture
def sandbox(tmp_path):
    from conftest import ensure_smoke_results

    results = ensure_smoke_results(CHAPTER)
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("scripts", "notebooks", "data_manifests", "data", "benchmarks", "book"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("chapters"))
    (tmp_path / "results" / CHAPTER).mkdir(parents=True)
    for suffix in (".json", ".npz"):
        shutil.copy(results / CHAPTER / f"smoke{suffix}", tmp_path / "results" / CHAPTER / f"smoke{suffix}")
    return tmp_path


def test_make_recompute_updates_the_results_and_writes_the_reproduce_table(sandbox):
    before = (sandbox / "results" / CHAPTER / "smoke.json").read_bytes()
    proc = make(sandbox, "recompute", "PROFILE=smoke", env={"CHAPTERS": CHAPTER})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (sandbox / "results" / "reproduce.md").read_text()
    assert f"| {CHAPTER} | current |" in table and "| C2 |" in table
    assert (sandbox / "_build" / "reproduce.md").read_text() == table
    after = (sandbox / "results" / CHAPTER / "smoke.json").read_bytes()
    assert after != before  # recomputed: a new run record (its timings differ on every run)


def test_make_refresh_pr_commits_the_results_and_opens_a_pull_request_dry_run(sandbox):
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=sandbox, check=True)
    subprocess.run(["git", "add", "-A"], cwd=sandbox, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=sandbox, check=True)
    quiet = make(sandbox, "refresh-pr", env={"DRY_RUN": "1"})
    assert quiet.returncode == 0 and "unchanged; no pull request" in quiet.stdout
    (sandbox / "results" / CHAPTER / "smoke.json").write_text("{}")
    (sandbox / "results" / "reproduce.md").write_text("# table\n")
    proc = make(sandbox, "refresh-pr", env={"DRY_RUN": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "+ git switch -c refresh-results-" in proc.stdout and "+ git add results" in proc.stdout
    assert "gh pr create --base main" in proc.stdout and "--body-file results/reproduce.md" in proc.stdout
    assert f"Refresh results: {CHAPTER}" in proc.stdout and "x-access-token:***@" in proc.stdout
