"""The Min-K%++ experiment: determinism, the trained-model cache, the split, and the paper profile's loading code
on a tiny randomly initialised GPT-NeoX that the test builds and saves."""

import json

import numpy as np
import pytest
import torch

from replbook import minkpp
from replbook.data.wikimia import load_wikimia
from replbook.experiments import minkpp as experiment
from replbook.experiments.minkpp import common, miniature, paper, report
from replbook.profiles import config, resolve

TINY = {"max_chunks": 80, "chunk_len": 16, "vocab_size": 128, "d_model": 16, "epochs": 2, "n_boot": 20,
        "ks": [0.2, 0.5]}


def run_once():
    params = resolve(experiment.PARAMS, "smoke", TINY)
    setup, scoring = config(miniature.TinyLMSetup, params), config(common.Scoring, params)
    corpus = miniature.load_corpus(setup.vocab_size, setup.chunk_len, setup.max_chunks)
    return miniature.run_seed(setup, scoring, corpus, seed=0)


def flat_metrics(result):
    return json.dumps({e: ev["test"] for e, ev in result.epochs.items()}, sort_keys=True)


def test_same_seed_gives_identical_metrics_without_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "a"))
    first = run_once()
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "b"))
    second = run_once()
    assert flat_metrics(first) == flat_metrics(second)
    assert sorted(first.epochs) == [1, 2]


def test_cached_models_are_reused_and_give_the_same_metrics(tmp_cache, monkeypatch):
    first = run_once()
    checkpoints = sorted((tmp_cache / "models").glob("*.safetensors"))
    assert len(checkpoints) == 3  # reference (1 epoch) + target (2 epochs)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although every checkpoint was cached")

    monkeypatch.setattr(torch.optim, "AdamW", no_training)
    assert flat_metrics(run_once()) == flat_metrics(first)


def test_an_altered_checkpoint_is_retrained(tmp_cache):
    first = run_once()
    victim = sorted((tmp_cache / "models").glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:-8] + b"\0" * 8)
    assert flat_metrics(run_once()) == flat_metrics(first)


def test_split_is_half_members_with_stratified_validation():
    split = common.split_indices(101, seed=0, val_fraction=0.3)
    assert split["labels"].sum() == 50
    assert set(split["val"]).isdisjoint(split["test"])
    assert len(split["val"]) + len(split["test"]) == 101
    assert split["labels"][split["val"]].sum() == 15


def test_method_scores_agree_with_the_kernels():
    torch.manual_seed(0)
    logits, ids = torch.randn(4, 10, 30), torch.randint(0, 30, (4, 10))
    stats = common.stats_from_logits(logits, ids)
    scores = common.method_scores(stats, ["a b", "c", "d e f", "g"], np.zeros(4), [0.2, 0.5])
    assert np.allclose(scores["minkpp@0.5"], minkpp.minkpp_score(logits, ids, 0.5).numpy(), atol=1e-6)
    assert np.allclose(scores["mink@0.2"], minkpp.mink_score(logits, ids, 0.2).numpy(), atol=1e-6)
    assert np.allclose(scores["ref"], scores["loss"])


