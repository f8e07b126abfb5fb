"""The Min-K%++ experiments: the miniature (a tiny LM trained on a member split) and the paper profile.

Miniature (``smoke``/``cpu``): chunks of the Python reference manual (``pydoc_topics``) are split 50/50 at random
into members and non-members; a tiny GPT is trained on the members only, for 1..E epochs (the exposure knob); a
same-size reference LM is trained on stdlib docstrings (disjoint, same domain). Every chunk is scored after each
epoch by Loss, Zlib, Ref, Min-K% and Min-K%++ over a sweep of k. Membership is by construction, with no temporal
shift between members and non-members, so the miniature is a strict test (WikiMIA's split has such a shift).

Paper (``paper``): the official models and WikiMIA from the Hugging Face cache, scored by the same kernels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from replbook import minkpp
from replbook.assets import resolve as resolve_asset
from replbook.cache import cache_key, is_cached, load_state, model_path, save_state, tensor_hash
from replbook.data.text import WordVocab, chunk_tokens, tokenize_words
from replbook.minkpp import score_name
from replbook.models import TinyGPT, TinyGPTConfig
from replbook.profiles import ChapterParams, Param
from replbook.progress import progress
from replbook.stats import auroc_rank, bootstrap_auroc_difference, bootstrap_metrics

K_SWEEP = [round(0.1 * i, 1) for i in range(1, 11)]

PARAMS = ChapterParams(
    slug="minkpp",
    params=(
        Param("seeds", int, "Number of training seeds (split, init and data order all change with the seed).", 1, 10),
        Param("max_chunks", int, "Largest number of 64-token chunks taken from the corpus.", 20, 100_000),
        Param("chunk_len", int, "Tokens per chunk (the model context).", 8, 256),
        Param("vocab_size", int, "Word-level vocabulary size, <unk> included.", 64, 50_000),
        Param("d_model", int, "Width of the tiny GPT.", 8, 1024),
        Param("n_layers", int, "Transformer blocks of the tiny GPT.", 1, 12),
        Param("epochs", int, "Highest exposure: the target LM is scored after each epoch 1..epochs.", 1, 50),
        Param("ref_epochs", int, "Epochs of the reference LM on the docstring corpus.", 1, 50),
        Param("batch_size", int, "Training batch size.", 1, 1024),
        Param("lr", float, "AdamW learning rate.", 1e-6, 1.0),
        Param("ks", list, "The k values swept, each a fraction in (0, 1].", 0.01, 1.0, item=float),
        Param("fixed_k", float, "The paper's default k.", 0.01, 1.0),
        Param("val_fraction", float, "Fraction of chunks used to select k; the rest is the test set.", 0.05, 0.8),
        Param("n_boot", int, "Bootstrap resamples for intervals.", 10, 100_000),
        Param("threads", int, "torch threads.", 1, 64),
        Param("target_model", str, "paper profile: hub id of the target model."),
        Param("reference_model", str, "paper profile: hub id of the reference model for Ref."),
        Param("dataset", str, "paper profile: WikiMIA split name, or a local .jsonl with fields input and label."),
    ),
    defaults={
        "smoke": dict(seeds=2, max_chunks=240, chunk_len=32, vocab_size=512, d_model=32, n_layers=1, epochs=2,
                      ref_epochs=1, batch_size=32, lr=3e-3, ks=[0.1, 0.2, 0.5, 1.0], fixed_k=0.2, val_fraction=0.3,
                      n_boot=50, threads=2, target_model="-", reference_model="-", dataset="-"),
        "cpu": dict(seeds=3, max_chunks=100_000, chunk_len=64, vocab_size=2048, d_model=96, n_layers=2, epochs=10,
                    ref_epochs=1, batch_size=32, lr=3e-3, ks=K_SWEEP, fixed_k=0.2, val_fraction=0.3,
                    n_boot=1000, threads=2, target_model="-", reference_model="-", dataset="-"),
        "paper": dict(seeds=1, max_chunks=100_000, chunk_len=128, vocab_size=50_000, d_model=8, n_layers=1,
                      epochs=1, ref_epochs=1, batch_size=8, lr=1e-3, ks=K_SWEEP, fixed_k=0.2, val_fraction=0.3,
                      n_boot=1000, threads=8, target_model="EleutherAI/pythia-2.8b",
                      reference_model="EleutherAI/pythia-70m", dataset="WikiMIA_length32"),
    },
    assets={
        "smoke": ["pydoc-topics", "stdlib-docstrings"],
        "cpu": ["pydoc-topics", "stdlib-docstrings"],
        "paper": ["wikimia", "pythia-2.8b", "pythia-70m"],
    },
)

LABELS = {"loss": "Loss", "zlib": "Zlib", "ref": "Ref", "mink": "Min-K%", "minkpp": "Min-K%++"}


# ---------------------------------------------------------------------------------------------------- statistics


@dataclass
class ChunkStats:
    """Per-token statistics of a set of texts under one model, numpy [N, T-1] each (see minkpp.token_logprob_stats)."""

    target_logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    valid: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[ChunkStats]) -> ChunkStats:
        width = max(p.valid.shape[1] for p in parts)

        def pad(a: np.ndarray, value: float) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value)

        return cls(*(np.concatenate([pad(getattr(p, f), v) for p in parts])
                     for f, v in (("target_logp", 0.0), ("mu", 0.0), ("sigma", 1.0), ("valid", False))))


def stats_from_logits(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                      ) -> ChunkStats:
    out = minkpp.token_logprob_stats(logits, input_ids, attention_mask)
    return ChunkStats(*(t.detach().cpu().numpy() for t in out))


@torch.no_grad()
def score_tiny_lm(model: TinyGPT, ids: torch.Tensor, batch_size: int = 128) -> ChunkStats:
    """Token statistics of every chunk [N, L] under a tiny GPT (no padding)."""
    model.eval()
    return ChunkStats.concat([stats_from_logits(model(ids[i : i + batch_size]), ids[i : i + batch_size])
                              for i in range(0, len(ids), batch_size)])


def method_scores(stats: ChunkStats, texts: Sequence[str], ref_loss: np.ndarray | None, ks: Sequence[float],
                  ) -> dict[str, np.ndarray]:
    """Every attack's sequence score [N] (higher = member): loss, zlib, ref, and mink/minkpp at each k."""
    tensors = (torch.from_numpy(a).double() for a in (stats.target_logp, stats.mu, stats.sigma))
    scores = minkpp.scores_from_stats(*tensors, torch.from_numpy(stats.valid), ks=ks)
    scores["zlib"] = minkpp.zlib_score(scores["loss"], texts)
    if ref_loss is not None:
        scores["ref"] = minkpp.ref_score(scores["loss"], torch.from_numpy(ref_loss).double())
    return {name: s.numpy() for name, s in scores.items()}


