"""The SpeechPrune miniature on pseudo-speech: every condition runs with the right token counts, the reader respects
its window, the trained reader is cached, the alignment labels follow the words, and the verdict rules."""

import numpy as np
import pytest
import torch

from replbook.experiments import speechprune as experiment
from replbook.experiments.speechprune import miniature, report
from replbook.models.speech_reader import SpeechReader
from replbook.profiles import resolve

TINY = {"n_train": 20, "n_test": 10, "clips_per_item": 2, "epochs": 1, "random_seeds": 2}


def test_every_condition_runs_with_its_token_budget(tmp_cache):
    p = resolve(experiment.PARAMS, "smoke", TINY)
    res = experiment.run(p)
    df = report.frame(res)
    conditions = {"Original", "Oracle (key sentence)", "RAP", "RAC", "Phase 1 only", "Phase 2 only", "SpeechPrune"}
    assert set(df["condition"]) == conditions
    for pr in p["prune_rates"]:
        kept = df[(df["condition"] == "SpeechPrune") & np.isclose(df["pr"], pr)]["kept"]
        assert (kept == round((1 - pr) * p["b_max"])).all()
    assert (df[df["condition"] == "Oracle (key sentence)"]["retention"] == 1).all()
    assert len(df[df["condition"] == "RAP"]) == len(p["prune_rates"]) * 2 * TINY["n_test"]
    assert min(res.passage_tokens) > p["b_max"]  # passages are longer than the window
    again = experiment.run(p)  # the reader from the cache: the same answers
    assert again.rows == res.rows and again.losses == res.losses


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


def synthetic(full: float, original: float, rap: float, single: float, n: int = 200):
    rng = np.random.default_rng(0)
    rows = []
    for item in range(n):
        for cond, pr, acc in (("SpeechPrune", 0.2, full), ("SpeechPrune", 0.8, full - 0.1), ("Original", 0.0, original),
                              ("Phase 1 only", 0.2, single), ("Phase 2 only", 0.2, single)):
            rows.append({"item": item, "condition": cond, "pr": pr, "seed": 0, "correct": bool(rng.random() < acc),
                         "kept": 1, "retention": 1.0})
        for seed in range(3):
            rows.append({"item": item, "condition": "RAP", "pr": 0.2, "seed": seed,
                         "correct": bool(rng.random() < rap), "kept": 1, "retention": 0.0})
    return experiment.Results(rows=rows)


def test_verdict_rules_on_hand_made_results():
    p = {"profile": "cpu", "prune_rates": [0.2, 0.8]}
    claims = {c.id: c.verdict for c in report.make_claims(synthetic(0.9, 0.5, 0.3, 0.6), p)}
    assert claims == {"C1": "reproduced", "C2": "reproduced", "C3": "reproduced", "C4": "reproduced"}
    claims = {c.id: c.verdict for c in report.make_claims(synthetic(0.5, 0.5, 0.5, 0.5), p)}
    assert claims["C1"] == "not reproduced" and claims["C4"] == "not reproduced"