def synthetic(deltas, spread, ref_delta=0.0, range_pp=0.01, n_boot=400, gaps=(0.5, 0.5, 0.5), smollm2=False,
              base_gaps=(0.05, -0.05, 0.0)):
    """Hand-made results at one epoch: Min-K%++ − Min-K% is ``deltas[seed]`` at k = 0.2, Min-K%++ − Ref is
    ``ref_delta``, Min-K%'s AUROC range over k is 0.05 and Min-K%++'s ``range_pp``; every score's bootstrap
    replicates share a seed-level noise and carry their own of size ``spread``; each seed's log perplexity ratio
    (non-members over members) is ``gaps[seed]`` at the epoch judged (premise R1). ``smollm2``: the same seeds again
    as the SmolLM2 section, with ``base_gaps`` at exposure 0 (premise R3)."""
    rng = np.random.default_rng(0)
    results = []
    for seed, (delta, gap) in enumerate(zip(deltas, gaps, strict=False)):
        base = 0.7
        auroc = {"loss": base + delta - 0.02, "zlib": base + delta - 0.02, "ref": base + delta - ref_delta,
                 "mink@0.2": base, "mink@0.5": base + 0.05, "minkpp@0.2": base + delta,
                 "minkpp@0.5": base + delta + range_pp}
        shared = rng.normal(size=n_boot) * 0.01
        boot = {n: v + shared + spread * rng.normal(size=n_boot) for n, v in auroc.items()}
        test = {n: {"auroc": v, "lo": v - 0.02, "hi": v + 0.02} for n, v in auroc.items()}
        k = {m: {"fixed": 0.2, "val": 0.2, "best": 0.5} for m in ("mink", "minkpp")}
        result = common.SeedResult(seed, split={})
        result.epochs[3] = {"test": test, "k": k, "diff": {"mink_best": {"diff": delta}}}
        result.boot[3] = boot
        result.perplexity[3] = {"member": 10.0, "non_member": 10.0 * np.exp(gap)}
        results.append(result)
    smol = []
    if smollm2:
        for result, base in zip(results, base_gaps, strict=False):
            copy = common.SeedResult(result.seed, split={}, epochs=dict(result.epochs), boot=dict(result.boot),
                                     perplexity=dict(result.perplexity))
            copy.perplexity[0] = {"member": 10.0, "non_member": 10.0 * np.exp(base)}
            smol.append(copy)
    return common.MinkppResults(results, smol)


P = {"profile": "cpu", "fixed_k": 0.2, "ks": [0.2, 0.5], "ref_epochs": 1, "target_model": "-", "val_fraction": 0.3,
     "vocab_size": 2048, "chunk_len": 64, "d_model": 96, "n_layers": 2}


@pytest.mark.parametrize("deltas, spread, verdict", [
    ([0.02, 0.02, 0.02], 0.002, "reproduced"),          # above 0, reaches the +1-point effect
    ([0.004, 0.004, 0.004], 0.001, "partly"),            # above 0, short of +1 point
    ([-0.01, -0.01, -0.01], 0.002, "not reproduced"),    # excludes +1 point
    ([0.005, 0.005, 0.005], 0.012, "inconclusive"),      # holds both 0 and +1 point
    ([0.03, 0.03, -0.02], 0.002, "inconclusive"),        # the mean is above 0 but a seed is against
])
def test_c1_and_c2_rules_reach_every_outcome(deltas, spread, verdict):
    claims = {c.id: c for c in report.claims(synthetic(deltas, spread), P)}
    assert claims["C1"].verdict == verdict
    assert claims["C2a"].verdict == claims["C2b"].verdict  # Loss and Zlib sit 0.02 below Min-K%++ ...
    assert "best k on test (shown, not judged)" in claims["C1"].ours  # ... and the best k is never judged


@pytest.mark.parametrize("ref_delta, spread, verdict", [
    (0.0, 0.002, "reproduced"), (-0.03, 0.002, "not reproduced"), (-0.01, 0.012, "inconclusive")])
def test_ref_parity_is_judged_with_its_margin(ref_delta, spread, verdict):
    claims = {c.id: c for c in report.claims(synthetic([0.02] * 3, spread, ref_delta=ref_delta), P)}
    assert claims["C2c"].verdict == verdict and "δ = 0.01" in claims["C2c"].reason


@pytest.mark.parametrize("range_pp, verdict", [(0.01, "reproduced"), (0.045, "partly"), (0.08, "not reproduced")])
def test_k_robustness_rule(range_pp, verdict):
    claims = {c.id: c for c in report.claims(synthetic([0.02] * 3, 0.0005, range_pp=range_pp), P)}
    assert claims["C3"].verdict == verdict