def mean_loglik(stats: ChunkStats) -> np.ndarray:
    return (stats.target_logp * stats.valid).sum(1) / stats.valid.sum(1)


# ---------------------------------------------------------------------------------------------------- evaluation


def split_indices(n: int, seed: int, val_fraction: float, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A random half of ``n`` items are members (unless ``labels`` are given, 1 = member); a stratified
    ``val_fraction`` of each class selects k, the rest is the test set."""
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        labels = np.zeros(n, dtype=np.int64)
        labels[order[: n // 2]] = 1
    labels = np.asarray(labels, dtype=np.int64)
    members, non_members = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    val = []
    for group in (members, non_members):
        val.append(rng.choice(group, size=max(1, int(round(len(group) * val_fraction))), replace=False))
    val_idx = np.sort(np.concatenate(val))
    test_idx = np.setdiff1d(np.arange(n), val_idx)
    return {"members": members, "labels": labels, "val": val_idx, "test": test_idx}


def evaluate(scores: dict[str, np.ndarray], labels: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray,
             ks: Sequence[float], fixed_k: float, n_boot: int, seed: int) -> dict[str, Any]:
    """Test-set metrics of every score, k selected on validation and on test, and paired differences.

    Returns ``test`` (name → auroc, lo, hi, tpr05, tpr05_lo, tpr05_hi, tpr01, fpr95), ``val_auroc``
    (name → auroc), ``k`` (method → {"fixed", "val", "best"}), and ``diff`` (baseline → paired
    AUROC(minkpp) − AUROC(baseline) at the fixed k, and ``mink_best``: both at their best k on test).
    """
    y_test, y_val = labels[test_idx], labels[val_idx]
    test = bootstrap_metrics({n: s[test_idx] for n, s in scores.items()}, y_test, n_boot, seed)
    for name, s in scores.items():
        m = minkpp.mia_metrics(s[test_idx], y_test)
        boot = test[name]
        test[name] = {"auroc": boot["auroc"], "lo": boot["lo"], "hi": boot["hi"], "tpr05": m["tpr05"],
                      "tpr05_lo": boot["tpr_lo"], "tpr05_hi": boot["tpr_hi"], "tpr01": m["tpr01"], "fpr95": m["fpr95"]}
    val_auroc = {n: float(auroc_rank(s[val_idx], y_val)) for n, s in scores.items()}
    chosen = {}
    for method in ("mink", "minkpp"):
        chosen[method] = {
            "fixed": fixed_k,
            "val": max(ks, key=lambda k, m=method: val_auroc[score_name(m, k)]),
            "best": max(ks, key=lambda k, m=method: test[score_name(m, k)]["auroc"]),
        }
    pp = scores[score_name("minkpp", fixed_k)][test_idx]
    diff = {b: bootstrap_auroc_difference(pp, scores[name][test_idx], y_test, n_boot, seed)
            for b, name in (("mink", score_name("mink", fixed_k)), ("loss", "loss"), ("zlib", "zlib"),
                            ("ref", "ref")) if name in scores}
    diff["mink_best"] = bootstrap_auroc_difference(
        scores[score_name("minkpp", chosen["minkpp"]["best"])][test_idx],
        scores[score_name("mink", chosen["mink"]["best"])][test_idx], y_test, n_boot, seed)
    return {"test": test, "val_auroc": val_auroc, "k": chosen, "diff": diff}


# ---------------------------------------------------------------------------------------------------- training


def train_lm(cfg: TinyGPTConfig, ids: torch.Tensor, epochs: int, seed: int, lr: float, batch_size: int,
             desc: str = "train", on_epoch: Callable[[int, TinyGPT], None] | None = None) -> TinyGPT:
    """Train a tiny GPT on chunks ``ids`` [N, L] with next-token cross-entropy, AdamW, ``epochs`` passes.

    After each epoch the weights are cached under a hash of (config, data, seed, lr, batch, epoch); a rerun with
    the same inputs loads them instead of training. ``on_epoch(epoch, model)`` is called after each epoch.
    """
    torch.manual_seed(seed)
    model = TinyGPT(cfg)
    key = dict(cfg=cfg.to_dict(), data=tensor_hash(ids), seed=seed, lr=lr, batch=batch_size, v=1)
    paths = [model_path("tinygpt", cache_key(**key, epoch=e)) for e in range(1, epochs + 1)]
    if all(is_cached(p) for p in paths):
        for epoch, path in enumerate(paths, start=1):
            load_state(model, path)
            if on_epoch:
                on_epoch(epoch, model)
        return model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    steps = (len(ids) + batch_size - 1) // batch_size
    for epoch, path in enumerate(paths, start=1):
        model.train()
        order = torch.randperm(len(ids), generator=gen)
        for i in progress(range(steps), desc=f"{desc} epoch {epoch}/{epochs}", leave=False):
            batch = ids[order[i * batch_size : (i + 1) * batch_size]]
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        save_state(model, path)
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


@dataclass
class SeedResult:
    seed: int
    split: dict[str, np.ndarray]
    perplexity: dict[int, dict[str, float]] = field(default_factory=dict)
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)  # epoch → evaluate() output
    scores: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


def run_seed(params: dict[str, Any], corpus: Corpus, seed: int) -> SeedResult:
    """One training seed of the miniature: split, reference LM, target LM with scoring after every epoch."""
    torch.set_num_threads(params["threads"])
    split = split_indices(len(corpus.ids), seed, params["val_fraction"])
    cfg = TinyGPTConfig(vocab_size=len(corpus.vocab), context=params["chunk_len"], d_model=params["d_model"],
                        n_layers=params["n_layers"], n_heads=4 if params["d_model"] % 4 == 0 else 1)
    ref_model = train_lm(cfg, corpus.ref_ids, params["ref_epochs"], seed + 10_000, params["lr"],
                         params["batch_size"], desc=f"seed {seed} reference")
    ref_loss = mean_loglik(score_tiny_lm(ref_model, corpus.ids))
    result = SeedResult(seed, split)
    labels = split["labels"]

    def on_epoch(epoch: int, model: TinyGPT) -> None:
        stats = score_tiny_lm(model, corpus.ids)
        scores = method_scores(stats, corpus.texts, ref_loss, params["ks"])
        ll = scores["loss"]  # mean target log-likelihood per chunk
        result.perplexity[epoch] = {"member": float(np.exp(-ll[labels == 1].mean())),
                                    "non_member": float(np.exp(-ll[labels == 0].mean()))}
        result.epochs[epoch] = evaluate(scores, labels, split["val"], split["test"], params["ks"],
                                        params["fixed_k"], params["n_boot"], seed)
        result.scores[epoch] = scores

    train_lm(cfg, corpus.ids[split["members"]], params["epochs"], seed, params["lr"], params["batch_size"],
             desc=f"seed {seed} target", on_epoch=on_epoch)
    return result


def run_miniature(params: dict[str, Any]) -> list[SeedResult]:
    """All seeds of the miniature, with a progress bar over seeds."""
    corpus = load_corpus(params)
    return [run_seed(params, corpus, seed) for seed in progress(range(params["seeds"]), desc="seeds")]


# ---------------------------------------------------------------------------------------------------- summaries


def k_spread(result: SeedResult, epoch: int, method: str, ks: Sequence[float]) -> float:
    """max − min of a method's test AUROC over the k sweep."""
    vals = [result.epochs[epoch]["test"][score_name(method, k)]["auroc"] for k in ks]
    return float(max(vals) - min(vals))


def verdict_by_seeds(n_positive: int, n_seeds: int, partly_extra: bool = False) -> str:
    """The chapter's rule: reproduced if the interval is above 0 in at least two thirds of the seeds, partly if in
    at least one seed (or ``partly_extra``, e.g. only at the best k), else not reproduced."""
    if n_positive * 3 >= 2 * n_seeds:
        return "reproduced"
    if n_positive >= 1 or partly_extra:
        return "partly"
    return "not reproduced"


# ---------------------------------------------------------------------------------------------------- paper profile


def load_wikimia(dataset: str) -> tuple[list[str], np.ndarray]:
    """WikiMIA texts and labels (1 = member): a split name of ``swj0419/WikiMIA`` read through ``datasets`` from
    the local cache, or a local ``.jsonl`` file with fields ``input`` and ``label``."""
    if dataset.endswith(".jsonl"):
        rows = [json.loads(line) for line in open(dataset, encoding="utf-8") if line.strip()]
    else:
        from datasets import load_dataset

        rows = list(load_dataset("swj0419/WikiMIA", split=dataset))
    if not rows or any("input" not in r or "label" not in r for r in rows):
        raise ValueError(f"dataset {dataset!r}: every row needs the fields 'input' and 'label'.")
    return [r["input"] for r in rows], np.array([int(r["label"]) for r in rows])


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


def run_paper(params: dict[str, Any]) -> list[SeedResult]:
    """WikiMIA scored by the paper's target and reference models, evaluated like the miniature (one "epoch" 0:
    the model as pre-trained)."""
    texts, labels = load_wikimia(params["dataset"])
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    ref_model, ref_tok = load_causal_lm(params["reference_model"], dtype)
    ref_loss = mean_loglik(score_texts_hf(ref_model, ref_tok, texts, params["batch_size"]))
    del ref_model
    model, tok = load_causal_lm(params["target_model"], dtype)
    stats = score_texts_hf(model, tok, texts, params["batch_size"])
    scores = method_scores(stats, texts, ref_loss, params["ks"])
    split = split_indices(len(texts), 0, params["val_fraction"], labels)
    result = SeedResult(0, split)
    result.epochs[0] = evaluate(scores, labels, split["val"], split["test"], params["ks"], params["fixed_k"],
                                params["n_boot"], 0)
    result.scores[0] = scores
    return [result]
