"""The verdict dashboard: the book's front page of results, generated from ``results/<slug>/<profile>.claims.json``
(each chapter's claims as its page judged them from its saved results).

One table of every claim of every landed chapter (chapter, claim, paper, ours, verdict, reason; each claim links to
its row on the chapter page), a figure of verdict counts per chapter in the book's verdict palette, the profile,
commit and date of the results it shows, and a line per pending chapter. The build writes it before rendering, so it
follows every rerun; a landed chapter without a results file for the profile stops the build.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from replbook import results as saved
from replbook.chapters import CHAPTERS, Chapter, landed_chapters
from replbook.page import INK, VERDICT_COLOURS
from replbook.paths import project_root
from replbook.verdicts import VERDICTS

PAGE = "book/verdicts.md"
FIGURE = "book/_generated/verdict_counts.png"


class MissingResults(RuntimeError):
    """A landed chapter has no claims file for the profile being built (its page was never rendered)."""


def load_results(profile: str, chapters: list[Chapter] | None = None) -> dict[str, dict[str, Any]]:
    """slug → the chapter's claims file at ``profile``, for every landed chapter (or ``chapters``)."""
    out = {}
    for ch in chapters or landed_chapters():
        path = project_root() / "results" / ch.slug / f"{profile}.claims.json"
        if not path.exists():
            raise MissingResults(f"chapter {ch.slug} has no results/{ch.slug}/{profile}.claims.json for the verdict "
                                 f"dashboard: its page was never rendered; run `replbook build --profile {profile} "
                                 f"--only {ch.slug}`.")
        claims = json.loads(path.read_text(encoding="utf-8"))
        results = saved.book_path(ch.slug, profile)
        if not results.exists() or claims.get("results_sha256") != saved.files_sha256(results):
            raise MissingResults(f"results/{ch.slug}/{profile}.claims.json was rendered from other results than "
                                 f"results/{ch.slug}/{profile}.json: re-render it (`replbook build --profile "
                                 f"{profile} --only {ch.slug}`).")
        out[ch.slug] = claims
    return out