def test_every_miniature_claim_needs_a_premise_and_a_failing_one_makes_it_not_comparable():
    claims = {c.id: c for c in report.claims(synthetic([0.02] * 3, 0.002, smollm2=True), P)}
    assert claims["C1"].verdict == "reproduced" and claims["C1"].premises == ("R1",)
    assert claims["C1-smollm2"].verdict == "reproduced" and claims["C1-smollm2"].premises == ("R2", "R3")
    # the SmolLM2 reference is its own base model (R6 fails): the rule still runs, the verdict is not comparable
    assert claims["C2c-smollm2"].verdict == "not comparable" and "R6" in claims["C2c-smollm2"].reason
    assert claims["C2c-smollm2"].rule.kind == "noninferior" and "would give reproduced" in claims["C2c-smollm2"].reason
    # the absolute levels need a pre-trained LLM of the paper's scale (R4, R5): never in the miniature
    for cid, pid in (("A1", "R4"), ("A1-smollm2", "R5")):
        assert claims[cid].verdict == "not comparable" and claims[cid].premises == (pid,)
        assert f"{pid} measured:" in claims[cid].reason
    # R1: a seed whose members are barely less perplexing than non-members (log ratio 0.05 < 0.10)
    weak = {c.id: c for c in report.claims(synthetic([0.02] * 3, 0.002, gaps=(0.5, 0.05, 0.5), smollm2=True), P)}
    assert {weak[c].verdict for c in ("C1", "C2a", "C2b", "C2c", "C3")} == {"not comparable"}
    assert "R1" in weak["C1"].reason and "0.05" in weak["C1"].reason and weak["C1"].rule.kind == "effect"
    assert weak["C1-smollm2"].verdict == "not comparable"  # the same seeds serve as SmolLM2's here (R2)
    # R3: a membership signal already on the base model (|log ratio| 0.3 > 0.15) voids every SmolLM2 claim only
    leak = {c.id: c for c in report.claims(synthetic([0.02] * 3, 0.002, smollm2=True, base_gaps=(0.3, 0.0, 0.0)),
                                           P)}
    assert leak["C1"].verdict == "reproduced" and leak["C1-smollm2"].verdict == "not comparable"
    assert "R3" in leak["C1-smollm2"].reason
    premises = {p.id: p for p in report.premises(synthetic([0.02] * 3, 0.002, smollm2=True),
                                                 {**P, "vocab_size": 2048, "chunk_len": 64, "d_model": 96,
                                                  "n_layers": 2})}
    assert [premises[i].holds for i in ("R1", "R2", "R3", "R4", "R5", "R6")] == [True, True, True, False, False,
                                                                                 False]
    assert premises["R1"].source.startswith("=min(log(lm[:].perplexity[3].non_member")


def test_tiny_gpt_parameter_count_matches_the_model():
    from replbook.models import TinyGPT, TinyGPTConfig

    model = TinyGPT(TinyGPTConfig(vocab_size=300, context=16, d_model=24, n_layers=3, n_heads=4))
    assert report.tiny_gpt_parameters(300, 16, 24, 3) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("ours, spread, verdict", [
    (61.0, 0.5, "reproduced"),  # within ±2 points of the committed 61.4, both ends
    (66.0, 0.5, "not reproduced"),  # 4.6 points above: beyond the upper margin
    (55.0, 0.5, "not reproduced"),  # beyond the lower margin
    (62.0, 4.0, "inconclusive"),  # an interval wider than the margins
])
def test_paper_rows_are_equivalence_within_two_points(ours, spread, verdict):
    result = common.SeedResult(0, split={"test": np.arange(100)})
    result.epochs[0] = {"test": {"loss": {"auroc": ours / 100, "lo": (ours - spread) / 100,
                                          "hi": (ours + spread) / 100}}}
    row = report.paper_rows([result], "paper", "EleutherAI/pythia-2.8b", 0.3)[0]
    assert row.id == "P1" and row.verdict == verdict and row.rule.kind == "conjunction"
    assert [p.higher_is_better for _, p in row.rule.parts] == [True, False]
    assert row.rule.parts[0][1].estimate.mean == pytest.approx(ours - 61.4)


def test_the_paper_profile_premise_is_the_committed_model_and_data():
    params = {"profile": "paper", "target_model": "EleutherAI/pythia-2.8b", "dataset": "WikiMIA_length32"}
    assert [p.holds for p in report.premises(common.MinkppResults([], []), params)] == [True]
    assert [p.holds for p in report.premises(common.MinkppResults([], []), {**params, "dataset": "x.jsonl"})] == [
        False]


