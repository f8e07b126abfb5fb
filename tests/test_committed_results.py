"""The book's committed results: every chapter's cpu results are in the repository, readable, small, and computed by
today's code (a chapter whose results a change left stale must be listed in results/STALE with the reason, so that
a shared refactor can land in small commits; `make book` recomputes those). And a researcher's rerun cannot touch
them: custom runs and plain papermill write under runs/ only."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replbook import results
from replbook.chapters import chapter_params, landed_chapters
from replbook.profiles import resolve

ROOT = Path(__file__).resolve().parents[1]
SLUGS = [c.slug for c in landed_chapters()]


def stale_list() -> dict[str, str]:
    """results/STALE: ``slug: reason`` per line (``#`` comments)."""
    path = ROOT / "results" / "STALE"
    entries = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.split("#", 1)[0].strip()
        if line:
            slug, _, reason = line.partition(":")
            entries[slug.strip()] = reason.strip()
    return entries


def test_the_stale_list_names_chapters_with_reasons():
    for slug, reason in stale_list().items():
        assert slug in SLUGS, f"results/STALE names {slug!r}, which is not a chapter"
        assert len(reason) > 10, f"results/STALE: {slug} needs a reason"


@pytest.mark.parametrize("slug", SLUGS)
def test_committed_results_were_computed_by_todays_code(slug, monkeypatch):
    monkeypatch.delenv("REPLBOOK_ROOT", raising=False)
    path = ROOT / "results" / slug / "cpu.json"
    assert path.exists() and path.with_suffix(".npz").exists(), f"results/{slug}/cpu.* are not committed"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path), str(path.with_suffix(".npz"))],
                             cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0 or not (ROOT / ".git").exists(), f"results/{slug}/cpu.* are not tracked by git"
    params = resolve(chapter_params(slug), "cpu", check_assets=False)
    if slug in stale_list():
        pytest.skip(f"listed in results/STALE: {stale_list()[slug]}")
    assert results.stored_key(path) == results.compute_key(slug, params).value, \
        f"results/{slug}/cpu.json was computed by other code or parameters: recompute it (`make book`) and commit " \
        f"it, or list it in results/STALE with the reason"
    loaded = results.load(path, results.chapter_module(slug).RESULTS)  # the arrays verify and the type reads it
    assert loaded is not None


def test_committed_results_stay_small():
    sizes = {p.relative_to(ROOT).as_posix(): p.stat().st_size for slug in SLUGS
             for p in (ROOT / "results" / slug).glob("cpu.*") if not p.name.endswith(".claims.json")}
    assert sum(sizes.values()) < 30e6, f"the committed results weigh {sum(sizes.values()) / 1e6:.1f} MB"
    big = {k: v for k, v in sizes.items() if k.endswith(".npz") and v > 1.5e6}
    assert not big, f"npz files over 1.5 MB (git keeps every version): {big}"


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


@pytest.fixture
def book_sandbox(tmp_path, monkeypatch):
    """A project copy holding minkpp's smoke results and its rendered page, as the book has them."""
    from conftest import ensure_smoke_results

    source = ensure_smoke_results("minkpp") / "minkpp"
    for folder in ("notebooks", "data_manifests", "data", "benchmarks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "results" / "minkpp").mkdir(parents=True)
    for suffix in (".json", ".npz"):
        shutil.copy(source / f"smoke{suffix}", tmp_path / "results" / "minkpp" / f"smoke{suffix}")
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("REPLBOOK_CACHE", str(ROOT / ".cache" / "replbook"))
    from replbook import build

    build.render_page("minkpp", resolve(chapter_params("minkpp"), "smoke", check_assets=False),
                      build.executed_notebook("minkpp"))
    return tmp_path


def test_a_custom_run_and_plain_papermill_leave_the_book_byte_identical(book_sandbox):
    before = {f: tree_digest(book_sandbox / f) for f in ("results", "book")}
    env_cmd = [sys.executable, "-m", "replbook", "run", "minkpp", "--profile", "smoke", "-p", "epochs", "1",
               "-p", "ks", "[0.2, 0.5]"]
    proc = subprocess.run(env_cmd, cwd=book_sandbox, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((book_sandbox / "runs" / "minkpp").iterdir())
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} >= {"results.json", "results.npz", "claims.json", "minkpp.ipynb"}
    papermill = [sys.executable, "-m", "papermill", str(book_sandbox / "notebooks" / "minkpp.ipynb"),
                 str(book_sandbox / "out.ipynb"), "-p", "profile", "smoke", "-p", "epochs", "1", "-y",
                 "ks: [0.2, 0.5]", "--cwd", str(book_sandbox)]
    proc = subprocess.run(papermill, cwd=book_sandbox, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((book_sandbox / "runs" / "minkpp").iterdir())) == 1  # the same key: the saved run was read
    assert {f: tree_digest(book_sandbox / f) for f in ("results", "book")} == before
