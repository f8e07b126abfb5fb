"""The verdict dashboard written from the claims files pages write: every landed chapter's claims with links to their
rows, the counts figure, and a clear stop when a chapter's page was never rendered for the profile."""

import json

import pytest

from replbook import dashboard
from replbook.chapters import CHAPTERS, landed_chapters
from replbook.results import files_sha256


def fake_results(root, profile="cpu", skip=()):
    for ch in landed_chapters():
        if ch.slug in skip:
            continue
        folder = root / "results" / ch.slug
        folder.mkdir(parents=True)
        claims = [{"id": "C1", "claim": f"{ch.slug} <beats> baseline", "paper": "+2", "source": "Table 1",
                   "ours": "+1 [0, 2]", "profile": profile, "verdict": "inconclusive", "reason": "holds both"},
                  {"id": "C2a", "claim": "costs less", "paper": None, "source": "-", "ours": "x", "profile": profile,
                   "verdict": "illustrated", "reason": "our model"}]
        (folder / f"{profile}.json").write_text("{}")
        (folder / f"{profile}.claims.json").write_text(json.dumps(
            {"slug": ch.slug, "profile": profile, "compute_key": "fedcba9876543210", "computed_at": "0123456789abcdef",
             "results_sha256": files_sha256(folder / f"{profile}.json"),
             "compute_started": "2026-11-29T00:00:00Z", "compute_wall_s": 61.0, "rendered_at": "89abcdef01234567",
             "claims": claims}))


def test_dashboard_lists_every_claim_with_its_link_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    fake_results(tmp_path)
    page = dashboard.write_dashboard("cpu").read_text()
    for ch in landed_chapters():
        for anchor in ("claim-c1", "claim-c2a"):
            assert f'href="chapters/{ch.slug}.html#{anchor}"' in page
    assert "&lt;beats&gt;" in page and "<beats>" not in page  # claim text is escaped
    assert "0123456789ab" in page
    if all(ch.landed for ch in CHAPTERS):
        assert "None: every chapter has landed." in page
    else:
        assert "pending; no verdicts yet" in page
    assert (tmp_path / dashboard.FIGURE).stat().st_size > 1000
    counts = dashboard.verdict_counts(dashboard.load_results("cpu"))
    assert all(c["inconclusive"] == 1 and c["illustrated"] == 1 and c["reproduced"] == 0 for c in counts.values())


def test_claims_rendered_from_other_results_stop_the_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    fake_results(tmp_path)
    (tmp_path / "results" / "clat" / "cpu.json").write_text('{"recomputed": true}')
    with pytest.raises(dashboard.MissingResults, match="clat/cpu.claims.json was rendered from other results"):
        dashboard.write_dashboard("cpu")


def test_a_landed_chapter_without_results_stops_the_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    fake_results(tmp_path, skip=("clat",))
    with pytest.raises(dashboard.MissingResults, match="clat has no results/clat/cpu.claims.json.*--only clat"):
        dashboard.write_dashboard("cpu")


def test_regime_counts_separate_tested_failed_and_unmeasured_premises():
    premises = [{"id": "R1", "holds": True}, {"id": "R2", "holds": False}, {"id": "R3", "holds": None}]
    claims = [{"id": "C1", "verdict": "reproduced", "premises": ["R1"]},
              {"id": "C2", "verdict": "not comparable", "premises": ["R1", "R2", "R3"]},  # one fails: failed
              {"id": "C3", "verdict": "not comparable", "premises": ["R1", "R3"]},  # none fails, one unmeasured
              {"id": "C4", "verdict": "illustrated", "premises": []}]  # names none: not tested
    record = {"premises": premises, "claims": claims}
    assert dashboard.regime_counts(record) == {"claims": 4, "tested": 1, "premise failed": 1,
                                               "premise not measured": 1}
    overview = dashboard.overview_html({"minkpp": record})
    assert 'class="verdict-chip premise-failed"' in overview and 'class="verdict-chip premise-unmeasured"' in overview
    assert overview.count('class="verdict-chip"') == 2
