"""SpeechPrune: training-free token pruning for speech LLMs (Lin, Fu, Zhang, Liu, Zhang, Sun, Li, Chen; Duke;
ICME 2025, arXiv:2412.12009). No official code: written from the paper's equations as the specification reads them.

Speech tokens S [N, D] live in the LLM's input-embedding space; the question's token embeddings are T [L, D].

Phase 1, speech–text similarity with a frame-wise budget (target ``n_phase1`` = N₁ tokens):

    r_u   = mean_v cos(S_u, T_v)                        token relevance
    F̂_i   = Σ_{u ∈ frame i} r_u                         frames of f tokens (the last may be shorter)
    n_i   = min(⌊N₁ · softmax(F̂)_i⌋, len(frame i))      each frame keeps its top-n_i tokens by r

Phase 2, binarized attention of the LLM's first layer on the N₁ survivors (keep k = round((1 − PR) · N₁)):

    Q' = sign(S) sign(W_Q)ᵀ,  K' = sign(S) sign(W_K)ᵀ   (nn.Linear layout: W is [D_out, D])
    A  = softmax(Q' K'ᵀ / √d_k) over keys, per head
    importance_u = mean over queries (and heads) of A[:, u]   the attention token u *receives*

Kept indices are always returned sorted ascending (time order), unique, into the original sequence. Math runs in
float32 whatever the input dtype: with ±1 entries Q'K'ᵀ reaches d_k·D², which overflows float16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OVERFLOW = ("redistribute", "floor")


def _check_finite(name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values.")


def speech_text_similarity(speech: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None,
                           ) -> torch.Tensor:
    """Relevance r [B, N]: the mean cosine similarity of each speech token [B, N, D] with the valid query tokens
    [B, L, D] (``text_mask`` [B, L], True = valid; all valid by default)."""
    if speech.ndim != 3 or text.ndim != 3 or speech.shape[0] != text.shape[0] or speech.shape[2] != text.shape[2]:
        raise ValueError(f"speech must be [B, N, D] and text [B, L, D] with the same B and D; got "
                         f"{tuple(speech.shape)} and {tuple(text.shape)}.")
    _check_finite("speech", speech)
    _check_finite("text", text)
    cos = F.normalize(speech.float(), dim=-1) @ F.normalize(text.float(), dim=-1).transpose(1, 2)  # [B, N, L]
    if text_mask is None:
        return cos.mean(-1)
    if text_mask.shape != text.shape[:2]:
        raise ValueError(f"text_mask must be [B, L] = {tuple(text.shape[:2])}; got {tuple(text_mask.shape)}.")
    valid = text_mask.to(cos.dtype)
    if (valid.sum(-1) == 0).any():
        raise ValueError("text_mask leaves a row without any valid query token.")
    return (cos * valid[:, None, :]).sum(-1) / valid.sum(-1)[:, None]


def framewise_budget_select(relevance: torch.Tensor, n_keep: int, frame_size: int = 25,
                            overflow: str = "redistribute") -> torch.Tensor:
    """Phase 1's selection from relevance [B, N]: kept indices [B, n_keep], sorted.

    Budgets are ⌊n_keep · softmax(frame sums)⌋, capped at each frame's length. They sum to at most n_keep;
    ``overflow="redistribute"`` fills the remainder with the highest-relevance tokens not yet kept, ``"floor"`` keeps
    only the budgeted tokens and pads each row with −1 to the longest row's count.
    """
    if overflow not in OVERFLOW:
        raise ValueError(f"overflow must be one of {OVERFLOW}; got {overflow!r}.")
    if relevance.ndim != 2:
        raise ValueError(f"relevance must be [B, N]; got shape {tuple(relevance.shape)}.")
    b, n = relevance.shape
    if not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must lie in [0, {n}] (the number of tokens); got {n_keep}.")
    if frame_size < 1:
        raise ValueError(f"frame_size must be >= 1; got {frame_size}.")
    r = relevance.float()
    m = math.ceil(n / frame_size)
    pad = m * frame_size - n
    frames = F.pad(r, (0, pad), value=0.0).view(b, m, frame_size)  # zero padding: the last frame sums what it has
    lengths = torch.full((m,), frame_size)
    lengths[-1] = frame_size - pad
    budgets = torch.minimum(torch.floor(n_keep * F.softmax(frames.sum(-1), dim=-1)).long(), lengths)  # [B, m]
    # rank each token within its frame by relevance (stable: ties keep time order), padding last
    ranked = F.pad(r, (0, pad), value=-math.inf).view(b, m, frame_size)
    order = ranked.sort(dim=-1, descending=True, stable=True).indices
    rank = order.argsort(dim=-1)
    keep = (rank < budgets[..., None]).view(b, -1)[:, :n]
    rows = []
    for i in range(b):
        kept = torch.nonzero(keep[i]).flatten()
        if overflow == "redistribute" and len(kept) < n_keep:
            rest = r[i].clone()
            rest[kept] = -math.inf
            extra = rest.sort(descending=True, stable=True).indices[: n_keep - len(kept)]
            kept = torch.cat([kept, extra])
        rows.append(kept.sort().values)
    width = max((len(k) for k in rows), default=0)
    return torch.stack([F.pad(k, (0, width - len(k)), value=-1) for k in rows])


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(W) in float32: what Phase 2 multiplies by. A model's projections are fixed, so this can be done once at
    load time and passed with ``weights_binarized=True``."""
    return torch.sign(w.float())


