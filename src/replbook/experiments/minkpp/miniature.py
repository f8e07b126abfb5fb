"""The Min-K%++ miniature: a tiny GPT trained on a random member half of the Python reference manual, scored after
every epoch (exposure) against a reference LM trained on stdlib docstrings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from replbook.assets import resolve as resolve_asset
from replbook.cache import cache_entry
from replbook.data.text import WordVocab, chunk_tokens, tokenize_words
from replbook.experiments.minkpp.common import (
    ChunkStats,
    SeedResult,
    mean_loglik,
    record_exposure,
    split_indices,
    stats_from_logits,
)
from replbook.models import TinyGPT, TinyGPTConfig
from replbook.parallel import in_workers
from replbook.progress import progress


@torch.no_grad()
def score_tiny_lm(model: TinyGPT, ids: torch.Tensor, batch_size: int = 128) -> ChunkStats:
    """Token statistics of every chunk [N, L] under a tiny GPT (no padding)."""
    model.eval()
    return ChunkStats.concat([stats_from_logits(model(ids[i : i + batch_size]), ids[i : i + batch_size])
                              for i in range(0, len(ids), batch_size)])



# ---------------------------------------------------------------------------------------------------- training


def train_lm(cfg: TinyGPTConfig, ids: torch.Tensor, epochs: int, seed: int, lr: float, batch_size: int,
             desc: str = "train", on_epoch: Callable[[int, TinyGPT], None] | None = None) -> TinyGPT:
    """Train a tiny GPT on chunks ``ids`` [N, L] with next-token cross-entropy, AdamW, ``epochs`` passes.

    After each epoch the weights are cached under a hash of (config, every token of the data, seed, lr, batch,
    epoch, this function's source); a rerun with the same inputs loads them instead of training.
    ``on_epoch(epoch, model)`` is called after each epoch.
    """
    torch.manual_seed(seed)
    model = TinyGPT(cfg)
    hyper = dict(cfg=cfg.to_dict(), seed=seed, lr=lr, batch=batch_size)
    entries = [cache_entry("tinygpt", model, data=ids, hyper={**hyper, "epoch": e}, code=(train_lm,))
               for e in range(1, epochs + 1)]
    if all(entry.exists() for entry in entries):
        for epoch, entry in enumerate(entries, start=1):
            entry.load(model)
            if on_epoch:
                on_epoch(epoch, model)
        return model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    steps = (len(ids) + batch_size - 1) // batch_size
    for epoch, entry in enumerate(entries, start=1):
        model.train()
        order = torch.randperm(len(ids), generator=gen)
        for i in progress(range(steps), desc=f"{desc} epoch {epoch}/{epochs}", leave=False):
            batch = ids[order[i * batch_size : (i + 1) * batch_size]]
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        entry.save(model)
        if on_epoch:
            on_epoch(epoch, model)
    return model


# ---------------------------------------------------------------------------------------------------- miniature


@dataclass
class Corpus:
    """Target chunks (ids [N, L], their texts) and reference chunks (ids), over one vocabulary."""

    ids: torch.Tensor
    texts: list[str]
    ref_ids: torch.Tensor
    vocab: WordVocab


def load_corpus(params: dict[str, Any]) -> Corpus:
    """Tokenize the two stdlib corpora (checksum-verified assets) into chunks of ``chunk_len`` tokens.

    The vocabulary is the most frequent words of the target corpus (members and non-members alike): it carries
    no membership signal, only word counts.
    """
    topics = resolve_asset("pydoc-topics")["pydoc_topics.txt"].read_text(encoding="utf-8")
    docstrings = resolve_asset("stdlib-docstrings")["stdlib_docstrings.txt"].read_text(encoding="utf-8")
    tokens, ref_tokens = tokenize_words(topics), tokenize_words(docstrings)
    vocab = WordVocab.build(tokens, params["vocab_size"])
    target = chunk_tokens(tokens, vocab, params["chunk_len"], params["max_chunks"])
    ref = chunk_tokens(ref_tokens, vocab, params["chunk_len"], params["max_chunks"])
    return Corpus(target.ids, target.texts, ref.ids, vocab)



def run_seed(params: dict[str, Any], corpus: Corpus, seed: int, threads: int | None = None) -> SeedResult:
    """One training seed of the miniature: split, reference LM, target LM with scoring after every epoch."""
    torch.set_num_threads(threads or params["threads"])
    split = split_indices(len(corpus.ids), seed, params["val_fraction"])
    cfg = TinyGPTConfig(vocab_size=len(corpus.vocab), context=params["chunk_len"], d_model=params["d_model"],
                        n_layers=params["n_layers"], n_heads=4 if params["d_model"] % 4 == 0 else 1)
    ref_model = train_lm(cfg, corpus.ref_ids, params["ref_epochs"], seed + 10_000, params["lr"],
                         params["batch_size"], desc=f"seed {seed} reference")
    ref_loss = mean_loglik(score_tiny_lm(ref_model, corpus.ids))
    result = SeedResult(seed, split)

    def on_epoch(epoch: int, model: TinyGPT) -> None:
        record_exposure(result, epoch, score_tiny_lm(model, corpus.ids), corpus.texts, ref_loss, params)

    train_lm(cfg, corpus.ids[split["members"]], params["epochs"], seed, params["lr"], params["batch_size"],
             desc=f"seed {seed} target", on_epoch=on_epoch)
    return result


def run_miniature(params: dict[str, Any]) -> list[SeedResult]:
    """All seeds of the miniature: in this process with a progress bar over seeds, or ``workers`` seeds at once in
    one-thread processes (a tiny GPT trains faster as two one-thread processes than as one two-thread process)."""
    corpus = load_corpus(params)
    if params["workers"] == 1:
        return [run_seed(params, corpus, seed) for seed in progress(range(params["seeds"]), desc="seeds")]
    return in_workers([(params, corpus, seed) for seed in range(params["seeds"])], run_seed, params["workers"], 1)