def verdict_counts(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """slug → verdict → number of claims, every verdict of the vocabulary present (zeros included)."""
    return {slug: {v: sum(c["verdict"] == v for c in record["claims"]) for v in VERDICTS}
            for slug, record in results.items()}


def plot_counts(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """Stacked horizontal bars: one per chapter, one segment per verdict, in the book's palette."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    slugs = list(counts)[::-1]
    fig, ax = plt.subplots(figsize=(8.0, 0.45 * len(slugs) + 1.2))
    left = [0] * len(slugs)
    for verdict in VERDICTS:
        widths = [counts[s][verdict] for s in slugs]
        ax.barh(slugs, widths, left=left, color=VERDICT_COLOURS[verdict], edgecolor="#444444", linewidth=0.6,
                label=verdict)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set(xlabel="claims", title="Verdicts per chapter")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(text: Any) -> str:
    return html.escape(str(text if text is not None else "not transcribed"))


def _premise_states(claim: dict[str, Any], premises: dict[str, dict[str, Any]]) -> list[bool | None]:
    return [premises.get(pid, {}).get("holds") for pid in claim.get("premises", [])]


def premise_failed(claim: dict[str, Any], premises: dict[str, dict[str, Any]]) -> bool:
    """The claim names a premise that was measured in the run and does not hold."""
    return any(h is False for h in _premise_states(claim, premises))


def premise_not_measured(claim: dict[str, Any], premises: dict[str, dict[str, Any]]) -> bool:
    """No premise of the claim fails, but one was not measured in the run (a later issue measures it): the claim is
    not comparable for want of a measurement, not because its regime was shown to be wrong."""
    states = _premise_states(claim, premises)
    return not any(h is False for h in states) and any(h is not True for h in states)


def tested(claim: dict[str, Any], premises: dict[str, dict[str, Any]]) -> bool:
    """Tested in its regime: the claim names at least one premise and every one holds."""
    states = _premise_states(claim, premises)
    return bool(states) and all(h is True for h in states)


def regime_counts(record: dict[str, Any]) -> dict[str, int]:
    """A chapter's claims: how many, how many tested in regime, how many whose premise failed, how many whose
    premise was not measured (and none failed)."""
    premises = {p["id"]: p for p in record.get("premises", [])}
    claims = record["claims"]
    return {"claims": len(claims), "tested": sum(tested(c, premises) for c in claims),
            "premise failed": sum(premise_failed(c, premises) for c in claims),
            "premise not measured": sum(premise_not_measured(c, premises) for c in claims)}


def _href(slug: str, cid: str) -> str:
    return f"chapters/{slug}.html#claim-{cid.lower()}"


def overview_html(results: dict[str, dict[str, Any]]) -> str:
    """The view a reader takes in at a glance: one row per chapter, each claim a chip in its verdict's colour
    (a dashed border where a premise failed), and the chapter's counts."""
    titles = {c.slug: c.title for c in CHAPTERS}
    rows = []
    for slug, record in results.items():
        premises = {p["id"]: p for p in record.get("premises", [])}
        chips = []
        for c in record["claims"]:
            failed = premise_failed(c, premises)
            unmeasured = premise_not_measured(c, premises)
            tip = f"{c['id']}: {c['verdict']}" + (" (a premise failed)" if failed else
                                                  " (a premise not measured)" if unmeasured else "")
            mark = " premise-failed" if failed else " premise-unmeasured" if unmeasured else ""
            chips.append(f'<a class="verdict-chip{mark}" href="{_href(slug, c["id"])}" '
                         f'title="{_cell(tip)}" data-verdict="{_cell(c["verdict"])}" '
                         f'style="background-color: {VERDICT_COLOURS.get(c["verdict"], "")}">{_cell(c["id"])}</a>')
        n = regime_counts(record)
        rows.append(f'<tr data-chapter="{slug}"><td><a href="chapters/{slug}.html" title="{_cell(titles[slug])}">'
                    f'{slug}</a></td><td>{" ".join(chips)}</td><td>{n["tested"]} of {n["claims"]}</td>'
                    f'<td>{n["premise failed"]}</td><td>{n["premise not measured"]}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("chapter", "claims", "tested in regime", "premise failed",
                                             "premise not measured"))
    return f'<table class="verdicts-overview"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def counts_html(results: dict[str, dict[str, Any]]) -> str:
    """Per chapter: claims, tested in regime, premise failed, and the number of each verdict."""
    counts = verdict_counts(results)
    regime = ("claims", "tested", "premise failed", "premise not measured")
    head = "".join(f"<th>{h}</th>" for h in (("chapter",) + regime + tuple(VERDICTS)))
    rows, total = [], {k: 0 for k in (*regime, *VERDICTS)}
    for slug, record in results.items():
        row = {**regime_counts(record), **counts[slug]}
        total = {k: total[k] + row[k] for k in total}
        rows.append(f"<tr><td>{slug}</td>" + "".join(f"<td>{row[k]}</td>" for k in total) + "</tr>")
    rows.append("<tr><td><strong>book</strong></td>" + "".join(f"<td><strong>{v}</strong></td>"
                                                                for v in total.values()) + "</tr>")
    return f'<table class="verdict-counts"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def claims_html(results: dict[str, dict[str, Any]]) -> str:
    """Every claim with its reason, collapsed per chapter; each links to its row on the chapter page
    (``chapters/<slug>.html#claim-…``)."""
    blocks = []
    head = "".join(f"<th>{h}</th>" for h in ("claim", "paper", "ours", "premises", "verdict", "reason"))
    for slug, record in results.items():
        premises = {p["id"]: p for p in record.get("premises", [])}
        rows = []
        for c in record["claims"]:
            colour = VERDICT_COLOURS.get(c["verdict"], "")
            mark = {True: "✓", False: "✗", None: "not measured"}
            needed = ", ".join(f"{pid} {mark[premises.get(pid, {}).get('holds')]}"
                               for pid in c.get("premises", [])) or "none"
            rows.append(
                f'<tr data-chapter="{slug}"><td><a class="claim-link" href="{_href(slug, c["id"])}">'
                f'{_cell(c["id"])}</a>: {_cell(c["claim"])}</td><td>{_cell(c["paper"])}</td><td>{_cell(c["ours"])}'
                f'</td><td>{_cell(needed)}</td><td style="background-color: {colour}; color: {INK}">'
                f'{_cell(c["verdict"])}</td>'
                f'<td>{_cell(c["reason"])}</td></tr>')
        n = regime_counts(record)
        blocks.append(f'<details class="verdicts-chapter" data-chapter="{slug}"><summary>{slug}: {n["claims"]} '
                      f'claims, {n["tested"]} tested in regime, {n["premise failed"]} with a failed premise, '
                      f'{n["premise not measured"]} with a premise not yet measured'
                      f'</summary><table class="verdicts-table"><thead><tr>{head}</tr></thead><tbody>'
                      f'{"".join(rows)}</tbody></table></details>')
    return "\n".join(blocks)


def runs_html(results: dict[str, dict[str, Any]]) -> str:
    """Which computation and render each chapter's verdicts come from: commits, dates, compute wall time."""
    rows = "".join(f"<tr><td>{slug}</td><td>{_cell(r['compute_key'][:12])}</td><td>{_cell(r['computed_at'][:12])}"
                   f"</td><td>{_cell(r['compute_started'])}</td><td>{r['compute_wall_s']:.0f} s</td>"
                   f"<td>{_cell(r['rendered_at'][:12])}</td></tr>" for slug, r in results.items())
    return ('<table class="verdict-runs"><thead><tr><th>chapter</th><th>compute key</th><th>computed at commit</th>'
            '<th>computed (UTC)</th><th>compute wall time</th><th>rendered at commit</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def reproduce_section(root: Path) -> str:
    """The latest ``make reproduce`` table: the committed one (``results/reproduce.md``, reviewed with the results it
    compares), else this machine's (``_build/reproduce.md``), else how to make one."""
    for rel, where in (("results/reproduce.md", "committed with the results it compares"),
                       ("_build/reproduce.md", "from this machine's last `make reproduce`, not committed")):
        path = root / rel
        if path.exists():
            body = path.read_text(encoding="utf-8").split("\n", 1)[1]  # its own title is this section's
            body = "\n".join("#" * 2 + line if line.startswith("## ") else line for line in body.splitlines())
            return f"*The table below is {where} ({rel}).*\n{body}"
    return ("No `make reproduce` table yet. `make reproduce` recomputes every chapter from nothing and compares, "
            "claim by claim, the recomputed estimates and verdicts with the committed ones; see "
            "[Reproduce a chapter](reproduce.md).")


def write_dashboard(profile: str) -> Path:
    """Write ``book/verdicts.md`` and its figure from the results of ``profile``; returns the page's path."""
    results = load_results(profile)
    root = project_root()
    plot_counts(verdict_counts(results), root / FIGURE)
    commits = sorted({r["computed_at"][:12] for r in results.values()})
    legend = " · ".join(f'<span style="background-color: {VERDICT_COLOURS[v]}; color: {INK}; padding: 0 0.3em">'
                        f'{v}</span>' for v in VERDICTS)
    pending = "\n".join(f"- **{c.slug}**: {c.title} (arXiv {c.arxiv}), pending; no verdicts yet."
                        for c in CHAPTERS if not c.landed)
    smoke_note = ("\n\n**These are smoke-profile results**: every code path on tiny sizes, not the book's "
                  "experiments. Their verdicts say nothing about the papers; build with `--profile cpu` for those."
                  if profile == "smoke" else "")
    page = f"""# Verdicts: which claims held

*Generated by `replbook build` from the `{profile}` profile's claims (`results/<slug>/{profile}.claims.json`) of
{len(results)} chapters, computed at commit{'s' if len(commits) > 1 else ''} {', '.join(commits)} (see Runs below).
Do not edit: the page is rewritten on every build.*{smoke_note}

Every claim of every chapter, judged by the rule its chapter wrote down before the numbers. Vocabulary: {legend}.
*Not reproduced* means our interval excludes the paper's effect; *inconclusive* that it holds both no effect and the
paper's effect; *not comparable* that the run does not test the claim (a premise of the paper's mechanism failed in
the run, or the arm the claim needs was not run); *illustrated* marks a claim our own model implies, shown and never
counted as reproduced. A claim is **tested in regime** when it names at least one premise of the paper's mechanism
(a quantity measured in the run, with a bound set before the numbers) and all of them hold. A chip with a dashed
border is a claim whose premise was measured and failed; a dotted border, one whose premise is not measured yet (the
chapter's "in its regime" issue measures it), so the row's reason gives what the rule alone says. Each chip links to
the claim's row in its chapter, where the reason is argued.

<div class="verdicts-dashboard">

{overview_html(results)}

</div>

{counts_html(results)}

```{{figure}} _generated/verdict_counts.png
:name: fig-verdict-counts
:alt: verdict counts per chapter

Verdicts per chapter ({profile} profile), coloured as in every chapter's claims table.
```

## Every claim, with its reason

<div class="verdicts-reasons">

{claims_html(results)}

</div>

## Runs

<div>

{runs_html(results)}

</div>

## Replication of the replication

{reproduce_section(root)}

## Pending chapters

{pending or "None: every chapter has landed."}
"""
    path = root / PAGE
    path.write_text(page, encoding="utf-8")
    return path