def test_the_pooled_interval_is_a_real_interval_of_the_seed_mean():
    results = synthetic([0.01, 0.02, 0.03], 0.002).lm
    d, seeds = report.pooled(results, 3, report.difference("minkpp@0.2", "mink@0.2"))
    assert d.mean == pytest.approx(0.02) and d.lo < 0.02 < d.hi
    assert d.hi - d.lo < min(s.hi - s.lo for s in seeds)  # averaging seeds narrows it


@pytest.fixture(scope="module")
def tiny_neox(tmp_path_factory):
    """A randomly initialised GPT-NeoX with a word-level tokenizer, saved like a hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-neox")
    words = ["<|endoftext|>", "[UNK]"] + "the a cat dog sat on mat ran far away in 1990 2023 event".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="[UNK]").save_pretrained(folder)
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64)
    GPTNeoXForCausalLM(config).save_pretrained(folder)
    return folder


def test_hf_scoring_with_padding_matches_one_text_at_a_time(tiny_neox):
    model, tok = paper.load_causal_lm(str(tiny_neox))
    texts = ["the cat sat on the mat", "a dog ran", "the dog ran far away in 1990"]
    batched = paper.score_texts_hf(model, tok, texts, batch_size=3)
    for i, text in enumerate(texts):
        alone = paper.score_texts_hf(model, tok, [text], batch_size=1)
        n = alone.valid.sum()
        assert batched.valid[i].sum() == n
        assert np.allclose(batched.target_logp[i, :n], alone.target_logp[0, :n], atol=1e-5)
        assert np.allclose(batched.sigma[i, :n], alone.sigma[0, :n], atol=1e-5)


def test_paper_profile_runs_on_a_tiny_model_and_local_wikimia(tiny_neox, tmp_path):
    rows = [{"input": t, "label": i % 2} for i, t in enumerate(
        ["the cat sat on the mat", "a dog ran far away", "the event in 1990", "the event in 2023",
         "a cat ran in 1990", "the dog sat on a mat", "a mat in 2023", "the cat ran far"] * 3)]
    data = tmp_path / "wikimia.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    params = resolve(experiment.PARAMS, "paper", {
        "target_model": str(tiny_neox), "reference_model": str(tiny_neox), "dataset": str(data), "n_boot": 20,
        "threads": 1}, check_assets=False)
    run = experiment.run(params)  # the one entry picks the paper profile
    assert run.smollm2 == []  # lm_seeds = 0 in the paper profile: no SmolLM2 section
    results = run.lm
    test = results[0].epochs[0]["test"]
    assert 0.0 <= test["minkpp@0.2"]["auroc"] <= 1.0
    assert np.allclose(results[0].scores[0]["ref"], 0.0, atol=1e-5)  # the same model as its own reference

    # The chapter's report works on the paper profile's result too: claims with the Pythia-2.8B comparison rows.
    claims = report.claims(run, params)
    rows = {c.id: c for c in claims}
    assert [rows[f"P{i}"].claim for i in (1, 2, 3, 4, 5)] == [
        "Loss AUROC, WikiMIA_length32", "Zlib AUROC, WikiMIA_length32", "Ref AUROC, WikiMIA_length32",
        "Min-K% AUROC, WikiMIA_length32, k = 0.2", "Min-K%++ AUROC, WikiMIA_length32, k = 0.2"]
    # the committed values are Pythia-2.8B's: a tiny random model is not compared with them
    assert {rows[f"P{i}"].verdict for i in range(1, 6)} == {"not comparable"}
    assert "judge_effect" in rows["C2c"].reason  # on WikiMIA the paper claims a win over Ref, not parity
    assert all(c.profile == "paper" for c in claims)
    assert len(report.auroc_summary(results, params["fixed_k"])) == 10  # 4 baselines + 2 methods × 3 k choices
    for plot in (report.plot_exposure(results, 0.2), report.plot_k_sweep(results, params["ks"]),
                 report.plot_roc(results, 0.2)):
        assert plot.axes


def test_wikimia_rows_need_input_and_label(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}))
    with pytest.raises(ValueError, match="'input' and 'label'"):
        load_wikimia(str(bad))
