"""The SpeechPrune miniature on pseudo-speech: every condition runs with the right token counts, the reader respects
its window, the trained reader is cached, the alignment labels follow the words, and the verdict rules."""

import numpy as np
import pytest
import torch

from replbook.experiments import speechprune as experiment
from replbook.experiments.speechprune import miniature, report
from replbook.experiments.speechprune.common import QUESTION_ONLY, SpeechpruneResults, tabulate
from replbook.models.speech_reader import SpeechReader
from replbook.profiles import resolve

TINY = {"n_train": 20, "n_test": 10, "clips_per_item": 2, "epochs": 1, "random_seeds": 2}


def test_every_condition_runs_with_its_token_budget(tmp_cache):
    p = resolve(experiment.PARAMS, "smoke", TINY)
    res = experiment.run(p)
    df = report.frame(res)
    conditions = {"Original", "Oracle (key sentence)", "RAP", "RAC", "Phase 1 only", "Phase 2 only", "SpeechPrune",
                  QUESTION_ONLY}
    assert set(df["condition"]) == conditions
    for pr in p["prune_rates"]:
        kept = df[(df["condition"] == "SpeechPrune") & np.isclose(df["pr"], pr)]["kept"]
        assert (kept == round((1 - pr) * p["b_max"])).all()
    assert (df[df["condition"] == "Oracle (key sentence)"]["retention"] == 1).all()
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
    the question-only control 0.25, chance); RAP over three seeds at ``rap``."""
    rng = np.random.default_rng(0)
    acc = {("SpeechPrune", 0.2): 0.9, ("SpeechPrune", 0.8): 0.8, ("Original", 0.0): 0.5,
           ("Phase 1 only", 0.2): 0.6, ("Phase 2 only", 0.2): 0.6, (QUESTION_ONLY, 0.0): 0.25, **accuracy}
    rows = []
    for item in range(n):
        for (cond, pr), a in acc.items():
            rows.append({"item": item, "condition": cond, "pr": pr, "seed": 0, "correct": bool(rng.random() < a),
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


@pytest.mark.parametrize("accuracy, verdict", [
    ({("SpeechPrune", 0.8): 0.5}, "reproduced"),                              # matches Original, beats no speech
    ({("SpeechPrune", 0.8): 0.5, (QUESTION_ONLY, 0.0): 0.5}, "inconclusive"),  # ... but so does the question alone
    ({("SpeechPrune", 0.8): 0.2}, "not reproduced"),                          # 30 points below Original
    ({("SpeechPrune", 0.8): 0.45}, "inconclusive"),                           # the interval crosses −5 points
])
def test_c3_needs_its_margin_and_the_control(accuracy, verdict):
    assert verdicts(accuracy)["C3"] == verdict


@pytest.mark.parametrize("phase1, phase2, verdict", [
    (0.2, 0.75, "reproduced"),      # full 0.9: gaps of 70 and 15 points reach 33.5 and 9.2
    (0.2, 0.9, "partly"),           # Phase 2 alone is as good as the full method
    (0.9, 0.9, "not reproduced"),   # neither phase adds anything
])
def test_c4_combines_both_phases(phase1, phase2, verdict):
    assert verdicts({("Phase 1 only", 0.2): phase1, ("Phase 2 only", 0.2): phase2})["C4"] == verdict


def test_the_control_table_reads_every_condition_against_no_speech():
    table = report.control_table(synthetic({}), P["prune_rates"])
    assert table.loc[(QUESTION_ONLY, "–"), "minus question only (points, 95% CI)"] == "–"
    assert table.loc[("SpeechPrune", 0.2), "accuracy %"] > table.loc[(QUESTION_ONLY, "–"), "accuracy %"]
