import json

import pytest

from replbook.record import (
    Claim,
    RunRecorder,
    Verdict,
    claims_table,
    format_ci,
    judge_all,
    judge_effect,
    judge_noninferior,
    parameters_panel,
    run_record,
    scale_to_decide,
    style_claims,
)


def claim(verdict="reproduced", cid="C1"):
    return Claim(cid, "Min-K%++ beats Min-K%", "78.3", "Table 1", "0.81 [0.79, 0.83]", "smoke", verdict, "rule")


def test_verdict_and_id_must_be_known():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claim("yes")
    with pytest.raises(ValueError, match="claim id"):
        claim(cid="C1: text")


def test_claims_table_columns_ids_and_missing_paper_value():
    table = claims_table([claim(), Claim("C2", "x", None, "-", "x", "cpu", "not comparable", "r")])
    assert list(table.columns) == ["claim", "paper", "source", "ours", "profile", "verdict", "reason"]
    assert table.loc[0, "claim"] == "C1: Min-K%++ beats Min-K%"
    assert table.loc[1, "paper"] == "not transcribed"
    with pytest.raises(ValueError, match="unique"):
        claims_table([claim(), claim()])


def test_styled_claims_anchor_each_row_and_escape_text():
    c = Claim("C2a", "a <b> claim", "1", "s", "o", "cpu", "partly", "r")
    page = style_claims(claims_table([c]), [c.anchor]).to_html()
    assert 'id="claim-c2a"' in page and "a &lt;b&gt; claim" in page and 'class="claims-table"' in page


@pytest.mark.parametrize("lo, hi, effect, seeds, verdict", [
    (1.5, 3.0, 2.0, (), "reproduced"),         # excludes 0, its centre reaches the paper's +2
    (0.5, 3.0, 2.0, (), "partly"),             # excludes 0, the upper bound reaches +2 but the centre does not
    (0.5, 1.5, 2.0, (), "partly"),             # excludes 0, short of +2
    (-1.0, 1.5, 2.0, (), "not reproduced"),    # excludes +2, not 0
    (-3.0, -1.0, 2.0, (), "not reproduced"),   # significantly against
    (-1.0, 3.0, 2.0, (), "inconclusive"),      # holds both
    (1.5, 3.0, 2.0, ((0.1, 0.9), (-0.9, -0.1)), "inconclusive"),  # a seed significantly against
    (-3.0, -1.0, 2.0, ((0.2, 0.9), (-3.0, -2.0)), "inconclusive"),  # excludes +2, but a seed is significantly for
    (-3.5, -1.0, -2.0, (), "reproduced"),      # a claimed decrease
    (-1.5, -0.5, -2.0, (), "partly"),
    (-0.5, 1.0, -2.0, (), "not reproduced"),
    (float("nan"), 1.0, 2.0, (), "inconclusive"),
    (1.5, 3.0, 2.0, ((0.1, 0.9), (float("nan"), 1.0)), "inconclusive"),  # a seed without an interval
])
def test_judge_effect_reaches_every_outcome(lo, hi, effect, seeds, verdict):
    assert judge_effect(lo, hi, effect, seeds=seeds).verdict == verdict


def test_judge_effect_says_what_scale_would_decide():
    v = judge_effect(-1.0, 3.0, 2.0)
    assert "4.0× the sample" in v.reason  # half-width 2 must fall to 1 to exclude 0 or +2: four times the sample
    assert scale_to_decide(-1.0, 3.0, 2.0, 0.0) == pytest.approx(4.0)
    assert scale_to_decide(-1.0, 5.0, 2.0, 0.0) == pytest.approx(2.25)  # centre 2, half 3: exclude 0, 2 away
    assert "2.2× the sample" in judge_noninferior(-1.5, 1.5, 1.0).reason  # centre 0, 1 from −1: (1.5/1)²
    with pytest.raises(ValueError, match="differ from no effect"):
        judge_effect(0.0, 1.0, 0.0)


@pytest.mark.parametrize("lo, hi, higher, verdict", [
    (-0.5, 2.0, True, "reproduced"),
    (-3.0, -1.5, True, "not reproduced"),
    (-3.0, 2.0, True, "inconclusive"),   # wider than the margin: cannot show "no worse"
    (-2.0, 0.5, False, "reproduced"),    # lower is better: within +1
    (0.5, 3.0, False, "inconclusive"),
])
def test_judge_noninferior_reaches_every_outcome(lo, hi, higher, verdict):
    assert judge_noninferior(lo, hi, 1.0, higher_is_better=higher).verdict == verdict


def test_judge_all_combines_the_parts():
    r, p, n, i = (Verdict(v, v) for v in ("reproduced", "partly", "not reproduced", "inconclusive"))
    assert judge_all([r, r], ["a", "b"]).verdict == "reproduced"
    assert judge_all([r, n], ["a", "b"]).verdict == "partly"
    assert judge_all([p, i], ["a", "b"]).verdict == "inconclusive"  # one part undecided, none failed
    assert judge_all([r, n, i], ["a", "b", "c"]).verdict == "partly"
    with pytest.raises(ValueError, match="at least one"):
        judge_all([], [])
    assert judge_all([n, i], ["a", "b"]).verdict == "not reproduced"
    assert judge_all([i, i], ["a", "b"]).verdict == "inconclusive"
    assert "a: reproduced" in judge_all([r, n], ["a", "b"]).reason


def test_format_ci():
    assert format_ci(0.81234, 0.7, 0.9) == "0.812 [0.700, 0.900]"


def test_record_has_the_contract_fields_and_its_run_record(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    path = RunRecorder("demo", {"profile": "smoke", "epochs": 1}).write(
        {"auroc": 0.7, "bad": float("nan")}, [claim()], seeds=[0, 1])
    assert path == tmp_path / "results" / "demo" / "smoke.json"
    record = json.loads(path.read_text())
    for key in ("parameters", "seeds", "versions", "git_commit", "device", "wall_time_s", "metrics", "claims"):
        assert key in record
    assert record["metrics"]["bad"] is None  # JSON has no NaN
    assert record["versions"]["torch"].startswith("2.13")
    assert record["claims"][0]["verdict"] == "reproduced" and record["claims"][0]["id"] == "C1"
    panel = run_record(path).data
    assert "<details" in panel and 'href="../../results/demo/smoke.json"' in panel
    for name in ("torch", "transformers", "diffusers", "peft", "flwr", "git commit", "wall time"):
        assert name in panel


def test_parameters_panel_marks_values_set_for_the_run():
    from replbook.experiments.minkpp import PARAMS
    from replbook.profiles import resolve

    panel = parameters_panel(PARAMS, resolve(PARAMS, "smoke", {"epochs": 3}, check_assets=False)).data
    assert "<details" in panel and "<code>epochs</code>" in panel and panel.count("set for this run") == 1


def test_placeholder_figures_are_glued_under_every_key(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.setdefault(key, value))
    from replbook.record import glue_placeholder_figures

    glue_placeholder_figures(["fig_a", "fig_b"], "not run")
    assert sorted(glued) == ["fig_a", "fig_b"]
    assert all(fig.texts[0].get_text() == "not run" for fig in glued.values())
