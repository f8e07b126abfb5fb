"""The SpeechPrune miniature on pseudo-speech: every condition runs with the right token counts, the reader respects
its window, the trained reader is cached, the alignment labels follow the words, and the verdict rules."""

import numpy as np
import pytest
import torch

from replbook.experiments import speechprune as experiment
from replbook.experiments.speechprune import miniature, report
from replbook.experiments.speechprune.common import (
    KEY_REMOVED,
    ORACLE,
    QUESTION_ONLY,
    SpeechpruneResults,
    tabulate,
)
from replbook.models.speech_reader import SpeechReader
from replbook.profiles import resolve

TINY = {"n_train": 20, "n_test": 10, "clips_per_item": 2, "epochs": 1, "random_seeds": 2}


def test_every_condition_runs_with_its_token_budget(tmp_cache):
    p = resolve(experiment.PARAMS, "smoke", TINY)
    res = experiment.run(p)
    df = report.frame(res)
    conditions = {"Original", "Oracle (key sentence)", "RAP", "RAC", "Phase 1 only", "Phase 2 only", "SpeechPrune",
                  QUESTION_ONLY, KEY_REMOVED}
    assert set(df["condition"]) == conditions
    for pr in p["prune_rates"]:
        kept = df[(df["condition"] == "SpeechPrune") & np.isclose(df["pr"], pr)]["kept"]
        assert (kept == round((1 - pr) * p["b_max"])).all()
    assert (df[df["condition"] == "Oracle (key sentence)"]["retention"] == 1).all()
    # the premise's condition: the whole window, none of the key sentence
    cut = df[df["condition"] == KEY_REMOVED]
    assert (cut["retention"] == 0).all() and (cut["kept"] == p["b_max"]).all()
    assert len(df[df["condition"] == "RAP"]) == len(p["prune_rates"]) * 2 * TINY["n_test"]
    assert min(res.passage_tokens) > p["b_max"]  # passages are longer than the window
    assert [c.kept for c in res.cost] == [p["b_max"], *(round((1 - pr) * p["b_max"]) for pr in p["prune_rates"])]
    again = experiment.run(p)  # the reader from the cache: the same answers
    assert report.frame(again).equals(df) and again.losses == res.losses
    data, arrays = res.to_data()  # the results survive their saved form
    assert report.frame(SpeechpruneResults.from_data(data, arrays)).equals(df)


def test_the_reader_refuses_more_tokens_than_its_window():
    model = SpeechReader(20, 384, d_model=16, layers=1, heads=2, b_max=8)
    speech = torch.zeros(1, 9, 16)
    with pytest.raises(ValueError, match="window of 8"):
        model(speech, torch.ones(1, 9, dtype=torch.bool), torch.ones(1, 3, dtype=torch.long),
              torch.ones(1, 4, 2, dtype=torch.long))
    w_q, w_k = model.first_layer_qk()
    assert w_q.shape == w_k.shape == (16, 16) and not torch.equal(w_q, w_k)


def test_proportional_alignment_labels_words_in_order():
    ids = {"a": 1, "bb": 2, "cccc": 3}
    labels = miniature._word_labels("a bb cccc", 10, ids)
    assert labels.tolist() == sorted(labels.tolist()) and set(labels.tolist()) == {1, 2, 3}
    assert (labels == 3).sum() > (labels == 1).sum()  # the long word gets more tokens


def synthetic(accuracy: dict, n: int = 400, rap: float = 0.3):
    """Hand-made per-item results: each (condition, PR) answers correctly with the probability given (default 0.5;
    the question-only control and the passage without its key sentence 0.25, chance; the oracle 0.9); RAP over
    three seeds at ``rap``."""
    rng, extra = np.random.default_rng(0), np.random.default_rng(1)
    # the premises' conditions draw from their own stream, so that the claims' conditions do not move with them
    accuracy, refs = dict(accuracy), {(KEY_REMOVED, 0.0): 0.25, (ORACLE, 0.0): 0.9}
    refs.update((k, accuracy.pop(k)) for k in list(refs) if k in accuracy)
    acc = {("SpeechPrune", 0.2): 0.9, ("SpeechPrune", 0.8): 0.8, ("Original", 0.0): 0.5,
           ("Phase 1 only", 0.2): 0.6, ("Phase 2 only", 0.2): 0.6, (QUESTION_ONLY, 0.0): 0.25, **accuracy}
    rows = []
    for item in range(n):
        answers = {key: bool(rng.random() < a) for key, a in acc.items()}
        answers.update({key: bool(extra.random() < a) for key, a in refs.items()})
        # the passage without its key sentence answers as the question alone does, unless it is set apart
        if refs[(KEY_REMOVED, 0.0)] == acc[(QUESTION_ONLY, 0.0)]:
            answers[(KEY_REMOVED, 0.0)] = answers[(QUESTION_ONLY, 0.0)]
        for (cond, pr), correct in answers.items():
            rows.append({"item": item, "condition": cond, "pr": pr, "seed": 0, "correct": correct,
                         "kept": 1, "retention": 1.0})
        for seed in range(3):
            rows.append({"item": item, "condition": "RAP", "pr": 0.2, "seed": seed,
                         "correct": bool(rng.random() < rap), "kept": 1, "retention": 0.0})
    return SpeechpruneResults(conditions=tabulate(rows))


P = {"profile": "cpu", "prune_rates": [0.2, 0.8]}


def verdicts(accuracy, **kw):
    return {c.id: c.verdict for c in report.claims(synthetic(accuracy, **kw), P)}


