"""The replication of the replication: recompute chapters from nothing and compare with the committed results.

``replbook reproduce [SLUG ...]`` (``make reproduce``) recomputes each chapter at a profile (``cpu``) in a temporary
project root with an empty weight cache (or ``--cache DIR``), so nothing saved is reused, then judges both the
committed and the recomputed results with today's report and writes, per claim, the committed and the recomputed
estimate and verdict, with the flips marked, to ``_build/reproduce.md``. Its differences are information, not
failures: a flip is a verdict that moved between two computations of the same code (or of old and new code, when the
committed results are compute-stale). ``--update`` also puts the recomputed results into ``results/`` and the table
into ``results/reproduce.md`` (the recompute workflow's pull request carries both, for review).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replbook import results as saved
from replbook.chapters import chapter_params
from replbook.paths import project_root
from replbook.profiles import resolve
from replbook.record import git_commit, utc
from replbook.verdicts import Claim

#: What a temporary root needs besides the package: the manifests, the data tables, recorded benchmark runs.
ROOT_FOLDERS = ("data_manifests", "data", "benchmarks")
REPORT = Path("_build") / "reproduce.md"
COMMITTED_REPORT = Path("results") / "reproduce.md"


@dataclass(frozen=True)
class Row:
    """One claim, committed against recomputed."""

    id: str
    committed_estimate: str
    committed_verdict: str
    recomputed_estimate: str
    recomputed_verdict: str

    @property
    def flipped(self) -> bool:
        return self.committed_verdict != self.recomputed_verdict


@dataclass(frozen=True)
class ChapterComparison:
    slug: str
    rows: list[Row]
    recompute_s: float
    committed_state: str  # current, stale (other code or parameters), missing, unreadable
    note: str = ""

    @property
    def flips(self) -> int:
        return sum(r.flipped for r in self.rows)


def estimate_text(claim: Claim) -> str:
    """The estimate a verdict read (its interval), or the claim's own value where the rule has none."""
    est = claim.rule.estimate if claim.rule is not None else None
    if est is None or not all(map(math.isfinite, (est.mean, est.lo, est.hi))):
        return claim.ours if len(claim.ours) <= 80 else claim.ours[:77] + "..."
    return f"{est.mean:+.3f} [{est.lo:+.3f}, {est.hi:+.3f}]"


def judge(slug: str, path: Path, params: dict[str, Any]) -> list[Claim]:
    """The claims today's report draws from the results saved at ``path``."""
    module = saved.chapter_module(slug)
    report = importlib.import_module(f"replbook.experiments.{slug}.report")
    return report.claims(saved.load(path, module.RESULTS), params)


def recompute(slug: str, profile: str, root: Path, cache: Path) -> Path:
    """Compute ``slug`` at ``profile`` in the temporary project ``root`` with the weight cache ``cache``; returns
    the results file."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ROOT_FOLDERS:
        if (project_root() / folder).exists() and not (root / folder).exists():
            (root / folder).symlink_to(project_root() / folder, target_is_directory=True)
    env = {**os.environ, "REPLBOOK_ROOT": str(root), "REPLBOOK_CACHE": str(cache)}
    env.pop(saved.RENDER_ONLY_ENV, None)
    subprocess.run([sys.executable, "-m", "replbook", "compute", slug, "--profile", profile, "--book"], env=env,
                   check=True, cwd=project_root())
    return root / "results" / slug / f"{profile}.json"


def compare(slug: str, profile: str, cache: Path | None = None, update: bool = False) -> ChapterComparison:
    """Recompute ``slug`` from nothing and compare its claims with the committed results'."""
    params = resolve(chapter_params(slug), profile, check_assets=False)
    committed = saved.book_path(slug, profile)
    header = saved.read_header(committed)
    if header is None:
        state = "missing"
    else:
        state = "current" if header["compute_key"]["value"] == saved.compute_key(slug, params).value else "stale"
    with tempfile.TemporaryDirectory(prefix=f"replbook-reproduce-{slug}-") as tmp:
        started = time.time()
        fresh = recompute(slug, profile, Path(tmp) / "root", cache or Path(tmp) / "cache")
        seconds = time.time() - started
        new = {c.id: c for c in judge(slug, fresh, params)}
        old: dict[str, Claim] = {}
        note = ""
        if state != "missing":
            try:
                old = {c.id: c for c in judge(slug, committed, params)}
            except Exception as err:  # results of older code may not fit today's results type
                state, note = "unreadable", f"{type(err).__name__}: {err}"
        if update:
            for suffix in (".json", ".npz"):
                shutil.copyfile(fresh.with_suffix(suffix), committed.with_suffix(suffix))
    rows = []
    for cid in list(old) + [c for c in new if c not in old]:
        a, b = old.get(cid), new.get(cid)
        rows.append(Row(cid, estimate_text(a) if a else "-", a.verdict if a else "absent",
                        estimate_text(b) if b else "-", b.verdict if b else "absent"))
    return ChapterComparison(slug, rows, seconds, state, note)


