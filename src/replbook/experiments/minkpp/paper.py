"""The Min-K%++ paper profile: WikiMIA scored by the paper's target and reference models from the local Hugging
Face cache, with the miniature's scores and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from replbook.data.wikimia import load_wikimia
from replbook.experiments.minkpp.common import (
    ChunkStats,
    Scoring,
    SeedResult,
    evaluate,
    mean_loglik,
    method_scores,
    split_indices,
    stats_from_logits,
)
from replbook.progress import progress


def load_causal_lm(name_or_path: str, dtype: torch.dtype = torch.float32):
    """A Hugging Face causal LM and its tokenizer from the local cache or a folder (nothing is downloaded when
    ``HF_HUB_OFFLINE=1``). A tokenizer without a pad token pads with its end-of-text token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def score_texts_hf(model, tokenizer, texts: Sequence[str], batch_size: int = 8, max_length: int = 2048,
                   ) -> ChunkStats:
    """Token statistics of texts under a Hugging Face causal LM, batched with right padding and a mask."""
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    parts = []
    for i in progress(range(0, len(texts), batch_size), desc="scoring", leave=False):
        enc = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        logits = model(**enc).logits
        parts.append(stats_from_logits(logits.float(), enc["input_ids"], enc["attention_mask"]))
    return ChunkStats.concat(parts)


def run_paper(dataset: str, target_model: str, reference_model: str, batch_size: int,
              scoring: Scoring) -> list[SeedResult]:
    """WikiMIA scored by the paper's target and reference models, evaluated like the miniature (one "epoch" 0:
    the model as pre-trained)."""
    texts, labels = load_wikimia(dataset)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    ref_model, ref_tok = load_causal_lm(reference_model, dtype)
    ref_loss = mean_loglik(score_texts_hf(ref_model, ref_tok, texts, batch_size))
    del ref_model
    model, tok = load_causal_lm(target_model, dtype)
    stats = score_texts_hf(model, tok, texts, batch_size)
    scores = method_scores(stats, texts, ref_loss, scoring.ks)
    split = split_indices(len(texts), 0, scoring.val_fraction, labels)
    result = SeedResult(0, split)
    evaluation = evaluate(scores, labels, split["val"], split["test"], scoring.ks, scoring.fixed_k, scoring.n_boot,
                          0)
    result.boot[0] = {n: b.astype("float32") for n, b in evaluation.pop("boot").items()}
    result.epochs[0] = evaluation
    result.scores[0] = {n: s.astype("float32") for n, s in scores.items()}
    return [result]
