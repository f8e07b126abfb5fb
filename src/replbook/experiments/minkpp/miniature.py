"""The Min-K%++ miniature: a tiny GPT trained on a random member half of the Python reference manual, scored after
every epoch (exposure) against a reference LM trained on stdlib docstrings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from replbook.assets import resolve as resolve_asset
from replbook.cache import cache_entry
from replbook.data.text import WordVocab, chunk_tokens, tokenize_words
from replbook.experiments.minkpp.common import (
    ChunkStats,
    Scoring,
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


@dataclass(frozen=True)
class TinyLMSetup:
    """The miniature's corpus, model and training (the parameters of the same names)."""

    seeds: int
    max_chunks: int
    chunk_len: int
    vocab_size: int
    d_model: int
    n_layers: int
    epochs: int
    ref_epochs: int
    batch_size: int
    lr: float
    threads: int
    workers: int


@dataclass
class Corpus:
    """Target chunks (ids [N, L], their texts) and reference chunks (ids), over one vocabulary."""

    ids: torch.Tensor
    texts: list[str]
    ref_ids: torch.Tensor
    vocab: WordVocab


def load_corpus(vocab_size: int, chunk_len: int, max_chunks: int) -> Corpus:
    """Tokenize the two stdlib corpora (checksum-verified assets) into chunks of ``chunk_len`` tokens.

    The vocabulary is the most frequent words of the target corpus (members and non-members alike): it carries
    no membership signal, only word counts.
    """
    topics = resolve_asset("pydoc-topics")["pydoc_topics.txt"].read_text(encoding="utf-8")
    docstrings = resolve_asset("stdlib-docstrings")["stdlib_docstrings.txt"].read_text(encoding="utf-8")
    tokens, ref_tokens = tokenize_words(topics), tokenize_words(docstrings)
    vocab = WordVocab.build(tokens, vocab_size)
    target = chunk_tokens(tokens, vocab, chunk_len, max_chunks)
    ref = chunk_tokens(ref_tokens, vocab, chunk_len, max_chunks)
    return Corpus(target.ids, target.texts, ref.ids, vocab)



def run_seed(setup: TinyLMSetup, scoring: Scoring, corpus: Corpus, seed: int, threads: int | None = None
             ) -> SeedResult:
    """One training seed of the miniature: split, reference LM, target LM with scoring after every epoch."""
    torch.set_num_threads(threads or setup.threads)
    split = split_indices(len(corpus.ids), seed, scoring.val_fraction)
    cfg = TinyGPTConfig(vocab_size=len(corpus.vocab), context=setup.chunk_len, d_model=setup.d_model,
                        n_layers=setup.n_layers, n_heads=4 if setup.d_model % 4 == 0 else 1)
    ref_model = train_lm(cfg, corpus.ref_ids, setup.ref_epochs, seed + 10_000, setup.lr, setup.batch_size,
                         desc=f"seed {seed} reference")
    ref_loss = mean_loglik(score_tiny_lm(ref_model, corpus.ids))
    result = SeedResult(seed, split)

    def on_epoch(epoch: int, model: TinyGPT) -> None:
        record_exposure(result, epoch, score_tiny_lm(model, corpus.ids), corpus.texts, ref_loss, scoring)

    train_lm(cfg, corpus.ids[split["members"]], setup.epochs, seed, setup.lr, setup.batch_size,
             desc=f"seed {seed} target", on_epoch=on_epoch)
    # the page's ROC curves read the first seed's item scores at the highest exposure; nothing reads the others
    result.keep_only(boot_epochs=[setup.epochs], score_epochs=[setup.epochs] if seed == 0 else [])
    return result


def run_miniature(setup: TinyLMSetup, scoring: Scoring) -> list[SeedResult]:
    """All seeds of the miniature: in this process with a progress bar over seeds, or ``workers`` seeds at once in
    one-thread processes (a tiny GPT trains faster as two one-thread processes than as one two-thread process)."""
    corpus = load_corpus(setup.vocab_size, setup.chunk_len, setup.max_chunks)
    if setup.workers == 1:
        return [run_seed(setup, scoring, corpus, seed) for seed in progress(range(setup.seeds), desc="seeds")]
    jobs = [(setup, scoring, corpus, seed) for seed in range(setup.seeds)]
    return in_workers(jobs, run_seed, setup.workers, 1)