def markdown(comparisons: Sequence[ChapterComparison], profile: str, cache: Path | None) -> str:
    """The reproduce table: a summary line per chapter, then every claim of every chapter."""
    flips = sum(c.flips for c in comparisons)
    lines = [f"# Reproduce: the {profile} results recomputed from nothing", "",
             f"*{utc(time.time())}, commit {git_commit()}; weight cache "
             f"{'`' + str(cache) + '` (kept)' if cache else 'empty (temporary)'}. {flips} verdict(s) moved.*", "",
             "Each chapter was recomputed in a temporary project root, then the committed and the recomputed results "
             "were judged by today's report. A flip (**⇄**) is a verdict that differs. Committed results that are "
             "*stale* were computed by other code or parameters, so a flip there may be the change itself.", "",
             "| chapter | committed results | claims | flips | recompute |", "|---|---|---|---|---|"]
    lines += [f"| {c.slug} | {c.committed_state} | {len(c.rows)} | {c.flips} | {c.recompute_s:.0f} s |"
              for c in comparisons]
    for c in comparisons:
        lines += ["", f"## {c.slug}", ""]
        if c.note:
            lines += [f"The committed results could not be read by today's code ({c.note}).", ""]
        lines += ["| claim | committed estimate | committed verdict | recomputed estimate | recomputed verdict | |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r.id} | {r.committed_estimate} | {r.committed_verdict} | {r.recomputed_estimate} | "
                  f"{r.recomputed_verdict} | {'**⇄**' if r.flipped else ''} |" for r in c.rows]
    return "\n".join(lines) + "\n"


def reproduce(slugs: Sequence[str], profile: str = "cpu", cache: Path | None = None, update: bool = False,
              log: Callable[[str], None] = print) -> Path:
    """Recompute ``slugs`` and write the comparison to ``_build/reproduce.md`` (and, with ``update``, the recomputed
    results into ``results/`` and the table into ``results/reproduce.md``); returns the report's path."""
    comparisons = []
    for slug in slugs:
        log(f"{slug:<12} recomputing ({profile}) from nothing ...")
        c = compare(slug, profile, cache, update)
        log(f"{slug:<12} {len(c.rows)} claims, {c.flips} flip(s), recomputed in {c.recompute_s:.0f} s")
        comparisons.append(c)
    text = markdown(comparisons, profile, cache)
    out = project_root() / REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if update:
        (project_root() / COMMITTED_REPORT).write_text(text, encoding="utf-8")
    (out.with_suffix(".json")).write_text(json.dumps(
        [{"slug": c.slug, "state": c.committed_state, "recompute_s": round(c.recompute_s, 1),
          "rows": [r.__dict__ | {"flipped": r.flipped} for r in c.rows]} for c in comparisons], indent=1))
    return out