@pytest.mark.parametrize("accuracy, n, verdict", [
    ({("SpeechPrune", 0.2): 0.9}, 400, "reproduced"),       # +40 points, reaching the paper's +28.85
    ({("SpeechPrune", 0.2): 0.6}, 400, "partly"),           # above 0, short of +28.85
    ({("SpeechPrune", 0.2): 0.5}, 400, "not reproduced"),   # excludes +28.85
    ({("SpeechPrune", 0.2): 0.7}, 12, "inconclusive"),      # too few passages to tell
])
def test_c1_reaches_every_outcome(accuracy, n, verdict):
    assert verdicts(accuracy, n=n)["C1"] == verdict


def test_c1_c2_and_c4_judge_the_centre_of_the_interval_and_name_their_fields():
    res = synthetic({})
    c1 = next(c for c in report.claims(res, P) if c.id == "C1")
    est = c1.rule.estimate
    assert est.mean == pytest.approx((est.lo + est.hi) / 2)
    assert est.source.startswith(f"{report.field(res, 'SpeechPrune', 0.2)}; {report.field(res, 'Original', 0.0)} |")
    c3 = next(c for c in report.claims(res, P) if c.id == "C3")
    assert [name for name, _ in c3.rule.parts] == ["no worse than Original", "beats the question alone"]
    assert c3.rule.parts[0][1].estimate.source.startswith("=(mean(conditions[")


@pytest.mark.parametrize("accuracy, n, verdict", [
    ({("SpeechPrune", 0.8): 0.5}, 400, "reproduced"),                         # matches Original, beats no speech
    ({("SpeechPrune", 0.8): 0.5, (QUESTION_ONLY, 0.0): 0.5, (KEY_REMOVED, 0.0): 0.5},
     400, "inconclusive"),                                                    # ... but so does the question alone
    ({("SpeechPrune", 0.8): 0.5, (QUESTION_ONLY, 0.0): 0.46, (KEY_REMOVED, 0.0): 0.46},
     4000, "partly"),                                                         # beats it, by less than 5 points
    ({("SpeechPrune", 0.8): 0.2}, 400, "not reproduced"),                     # 30 points below Original
    ({("SpeechPrune", 0.8): 0.45}, 400, "inconclusive"),                      # the interval crosses −5 points
])
def test_c3_is_a_conjunction_of_its_margin_and_the_control(accuracy, n, verdict):
    assert verdicts(accuracy, n=n)["C3"] == verdict


@pytest.mark.parametrize("phase1, phase2, verdict", [
    (0.2, 0.75, "reproduced"),      # full 0.9: gaps of 70 and 15 points reach 33.5 and 9.2
    (0.2, 0.9, "partly"),           # Phase 2 alone is as good as the full method
    (0.9, 0.9, "not reproduced"),   # neither phase adds anything
])
def test_c4_combines_both_phases(phase1, phase2, verdict):
    assert verdicts({("Phase 1 only", 0.2): phase1, ("Phase 2 only", 0.2): phase2})["C4"] == verdict


@pytest.mark.parametrize("accuracy, failing", [
    ({}, set()),                                                   # both hold
    ({(KEY_REMOVED, 0.0): 0.45}, {"R1"}),                          # the reader answers without the key sentence
    ({(ORACLE, 0.0): 0.4}, {"R2"}),                                # the key sentence alone does not help it
    ({(KEY_REMOVED, 0.0): 0.45, (ORACLE, 0.0): 0.4}, {"R1", "R2"}),
])
def test_premises_hold_or_make_every_claim_not_comparable(accuracy, failing):
    res = synthetic(accuracy)
    prem = {p.id: p for p in report.premises(res, P)}
    assert {pid for pid, p in prem.items() if not p.holds} == failing
    claims = report.claims(res, P)
    assert all(c.premises == ("R1", "R2") for c in claims)
    if failing:
        assert all(c.verdict == "not comparable" for c in claims)
        assert all(f"{pid} (" in c.reason for c in claims for pid in failing)
        assert all(c.rule.kind != "none" for c in claims)  # the rule and its estimate stay in the row
    else:
        assert all(c.verdict != "not comparable" for c in claims)


def test_premises_are_not_measured_without_the_key_sentence_conditions():
    rows = [row for row in [{"item": i, "condition": c, "pr": pr, "seed": 0, "correct": bool(i % 2), "kept": 1,
                             "retention": float("nan")} for i in range(20)
                            for c, pr in (("Original", 0.0), (QUESTION_ONLY, 0.0), ("SpeechPrune", 0.2),
                                          ("SpeechPrune", 0.8), ("Phase 1 only", 0.2), ("Phase 2 only", 0.2),
                                          ("RAP", 0.2))]]
    res = SpeechpruneResults(conditions=tabulate(rows))
    prem = report.premises(res, {"profile": "paper", "prune_rates": [0.2, 0.8]})
    assert [p.holds for p in prem] == [None, None] and all("SPIRAL" in p.note for p in prem)
    cpu = report.premises(res, P)
    assert [p.holds for p in cpu] == [None, None] and all("recompute" in p.note for p in cpu)
    assert {c.verdict for c in report.claims(res, {"profile": "paper", "prune_rates": [0.2, 0.8]})} \
        == {"not comparable"}


def test_the_control_table_reads_every_condition_against_no_speech():
    table = report.control_table(synthetic({}), P["prune_rates"])
    assert table.loc[(QUESTION_ONLY, "–"), "minus question only (points, 95% CI)"] == "–"
    assert table.loc[("SpeechPrune", 0.2), "accuracy %"] > table.loc[(QUESTION_ONLY, "–"), "accuracy %"]
    assert (KEY_REMOVED, "–") in table.index
