"""What the SpeechPrune miniature and paper profile share: the pruning conditions and the result rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from replbook import speechprune as sp

PHASES = (("Phase 1 only", True, False), ("Phase 2 only", False, True), ("SpeechPrune", True, True))
#: The control: the question and choices with no speech at all. A reader that scores well here answers from priors
#: (or prefers short inputs), and a pruned condition must beat it before its accuracy says anything about pruning.
QUESTION_ONLY = "Question only (no speech)"


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
class Results:
    rows: list[dict] = field(default_factory=list)  # item, condition, pr, seed, correct, retention, kept
    losses: list[float] = field(default_factory=list)
    passage_tokens: list[int] = field(default_factory=list)
    key_tokens: list[int] = field(default_factory=list)
    key_in_window: float = 0.0
