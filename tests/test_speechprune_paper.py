"""The SpeechPrune paper-profile hook on a tiny random Qwen2AudioForConditionalGeneration the test builds: chunked
audio encoding, selection with the first layer's projections, and answering from pruned tokens through
inputs_embeds."""

import numpy as np
import pytest
import torch

from replbook.data.spiral import load_spiral
from replbook.experiments.speechprune import paper

WORDS = ["A", "B", "C", "D", "where", "will", "the", "lab", "meet", "?", ".", "Answer", "with", "letter", "near",
         "river", "north", "hall", "top", "floor", "old", "station"]


@pytest.fixture(scope="module")
def tiny_qwen2_audio():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    specials = ["[UNK]", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]",
                                        additional_special_tokens=specials[1:])
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(num_mel_bins=80, encoder_layers=1, encoder_attention_heads=2,
                                             encoder_ffn_dim=32, d_model=16, max_source_positions=1500),
        text_config=Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=4, num_key_value_heads=4),
        audio_token_id=vocab["<|AUDIO|>"])
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    return model, tokenizer, WhisperFeatureExtractor(feature_size=80)


def test_long_audio_is_encoded_in_30_s_chunks(tiny_qwen2_audio):
    model, _, extractor = tiny_qwen2_audio
    audio = np.random.default_rng(0).normal(scale=0.1, size=int(70 * paper.SAMPLE_RATE)).astype(np.float32)
    tokens = paper.audio_tokens(model, extractor, audio)
    # 25 tokens per second: 750 + 750 + 250 (the last chunk's valid part)
    assert tokens.shape == (1750, 32)


def test_pruned_tokens_answer_through_inputs_embeds(tiny_qwen2_audio):
    model, tokenizer, extractor = tiny_qwen2_audio
    audio = np.random.default_rng(1).normal(scale=0.1, size=int(40 * paper.SAMPLE_RATE)).astype(np.float32)
    tokens = paper.audio_tokens(model, extractor, audio)
    question, choices = "where will the lab meet ?", ["near the river", "north hall", "top floor", "old station"]
    kept = paper.select(model, tokenizer, tokens, question, choices, n_phase1=750, prune_rate=0.2)
    assert len(kept) == 600 and torch.equal(kept, kept.sort().values) and kept.max() < len(tokens)
    seen = {}

    def capture(_module, _args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"]

    handle = model.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        choice = paper.answer(model, tokenizer, tokens[kept], question, choices)
    finally:
        handle.remove()
    assert choice in range(4)
    # exactly the kept tokens, in time order, sit between the audio markers of the language model's input
    embeds = seen["embeds"][0]
    matches = [i for i in range(len(embeds) - len(kept) + 1) if torch.equal(embeds[i : i + len(kept)], tokens[kept])]
    assert len(matches) == 1 and len(embeds) > len(kept)  # the kept tokens once, with the prompt around them


def test_missing_model_is_named():
    from replbook.assets import AssetUnavailable

    with pytest.raises(AssetUnavailable, match="huggingface-cli download"):
        paper.load_qwen2_audio("no-such-org/no-such-model")


def test_run_paper_on_a_generated_spiral_folder(tiny_qwen2_audio, tmp_path):
    import json
    import wave

    from replbook.experiments import speechprune as experiment
    from replbook.experiments.speechprune.common import Pruning
    from replbook.profiles import config, resolve

    (tmp_path / "audio").mkdir()
    rng = np.random.default_rng(2)
    lines = []
    for k in range(2):
        with wave.open(str(tmp_path / "audio" / f"item{k}.wav"), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(22_050)  # resampled to 16 kHz by the loader
            handle.writeframes((rng.normal(scale=2000, size=22_050 * 35)).astype("<i2").tobytes())
        choices = ["A. near the river", "B. north hall", "C. top floor", "D. old station"]
        lines.append(json.dumps({"test_question": {"question": "where will the lab meet ?", "choices": choices,
                                                   "correct_answer": choices[k]},
                                 "metadata": {"id": f"item{k}", "transcript_type": "lecture"}}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    items = load_spiral(tmp_path)
    assert [i["answer"] for i in items] == [0, 1] and items[0]["choices"][0] == "near the river"
    p = resolve(experiment.PARAMS, "paper", {"random_seeds": 1, "prune_rates": [0.2, 0.8]}, check_assets=False)
    res = paper.run_paper(p["model"], p["n_test"], config(Pruning, p), bundle=tiny_qwen2_audio, folder=tmp_path)
    assert res.passage_tokens == [875, 875]  # 35 s at 25 tokens per second
    kept = {(c.condition, c.pr): c.kept for c in res.conditions}
    assert all(k.shape == (1, 2) for k in kept.values())  # one seed, two items each
    assert (kept[("Original", 0.0)] == 750).all() and (kept[("SpeechPrune", 0.2)] == 600).all()
    assert (kept[("RAP", 0.8)] == 150).all()
    assert len(res.conditions) == 2 + 2 * 5  # Original, the question-only control, 5 conditions at 2 rates
    assert (kept[("Question only (no speech)", 0.0)] == 0).all()


def test_missing_spiral_is_named(tmp_path):
    from replbook.assets import AssetUnavailable

    with pytest.raises(AssetUnavailable, match="SPIRAL_Dataset"):
        load_spiral(tmp_path)
