"""The verdict rules by hand cases: every outcome of judge_effect, judge_noninferior and judge_all, the scale that
would decide an inconclusive interval, and the rule each verdict records as data."""

import math

import pytest

from replbook.intervals import Interval, paired_t
from replbook.verdicts import (
    Claim,
    ClaimSheet,
    Premise,
    Verdict,
    apply_premises,
    cap,
    illustrated,
    judge_all,
    judge_conjunction,
    judge_effect,
    judge_noninferior,
    not_comparable,
    premise,
    scale_to_decide,
)


def iv(lo, hi, mean=None):
    """An interval with its centre as the estimate unless ``mean`` is given."""
    return Interval((lo + hi) / 2 if mean is None else mean, lo, hi, "test", 3)


def claim(verdict="reproduced", cid="C1"):
    return Claim(cid, "Min-K%++ beats Min-K%", "78.3", "Table 1", "0.81 [0.79, 0.83]", "smoke", verdict, "rule")


def test_verdict_and_id_must_be_known():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claim("yes")
    with pytest.raises(ValueError, match="claim id"):
        claim(cid="C1: text")
    with pytest.raises(ValueError, match="rule kind"):
        Verdict("partly", "r", kind="vibes")


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
    v = judge_effect(iv(lo, hi), effect, seeds=[iv(a, b) for a, b in seeds])
    assert v.verdict == verdict
    assert v.kind == "effect" and v.effect == effect and v.null == 0.0 and len(v.seeds) == len(seeds)


def test_judge_effect_reads_the_estimate_not_the_centre():
    # a skewed bootstrap interval: centre +1.75 short of +2, estimate +2.1 reaches it
    assert judge_effect(iv(0.5, 3.0, mean=2.1), 2.0).verdict == "reproduced"
    assert judge_effect(iv(0.5, 3.0, mean=1.9), 2.0).verdict == "partly"


