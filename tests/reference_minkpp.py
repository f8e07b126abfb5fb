"""A per-text reference with the official code's structure (batch 1, numpy sort), written from the spec's
description of ``run.py``: used by the tests as an oracle and by the benchmark as the baseline."""

import numpy as np
import torch


def official_style_scores(logits: torch.Tensor, input_ids: torch.Tensor, k: float) -> tuple[float, float]:
    """One text: logits [1, T, V], ids [1, T] → (Min-K% score, Min-K%++ score), unclamped like the original."""
    logits = logits[0, :-1].float()
    ids = input_ids[0, 1:].unsqueeze(-1)
    probs = torch.softmax(logits, dim=-1)
    log_probs = torch.log_softmax(logits, dim=-1)
    token_log_probs = log_probs.gather(dim=-1, index=ids).squeeze(-1)
    mu = (probs * log_probs).sum(-1)
    variance = (probs * torch.square(log_probs)).sum(-1) - torch.square(mu)
    mink_plus = (token_log_probs - mu) / variance.sqrt()
    k_length = int(len(token_log_probs) * k)
    mink = np.sort(token_log_probs.cpu().numpy())[:k_length]
    minkpp = np.sort(mink_plus.cpu().numpy())[:k_length]
    return float(np.mean(mink)), float(np.mean(minkpp))
