"""What the Min-K%++ miniature and paper profile share: token statistics, the attacks' scores, the split and the
evaluation of every score with paired intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from replbook import minkpp
from replbook.codec import ResultsData
from replbook.minkpp import score_name
from replbook.stats import auroc_rank, bootstrap_metrics

K_SWEEP = [round(0.1 * i, 1) for i in range(1, 11)]


@dataclass(frozen=True)
class Scoring:
    """How every model state is scored and evaluated: the k sweep, the paper's fixed k, the share of items that
    selects k (the rest is the test set) and the bootstrap resamples."""

    ks: list[float]
    fixed_k: float
    val_fraction: float
    n_boot: int

LABELS = {"loss": "Loss", "zlib": "Zlib", "ref": "Ref", "mink": "Min-K%", "minkpp": "Min-K%++",
          "confidence": "Confidence (control)"}


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



def method_scores(stats: ChunkStats, texts: Sequence[str], ref_loss: np.ndarray | None, ks: Sequence[float],
                  ) -> dict[str, np.ndarray]:
    """Every attack's sequence score [N] (higher = member): loss, zlib, ref, and mink/minkpp at each k; and
    ``confidence``, the mean over tokens of μ_t (minus the predictive entropy), a control: how far "the model is
    surer on members", with no look at the actual tokens, separates the two."""
    tensors = (torch.from_numpy(a).double() for a in (stats.target_logp, stats.mu, stats.sigma))
    scores = minkpp.scores_from_stats(*tensors, torch.from_numpy(stats.valid), ks=ks)
    scores["zlib"] = minkpp.zlib_score(scores["loss"], texts)
    scores["confidence"] = torch.from_numpy((stats.mu * stats.valid).sum(1) / stats.valid.sum(1)).double()
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
    (name → auroc), ``k`` (method → {"fixed", "val", "best"}), ``diff`` (baseline → paired AUROC(minkpp) −
    AUROC(baseline) at the fixed k with its interval, and ``mink_best``: both at their best k on test, shown only)
    and ``boot`` (name → [n_boot] AUROC replicates, every score on the same stratified resamples of the test items,
    so any paired statistic has an interval; :class:`SeedResult` keeps them at the epochs a page judges).
    """
    y_test, y_val = labels[test_idx], labels[val_idx]
    test = bootstrap_metrics({n: s[test_idx] for n, s in scores.items()}, y_test, n_boot, seed, replicates=True)
    boot = {name: test[name].pop("boot") for name in test}
    for name, s in scores.items():
        m = minkpp.mia_metrics(s[test_idx], y_test)
        b = test[name]
        test[name] = {"auroc": b["auroc"], "lo": b["lo"], "hi": b["hi"], "tpr05": m["tpr05"],
                      "tpr05_lo": b["tpr_lo"], "tpr05_hi": b["tpr_hi"], "tpr01": m["tpr01"], "fpr95": m["fpr95"]}
    val_auroc = {n: float(auroc_rank(s[val_idx], y_val)) for n, s in scores.items()}
    chosen = {}
    for method in ("mink", "minkpp"):
        chosen[method] = {
            "fixed": fixed_k,
            "val": max(ks, key=lambda k, m=method: val_auroc[score_name(m, k)]),
            "best": max(ks, key=lambda k, m=method: test[score_name(m, k)]["auroc"]),
        }

    def paired(a: str, b: str) -> dict[str, float]:
        lo, hi = np.percentile(boot[a] - boot[b], [2.5, 97.5])
        return {"diff": test[a]["auroc"] - test[b]["auroc"], "lo": float(lo), "hi": float(hi)}

    pp = score_name("minkpp", fixed_k)
    diff = {b: paired(pp, name) for b, name in (("mink", score_name("mink", fixed_k)), ("loss", "loss"),
                                                 ("zlib", "zlib"), ("ref", "ref")) if name in scores}
    diff["mink_best"] = paired(score_name("minkpp", chosen["minkpp"]["best"]),
                               score_name("mink", chosen["mink"]["best"]))
    return {"test": test, "val_auroc": val_auroc, "k": chosen, "diff": diff, "boot": boot}


@dataclass
class SeedResult:
    """One seed (one model, or one fine-tuning run): its split, and per epoch (exposure) the member and non-member
    perplexities and the evaluation of every score (:func:`evaluate`, without its replicates). ``boot`` keeps the
    [n_boot] AUROC replicates of every score (float32) at the epochs a page judges (the highest; and 0, the base
    model, in the SmolLM2 section), ``scores`` every item's score (float32) where a page or a test reads them (the
    first tiny-GPT seed's highest epoch; the SmolLM2 section's base model and highest epoch)."""

    seed: int
    split: dict[str, np.ndarray]
    perplexity: dict[int, dict[str, float]] = field(default_factory=dict)
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)  # epoch → evaluate() output, without "boot"
    boot: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    scores: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    train_loss: list[float] = field(default_factory=list)  # mean training loss per epoch (SmolLM2 section)
    throughput: dict[str, float] = field(default_factory=dict)  # tokens per second measured in this run

    def keep_only(self, boot_epochs: Sequence[int], score_epochs: Sequence[int]) -> None:
        """Drop the replicates and item scores of the epochs no page reads (they would make the saved results large)."""
        self.boot = {e: {n: b.astype(np.float32) for n, b in v.items()} for e, v in self.boot.items()
                     if e in boot_epochs}
        self.scores = {e: {n: s.astype(np.float32) for n, s in v.items()} for e, v in self.scores.items()
                       if e in score_epochs}


@dataclass
class MinkppResults(ResultsData):
    """``lm``: the tiny GPT's seeds (or, in the paper profile, the paper's model on WikiMIA); ``smollm2``: the
    SmolLM2 section's seeds, exposure 0 being the base model (empty when ``lm_seeds`` is 0)."""

    lm: list[SeedResult]
    smollm2: list[SeedResult]


def record_exposure(result: SeedResult, epoch: int, stats: ChunkStats, texts: Sequence[str],
                    ref_loss: np.ndarray | None, scoring: Scoring) -> None:
    """Score one model state (``stats`` of every text) with every attack, evaluate it on the seed's split and store
    it in ``result`` under ``epoch``, with the member and non-member perplexities."""
    scores = method_scores(stats, texts, ref_loss, scoring.ks)
    labels, split = result.split["labels"], result.split
    ll = scores["loss"]  # mean target log-likelihood per text
    result.perplexity[epoch] = {"member": float(np.exp(-ll[labels == 1].mean())),
                                "non_member": float(np.exp(-ll[labels == 0].mean()))}
    evaluation = evaluate(scores, labels, split["val"], split["test"], scoring.ks, scoring.fixed_k, scoring.n_boot,
                          result.seed)
    result.boot[epoch] = evaluation.pop("boot")
    result.epochs[epoch] = evaluation
    result.scores[epoch] = scores