def test_judge_effect_says_what_scale_would_decide():
    v = judge_effect(iv(-1.0, 3.0), 2.0)
    assert "4.0× the sample" in v.reason  # half-width 2 must fall to 1 to exclude 0 or +2: four times the sample
    assert scale_to_decide(iv(-1.0, 3.0), 2.0, 0.0) == pytest.approx(4.0)
    assert scale_to_decide(iv(-1.0, 5.0), 2.0, 0.0) == pytest.approx(2.25)  # centre 2, half 3: exclude 0, 2 away
    assert math.isinf(scale_to_decide(iv(-1.0, 1.0), 0.0))
    assert "2.2× the sample" in judge_noninferior(iv(-1.5, 1.5), 1.0).reason  # centre 0, 1 from −1: (1.5/1)²
    with pytest.raises(ValueError, match="differ from no effect"):
        judge_effect(iv(0.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="out of order"):
        judge_effect(Interval(0.0, 1.0, -1.0, "test", 3), 2.0)


def test_scale_to_decide_solves_the_t_quantile_for_seed_intervals():
    # three seeds whose differences have sd 1: half-width t(0.975, 2)/√3 = 2.48; to exclude 0 from a mean of 1 the
    # half-width must fall below 1: t(0.975, n − 1)/√n < 1 first at n = 7, so 7/3 the seeds, not (2.48/1)² = 6.2×
    est = paired_t([0.0, 1.0, 2.0])
    assert est.hi - est.mean == pytest.approx(2.484, abs=1e-3)
    assert scale_to_decide(est, 0.0) == pytest.approx(7 / 3)
    assert scale_to_decide(Interval(1.0, est.lo, est.hi, "bootstrap", 3), 0.0) == pytest.approx(2.484 ** 2, rel=1e-3)


@pytest.mark.parametrize("lo, hi, higher, verdict", [
    (-0.5, 2.0, True, "reproduced"),
    (-3.0, -1.5, True, "not reproduced"),
    (-3.0, 2.0, True, "inconclusive"),   # wider than the margin: cannot show "no worse"
    (-2.0, 0.5, False, "reproduced"),    # lower is better: within +1
    (0.5, 3.0, False, "inconclusive"),
    (float("nan"), 1.0, True, "inconclusive"),
])
def test_judge_noninferior_reaches_every_outcome(lo, hi, higher, verdict):
    v = judge_noninferior(iv(lo, hi), 1.0, higher_is_better=higher)
    assert v.verdict == verdict and v.kind == "noninferior" and v.margin == 1.0 and v.higher_is_better is higher
    with pytest.raises(ValueError, match="margin must be > 0"):
        judge_noninferior(iv(lo, hi), 0.0)


def test_judge_all_combines_the_parts():
    r, p, n, i = (Verdict(v, v) for v in ("reproduced", "partly", "not reproduced", "inconclusive"))
    assert judge_all({"a": r, "b": r}).verdict == "reproduced"
    assert judge_all({"a": r, "b": n}).verdict == "partly"
    assert judge_all({"a": p, "b": i}).verdict == "inconclusive"  # one part undecided, none failed
    assert judge_all({"a": r, "b": n, "c": i}).verdict == "partly"
    with pytest.raises(ValueError, match="at least one"):
        judge_all({})
    assert judge_all({"a": n, "b": i}).verdict == "not reproduced"
    assert judge_all({"a": i, "b": i}).verdict == "inconclusive"
    both = judge_all({"a": r, "b": n})
    assert "a: reproduced" in both.reason and both.kind == "all" and [name for name, _ in both.parts] == ["a", "b"]


def test_judge_conjunction_takes_the_weakest_part_and_fails_with_any():
    r, p, n, i, c = (Verdict(v, v) for v in ("reproduced", "partly", "not reproduced", "inconclusive",
                                             "not comparable"))
    assert judge_conjunction({"a": r, "b": r}).verdict == "reproduced"
    assert judge_conjunction({"a": r, "b": p}).verdict == "partly"  # judge_all would say partly too ...
    assert judge_conjunction({"a": r, "b": n}).verdict == "not reproduced"  # ... but here it says partly
    assert judge_all({"a": r, "b": n}).verdict == "partly"
    assert judge_conjunction({"a": p, "b": i}).verdict == "inconclusive"
    assert judge_conjunction({"a": r, "b": c}).verdict == "not comparable"
    assert judge_conjunction({"a": n, "b": c}).verdict == "not reproduced"
    assert judge_conjunction({"a": r, "b": i}).kind == "conjunction"
    with pytest.raises(ValueError, match="illustrated"):
        judge_conjunction({"a": r, "b": illustrated("ours")})
    with pytest.raises(ValueError, match="at least one"):
        judge_conjunction({})


def test_a_cap_lowers_only_a_stronger_verdict():
    v = judge_effect(iv(1.5, 3.0), 2.0)
    capped = cap(v, "partly", "the reference does not show it")
    assert capped.verdict == "partly" and capped.at_most == "partly" and "at most partly" in capped.reason
    weak = judge_effect(iv(-1.0, 3.0), 2.0)
    assert cap(weak, "partly", "x").verdict == "inconclusive"


def test_premises_hold_fail_or_are_unmeasured_and_make_claims_not_comparable():
    gap = premise("R1", "a perplexity gap", 0.3, at_least=0.1, source="lm[:].perplexity")
    assert gap.holds is True and gap.required == "≥ 0.1" and gap.measured == "0.3"
    assert premise("R2", "x", 0.05, at_least=0.1).holds is False
    assert premise("R3", "x", None, at_most=1.0).holds is None
    assert premise("R4", "x", 0.5, at_least=0.2, at_most=0.8).required == "≥ 0.2 and ≤ 0.8"
    with pytest.raises(ValueError, match="a bound"):
        premise("R5", "x", 1.0)
    with pytest.raises(ValueError, match="premise id"):
        Premise("C1", "x", "≥ 1", "2", True)
    v = judge_effect(iv(1.5, 3.0), 2.0)
    claims = [Claim.judged("C1", "s", "p", "src", "o", "cpu", v, premises=("R1",)),
              Claim.judged("C2", "s", "p", "src", "o", "cpu", v, premises=("R1", "R2")),
              Claim.judged("C3", "s", "p", "src", "o", "cpu", v, premises=("R3",))]
    out = apply_premises(claims, [gap, premise("R2", "x", 0.05, at_least=0.1), premise("R3", "y", None, at_most=1)])
    assert [c.verdict for c in out] == ["reproduced", "not comparable", "not comparable"]
    assert "R2 (x) fails: measured 0.05, required ≥ 0.1" in out[1].reason and "would give reproduced" in out[1].reason
    assert "R3 (y) not measured" in out[2].reason and out[1].rule == v  # the rule and estimate stay in the row
    with pytest.raises(ValueError, match="does not state"):
        apply_premises(claims, [gap])
    # a claim already not comparable (its arm was not run) keeps its verdict and names its failing premises too
    missing = Claim.judged("C4", "s", "p", "src", "o", "cpu", not_comparable("the arm was not run"), premises=("R2",))
    (kept,) = apply_premises([missing], [premise("R2", "x", 0.05, at_least=0.1)])
    assert kept.verdict == "not comparable" and kept.reason.startswith("the arm was not run")
    assert "R2 (x) fails: measured 0.05" in kept.reason


def test_a_claim_records_its_rule_as_data():
    v = judge_effect(iv(1.5, 3.0), 2.0, seeds=[iv(1.0, 2.0)])
    c = Claim.judged("C1", "s", "p", "src", "ours", "cpu", v, "rule: judge_effect")
    data = c.as_dict()
    assert c.verdict == "reproduced" and c.reason.startswith("rule: judge_effect; ")
    assert data["rule"]["kind"] == "effect" and data["rule"]["estimate"]["lo"] == 1.5
    assert "from" in data["rule"]["estimate"] and data["premises"] == []
    assert data["rule"]["seeds"][0]["hi"] == 2.0 and data["rule"]["effect"] == 2.0
    parts = judge_all({"x": v, "y": not_comparable("no arm")}).as_dict()
    assert [p["name"] for p in parts["parts"]] == ["x", "y"] and parts["parts"][1]["kind"] == "none"
    assert illustrated("ours by construction").as_dict()["kind"] == "illustrated"


def test_claim_sheet_adds_and_marks_missing_arms():
    sheet = ClaimSheet({"C1": ("a claim", "+2", "Table 1"), "C2": ("another", None, "Fig 2")}, "cpu", ["x"])
    sheet.add("C1", "+2.1", judge_effect(iv(1.5, 3.0), 2.0), "rule: judge_effect")
    assert sheet.missing("C2", "x", "y") and not sheet.missing("C2", "x")
    c1, c2 = sheet.claims
    assert c1.verdict == "reproduced" and c1.claim == "a claim" and c1.paper == "+2"
    assert c2.verdict == "not comparable" and c2.missing == ("y",)
