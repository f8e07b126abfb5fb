"""Min-K%++ on a real pretrained LM: membership by fine-tuning exposure on SmolLM2-135M-Instruct.

SmolLM2's pre-training data are unknown (they may well include the Python documentation), so no pre-training
membership can be claimed from it. Instead a random half of the corpus windows become **members** by LoRA
fine-tuning: this is fine-tuning-data detection on a pretrained LM, a stand-in for the paper's pre-training setting.
Because the split is random, the **base** model (exposure 0) cannot tell the halves apart beyond chance; its AUROCs
are the control. The reference model of Ref is the base model itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from replbook.assets import resolve as resolve_asset
from replbook.experiments.minkpp.common import (
    ChunkStats,
    Scoring,
    SeedResult,
    method_scores,
    record_exposure,
    split_indices,
    stats_from_logits,
)
from replbook.models.pretrained_lm import fine_tune_lora, load_smollm2, lora_wrap, smollm2_key
from replbook.parallel import in_workers
from replbook.progress import progress

#: The corpus windows are drawn with this seed, the same for every training seed: the base model's scores are then
#: computed once, and the seeds differ only in the split, the adapters' initialisation and the data order.
WINDOW_SEED = 1234


@dataclass(frozen=True)
class SmolLMSetup:
    """The SmolLM2 section (the ``lm_*`` parameters, and the torch threads of the base model's scoring)."""

    lm_seeds: int
    lm_texts: int
    lm_len: int
    lm_epochs: list[int]
    lm_lr: float
    lm_rank: int
    lm_batch_size: int
    lm_workers: int
    threads: int


@dataclass
class Windows:
    """Token windows of the corpus under SmolLM2's tokenizer: ids [N, L] and their decoded texts (for Zlib)."""

    ids: torch.Tensor
    texts: list[str]


def corpus_windows(tokenizer, n_texts: int, length: int) -> Windows:
    """``n_texts`` windows of ``length`` BPE tokens, drawn at random (seed :data:`WINDOW_SEED`) from the
    even-numbered windows of the Python reference manual (``pydoc-topics``, the tiny GPT's corpus), in corpus order:
    no two are adjacent, so no member continues a non-member's sentence."""
    text = resolve_asset("pydoc-topics")["pydoc_topics.txt"].read_text(encoding="utf-8")
    tokens = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    available = len(tokens) // length
    candidates = np.arange(0, available, 2)
    if n_texts > len(candidates):
        raise ValueError(f"parameter 'lm_texts' = {n_texts} asks for more windows than the corpus has at "
                         f"lm_len = {length} ({len(candidates)} non-adjacent ones); lower one of them.")
    pick = np.sort(np.random.default_rng(WINDOW_SEED).choice(candidates, size=n_texts, replace=False))
    ids = tokens[: available * length].view(available, length)[torch.from_numpy(pick)]
    return Windows(ids, tokenizer.batch_decode(ids))


@torch.no_grad()
def score_ids(model, ids: torch.Tensor, batch_size: int, desc: str = "scoring") -> ChunkStats:
    """Token statistics of unpadded windows ``ids`` [N, L] under a Hugging Face causal LM."""
    model.eval()
    parts = []
    for i in progress(range(0, len(ids), batch_size), desc=desc, leave=False):
        batch = ids[i : i + batch_size]
        parts.append(stats_from_logits(model(input_ids=batch).logits.float(), batch))
    return ChunkStats.concat(parts)


def run_seed(setup: SmolLMSetup, scoring: Scoring, windows: Windows, base_stats: ChunkStats, seed: int,
             threads: int) -> SeedResult:
    """One seed: split, the base model's control (exposure 0), LoRA fine-tuning on the members with scoring after
    each epoch in ``lm_epochs``."""
    torch.set_num_threads(threads)
    split = split_indices(len(windows.ids), seed, scoring.val_fraction)
    # the Loss score of the base model, computed exactly as every Loss score is, so Ref is exactly 0 at exposure 0
    base_loss = method_scores(base_stats, windows.texts, None, [scoring.fixed_k])["loss"]
    result = SeedResult(seed, split)

    record_exposure(result, 0, base_stats, windows.texts, base_loss, scoring)
    model, _ = load_smollm2()
    torch.manual_seed(seed)  # the adapters' initialisation (lora_A) is the seed's, in any process
    model = lora_wrap(model, setup.lm_rank)
    score_at = set(setup.lm_epochs)

    members = windows.ids[split["members"]]
    clock = {"scoring": 0.0, "scored": 0}

    def on_epoch(epoch: int, m) -> None:
        if epoch in score_at:
            start = time.perf_counter()
            stats = score_ids(m, windows.ids, setup.lm_batch_size, desc=f"seed {seed} epoch {epoch}")
            clock["scoring"] += time.perf_counter() - start
            clock["scored"] += windows.ids.numel()
            record_exposure(result, epoch, stats, windows.texts, base_loss, scoring)

    log = fine_tune_lora(
        model, members, max(score_at), lr=setup.lm_lr, batch_size=setup.lm_batch_size,
        seed=seed, base_key=smollm2_key(), desc=f"seed {seed} LoRA", on_epoch=on_epoch)
    result.train_loss = log.losses
    result.throughput = {"threads": threads, "scoring tokens/s": clock["scored"] / clock["scoring"]}
    if log.seconds is not None:  # absent when the adapters came from the cache
        result.throughput["LoRA training tokens/s"] = members.numel() * max(score_at) / log.seconds
    result.keep_only(boot_epochs=[0, max(score_at)], score_epochs=[0, max(score_at)])
    return result


def run_real_lm(setup: SmolLMSetup, scoring: Scoring) -> list[SeedResult]:
    """Every seed of the SmolLM2 section (``lm_seeds`` of them; none when it is 0), seeds in ``lm_workers``
    one-thread processes when that is above 1."""
    if setup.lm_seeds == 0:
        return []
    torch.set_num_threads(setup.threads)
    model, tokenizer = load_smollm2()
    windows = corpus_windows(tokenizer, setup.lm_texts, setup.lm_len)
    start = time.perf_counter()
    base_stats = score_ids(model, windows.ids, setup.lm_batch_size, desc="base model")
    base_rate = windows.ids.numel() / (time.perf_counter() - start)
    del model
    workers = setup.lm_workers
    jobs = [(setup, scoring, windows, base_stats, seed) for seed in range(setup.lm_seeds)]
    results = in_workers(jobs, run_seed, workers, 1 if workers > 1 else setup.threads)
    for r in results:
        r.throughput[f"base scoring tokens/s ({setup.threads} threads)"] = base_rate
    return results
