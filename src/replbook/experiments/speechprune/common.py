"""What the SpeechPrune miniature and paper profile share: the pruning conditions, the per-item answers they give,
and the chapter's results type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from replbook import speechprune as sp
from replbook.codec import ResultsData

PHASES = (("Phase 1 only", True, False), ("Phase 2 only", False, True), ("SpeechPrune", True, True))
#: The control: the question and choices with no speech at all. A reader that scores well here answers from priors
#: (or prefers short inputs), and a pruned condition must beat it before its accuracy says anything about pruning.
QUESTION_ONLY = "Question only (no speech)"
#: The upper reference of the miniature: exactly the key sentence's tokens.
ORACLE = "Oracle (key sentence)"
#: The premise's condition (issue 28): the passage with its key sentence's tokens cut out, read unpruned through the
#: window as Original is. A reader whose answers rest on the key sentence falls to the question-only control here.
KEY_REMOVED = "Key sentence removed"


@dataclass(frozen=True)
class Pruning:
    """How every passage is pruned: the window (Phase 1's budget N1), the prune rates, the seeds of RAP and RAC, the
    Phase-1 frame and the attention heads Phase 2 scores with: the reader's (the parameters of the same names)."""

    b_max: int
    prune_rates: list[float]
    random_seeds: int
    frame_size: int
    heads: int


def pruning_conditions(n: int, n1: int, prune_rates: list[float], random_seeds: int, item_index: int,
                       select: Callable[[float, bool, bool], torch.Tensor],
                       ) -> dict[tuple[str, float, int], torch.Tensor]:
    """(condition, prune rate, seed) → kept indices of one passage of ``n`` tokens with window ``n1``: Original, the
    question-only control (no tokens), RAP and RAC per seed, and the three SpeechPrune variants from
    ``select(prune_rate, use_phase1, use_phase2)``."""
    out = {("Original", 0.0, 0): sp.truncate_indices(n, n1), (QUESTION_ONLY, 0.0, 0): torch.empty(0, dtype=torch.long)}
    for pr in prune_rates:
        k = sp.kept_count(n1, pr)
        for s in range(random_seeds):
            gen = torch.Generator().manual_seed(1000 * item_index + s)
            out[("RAP", pr, s)] = sp.random_prune_indices(n, k, gen)
            out[("RAC", pr, s)] = sp.random_crop_indices(n, k, gen)
        for name, phase1, phase2 in PHASES:
            out[(name, pr, 0)] = select(pr, phase1, phase2)
    return out


@dataclass
class ConditionResult:
    """One condition at one prune rate (0 for Original, the oracle and the control) over the test passages:
    ``correct`` [seeds, items] (bool), ``kept`` tokens [seeds, items] and the share of the key sentence's tokens
    kept, ``retention`` [seeds, items] (float32; NaN in the paper profile). RAP and RAC have one row per seed, every
    other condition one."""

    condition: str
    pr: float
    correct: np.ndarray
    kept: np.ndarray
    retention: np.ndarray


def tabulate(rows: Sequence[dict[str, Any]]) -> list[ConditionResult]:
    """The per-(item, condition, pr, seed) answer rows as one :class:`ConditionResult` per (condition, pr), in the
    order the rows first name them (items and seeds numbered from 0)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["condition"], float(row["pr"])), []).append(row)
    out = []
    for (condition, pr), group in groups.items():
        seeds, items = 1 + max(r["seed"] for r in group), 1 + max(r["item"] for r in group)
        correct = np.zeros((seeds, items), dtype=bool)
        kept = np.zeros((seeds, items), dtype=np.int32)
        retention = np.full((seeds, items), np.nan, dtype=np.float32)
        for r in group:
            correct[r["seed"], r["item"]] = r["correct"]
            kept[r["seed"], r["item"]] = r["kept"]
            retention[r["seed"], r["item"]] = r["retention"]
        out.append(ConditionResult(condition, pr, correct, kept, retention))
    return out


@dataclass
class CostRow:
    """The reader's prefill at one kept token count: ``pr`` (None: Original, the full window), analytic MFLOPs and
    the measured wall time (batch 1, best of a few repeats)."""

    pr: float | None
    kept: int
    mflops: float
    ms: float


@dataclass
class SpeechpruneResults(ResultsData):
    """Everything the page shows: every condition's per-item answers, the reader's loss per epoch, the speech
    tokens per passage and per key sentence, the share of key sentences inside the first window (NaN in the paper
    profile), and the reader's prefill cost at the kept token counts."""

    conditions: list[ConditionResult] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    passage_tokens: list[int] = field(default_factory=list)
    key_tokens: list[int] = field(default_factory=list)
    key_in_window: float = 0.0
    cost: list[CostRow] = field(default_factory=list)
