"""SpeechPrune's ``paper`` profile hook: Qwen2-Audio-7B-Instruct (``Qwen/Qwen2-Audio-7B-Instruct``, local Hugging
Face cache only; ``data_manifests/qwen2-audio-7b-instruct.yaml``) answering a four-way question about a long
recording whose audio tokens were pruned before the language model.

The model's processor pads or cuts audio to 30 s, so a 90-s SPIRAL recording is encoded in 30-s chunks whose
projected tokens (25 per second) are concatenated; SpeechPrune then selects among all of them, and only the kept
tokens are scattered into ``inputs_embeds`` at the audio placeholder positions. The answer is the choice letter the
model scores highest at the first generated position.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from scipy.signal import resample_poly

from replbook import speechprune as sp
from replbook.assets import AssetUnavailable, resolve
from replbook.data.speech import read_wav
from replbook.data.spiral import load_spiral
from replbook.experiments.speechprune.common import Pruning, SpeechpruneResults, pruning_conditions, tabulate
from replbook.progress import progress

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 30
LETTERS = ("A", "B", "C", "D")


def load_qwen2_audio(name_or_folder: str = "Qwen/Qwen2-Audio-7B-Instruct", dtype=torch.bfloat16):
    """(model, tokenizer, feature extractor) from a folder or the local Hugging Face cache (never the network)."""
    from transformers import AutoTokenizer, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

    try:
        model = Qwen2AudioForConditionalGeneration.from_pretrained(name_or_folder, dtype=dtype,
                                                                   local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(name_or_folder, local_files_only=True)
        extractor = WhisperFeatureExtractor.from_pretrained(name_or_folder, local_files_only=True)
    except OSError as err:
        raise AssetUnavailable(f"{name_or_folder} is not in the local Hugging Face cache; on a machine with network "
                               f"access run `huggingface-cli download {name_or_folder}` (data_manifests/"
                               f"qwen2-audio-7b-instruct.yaml).") from err
    return model, tokenizer, extractor


@torch.no_grad()
def audio_tokens(model, extractor, audio: np.ndarray) -> torch.Tensor:
    """Projected audio tokens [N, D] of 16-kHz samples of any length: 30-s chunks through the audio tower and the
    projector, each cut to its valid length, concatenated in time order."""
    tower, projector = model.model.audio_tower, model.model.multi_modal_projector
    chunk = CHUNK_SECONDS * SAMPLE_RATE
    out = []
    for start in range(0, max(len(audio), 1), chunk):
        piece = audio[start : start + chunk]
        feats = extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding="max_length",
                          return_attention_mask=True)
        frames = int(feats.attention_mask.sum())
        _, valid = tower._get_feat_extract_output_lengths(torch.tensor(frames))
        hidden = tower(feats.input_features.to(tower.conv1.weight.dtype)).last_hidden_state
        out.append(projector(hidden)[0, : int(valid)])
    return torch.cat(out)


def question_ids(tokenizer, question: str, choices: list[str]) -> list[int]:
    """Token ids of the question and its lettered choices (Phase 1's query; no system prompt, no special tokens)."""
    text = question + "\n" + "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, choices, strict=True))
    return tokenizer(text, add_special_tokens=False).input_ids


@torch.no_grad()
def answer(model, tokenizer, tokens: torch.Tensor, question: str, choices: list[str]) -> int:
    """The index of the choice letter Qwen2-Audio scores highest after hearing ``tokens`` [k, D] (the kept audio
    tokens, time-ordered), in its chat format."""
    audio_id = model.config.audio_token_id
    bos, eos = (tokenizer.convert_tokens_to_ids(t) for t in ("<|audio_bos|>", "<|audio_eos|>"))
    prefix = tokenizer("<|im_start|>user\nAudio 1: ", add_special_tokens=False).input_ids
    suffix = tokenizer("\n" + "\n".join([question, *(f"{letter}. {c}" for letter, c in
                                                     zip(LETTERS, choices, strict=True))])
                       + "\nAnswer with the letter.<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
                       ).input_ids
    ids = torch.tensor([prefix + [bos] + [audio_id] * len(tokens) + [eos] + suffix])
    embeds = model.get_input_embeddings()(ids)
    embeds[ids == audio_id] = tokens.to(embeds.dtype)
    logits = model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).logits[0, -1]
    letter_ids = [tokenizer(letter, add_special_tokens=False).input_ids[0] for letter in LETTERS]
    return int(logits[letter_ids].argmax())


def select(model, tokenizer, tokens: torch.Tensor, question: str, choices: list[str], n_phase1: int,
           prune_rate: float, frame_size: int = 25, **flags) -> torch.Tensor:
    """SpeechPrune's kept indices into ``tokens`` [N, D], with Phase 2 on the language model's first layer."""
    attn = model.model.language_model.layers[0].self_attn
    text = model.get_input_embeddings()(torch.tensor([question_ids(tokenizer, question, choices)]))
    return sp.speechprune_select(tokens[None].float(), text.float(), attn.q_proj.weight, attn.k_proj.weight,
                                 min(n_phase1, len(tokens)), prune_rate, frame_size,
                                 num_heads=model.config.text_config.num_attention_heads, **flags)[0]



def run_paper(model_name: str, n_test: int, pruning: Pruning, bundle: tuple | None = None, folder=None
              ) -> SpeechpruneResults:
    """Qwen2-Audio (``model_name``: hub id or folder) on the first ``n_test`` SPIRAL items under every condition of
    the miniature (no key-sentence retention: SPIRAL's audio gives sentence indices, not times)."""
    model, tokenizer, extractor = bundle or load_qwen2_audio(model_name)
    if folder is None:
        rel, path = next(iter(resolve("spiral").items()))
        folder = os.fspath(path)[: -len(rel)]
    res = SpeechpruneResults(key_in_window=float("nan"))
    rows = []
    for i, item in enumerate(progress(load_spiral(folder, n_test), desc="SPIRAL")):
        samples, sr = read_wav(item["audio"])
        if sr != SAMPLE_RATE:
            g = np.gcd(sr, SAMPLE_RATE)
            samples = resample_poly(samples, SAMPLE_RATE // g, sr // g).astype(np.float32)
        tokens = audio_tokens(model, extractor, samples)
        n = len(tokens)
        n1 = min(pruning.b_max, n)
        res.passage_tokens.append(n)
        conditions = pruning_conditions(
            n, n1, pruning.prune_rates, pruning.random_seeds, i,
            lambda pr, phase1, phase2, tokens=tokens, item=item, n1=n1: select(
                model, tokenizer, tokens, item["question"], item["choices"], n1, pr, pruning.frame_size,
                use_phase1=phase1, use_phase2=phase2))
        for (name, pr, seed), idx in conditions.items():
            correct = answer(model, tokenizer, tokens[idx], item["question"], item["choices"]) == item["answer"]
            rows.append({"item": i, "condition": name, "pr": pr, "seed": seed, "correct": bool(correct),
                         "kept": len(idx), "retention": float("nan")})
    res.conditions = tabulate(rows)
    return res