def binarized_attention_scores(speech: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, num_heads: int = 1,
                               weights_binarized: bool = False) -> torch.Tensor:
    """Phase 2's importance [B, N]: attention each token receives, averaged over queries and heads, from the
    sign-binarized speech [B, N, D] and projections w_q, w_k [D_out, D] (nn.Linear layout), in float32.
    ``weights_binarized=True``: w_q and w_k are already :func:`binarize_weight` outputs."""
    if speech.ndim != 3:
        raise ValueError(f"speech must be [B, N, D]; got shape {tuple(speech.shape)}.")
    if w_q.shape != w_k.shape or w_q.ndim != 2 or w_q.shape[1] != speech.shape[2]:
        raise ValueError(f"w_q and w_k must both be [D_out, D] with D = {speech.shape[2]}; got {tuple(w_q.shape)} "
                         f"and {tuple(w_k.shape)}.")
    if num_heads < 1 or w_q.shape[0] % num_heads:
        raise ValueError(f"num_heads must divide D_out = {w_q.shape[0]}; got {num_heads}.")
    _check_finite("speech", speech)
    b, n, _ = speech.shape
    d_k = w_q.shape[0] // num_heads
    s = torch.sign(speech.float())
    sq, sk = (w_q.float(), w_k.float()) if weights_binarized else (binarize_weight(w_q), binarize_weight(w_k))
    q = (s @ sq.T).view(b, n, num_heads, d_k).transpose(1, 2)  # [B, H, N, d_k]
    k = (s @ sk.T).view(b, n, num_heads, d_k).transpose(1, 2)
    attn = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_k), dim=-1)  # rows: queries; columns: keys
    return attn.mean(dim=-2).mean(dim=1)  # received: mean over queries, then heads


def kept_count(n_phase1: int, prune_rate: float) -> int:
    """Tokens SpeechPrune keeps: round((1 − PR) · N₁) (PR is relative to the Phase-1 budget, not to N)."""
    return round((1 - prune_rate) * n_phase1)


def speechprune_select(speech: torch.Tensor, text: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor,
                       n_phase1: int, prune_rate: float, frame_size: int = 25, num_heads: int = 1,
                       use_phase1: bool = True, use_phase2: bool = True, text_mask: torch.Tensor | None = None,
                       overflow: str = "redistribute", weights_binarized: bool = False) -> torch.Tensor:
    """Kept indices [B, round((1 − prune_rate) · n_phase1)] into the speech sequence [B, N, D], sorted.

    Both phases: Phase 1 keeps ``n_phase1`` tokens, Phase 2 keeps the most attended of those. Phase 1 only: the
    frame-wise budget aims straight at the final count. Phase 2 only: binarized attention over all N tokens.
    """
    if not 0 <= prune_rate < 1:
        raise ValueError(f"prune_rate must lie in [0, 1); got {prune_rate}.")
    n = speech.shape[1] if speech.ndim == 3 else -1
    if not 0 < n_phase1 <= n:
        raise ValueError(f"n_phase1 must lie in [1, N = {n}] (the speech tokens); got {n_phase1}.")
    if not (use_phase1 or use_phase2):
        raise ValueError("at least one of use_phase1 and use_phase2 must be True.")
    n_keep = kept_count(n_phase1, prune_rate)
    relevance = speech_text_similarity(speech, text, text_mask) if use_phase1 else None
    if not use_phase2:
        return framewise_budget_select(relevance, n_keep, frame_size, overflow)
    if use_phase1:
        if overflow != "redistribute":
            raise ValueError("with Phase 2, Phase 1 must return exactly n_phase1 tokens: use overflow='redistribute'.")
        candidates = framewise_budget_select(relevance, n_phase1, frame_size, overflow)  # [B, N1]
    else:
        candidates = torch.arange(n).expand(speech.shape[0], n)
    subset = torch.gather(speech, 1, candidates[..., None].expand(-1, -1, speech.shape[2]))
    scores = binarized_attention_scores(subset, w_q, w_k, num_heads, weights_binarized)
    top = scores.topk(n_keep, dim=-1, sorted=False).indices
    return torch.gather(candidates, 1, top).sort(dim=-1).values


# --- baselines (the paper's Original, RAP and RAC) --------------------------------------------------------------


def _check_counts(n: int, n_keep: int) -> None:
    if not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must lie in [0, n = {n}]; got {n_keep}.")


def truncate_indices(n: int, n_keep: int) -> torch.Tensor:
    """"Original": the first n_keep tokens (the model's window)."""
    _check_counts(n, n_keep)
    return torch.arange(n_keep)


def random_prune_indices(n: int, n_keep: int, generator: torch.Generator) -> torch.Tensor:
    """RAP: n_keep tokens drawn without replacement anywhere in the sequence, sorted."""
    _check_counts(n, n_keep)
    return torch.randperm(n, generator=generator)[:n_keep].sort().values


def random_crop_indices(n: int, n_keep: int, generator: torch.Generator) -> torch.Tensor:
    """RAC: one contiguous crop of n_keep tokens at a uniformly drawn start."""
    _check_counts(n, n_keep)
    start = int(torch.randint(0, n - n_keep + 1, (1,), generator=generator))
    return torch.arange(start, start + n_keep)


def key_sentence_retention(kept: torch.Tensor, key_span: tuple[int, int]) -> float:
    """Fraction of the key sentence's tokens [start, end) that survived pruning."""
    start, end = key_span
    if not 0 <= start < end:
        raise ValueError(f"key_span must be [start, end) with 0 <= start < end; got {key_span}.")
    return float(((kept >= start) & (kept < end)).sum()) / (end - start)
