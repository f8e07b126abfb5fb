"""Min-K%++: detecting pre-training data from a language model's next-token distributions.

Zhang, Sun, Yeats, Ouyang, Kuo, Zhang, Yang, Li (Duke University), ICLR 2025, arXiv:2404.02936.
Official code: github.com/zjysteven/mink-plus-plus (not copied; written from the equations below).

Notation. A text x_1..x_T; a causal LM gives at position t = 2..T the categorical p_t(z) = p(z | x_<t)
(the logits at position t-1). Per token:

    l_t  = log p_t(x_t)                                   target log-probability
    mu_t = E_{z~p_t}[log p_t(z)]                          (= minus the entropy)
    sigma_t² = E_{z~p_t}[(log p_t(z))²] - mu_t²            (floored, see sigma_var_floor)
    Min-K%++ token score  (l_t - mu_t) / sigma_t,   Min-K% token score  l_t

A sequence score is the mean of the lowest k_len = max(min_tokens, floor((T-1)·k)) token scores; higher means
"more likely a member" for every score in this module.

Every kernel takes a batch with padding: ``attention_mask`` [B, T] marks real tokens (1) and padding (0).
Moments are computed in float32 (float64 inputs stay float64), whatever the logits' dtype.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import auc, roc_curve


def sigma_var_floor(dtype: torch.dtype) -> float:
    """Floor on the variance before the square root: sigma = sqrt(max(var, eps)), eps the machine epsilon of the
    working dtype (1.2e-7 for float32, 2.2e-16 for float64).

    A one-hot or uniform p_t has var = 0 and l_t = mu_t, so its token score would be 0/0. The spec suggests a fixed
    1e-12; but l_t - mu_t carries a rounding error of about eps·abs(mu_t), so a smaller floor turns that rounding into
    scores of order 0.1 in float32. With this floor such positions score ~1e-3 (float32) or ~1e-7 (float64).
    """
    return float(torch.finfo(dtype).eps)


def _check_inputs(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Validate shapes; return the boolean mask [B, T]. (Non-finite logits are caught on the results.)"""
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape [B, T, V]; got {tuple(logits.shape)}.")
    if input_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"input_ids must have shape [B, T] = {tuple(logits.shape[:2])} to match logits; "
            f"got {tuple(input_ids.shape)}."
        )
    if logits.shape[1] < 2:
        raise ValueError("input_ids needs at least 2 tokens per row: the first token has no prediction.")
    if attention_mask is None:
        mask = torch.ones_like(input_ids, dtype=torch.bool)
    else:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}; "
                f"got {tuple(attention_mask.shape)}."
            )
        mask = attention_mask.bool()
    return mask


#: Elements per work buffer in the eager row-block loop (4 MB of float32; 20 rows of a 50k vocabulary): blocks
#: stay in the last-level cache. Measured best of 128k-2M elements in benchmarks/minkpp.py on 2 cores.
ROW_BLOCK_ELEMENTS = 1 << 20


def _row_stats(x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(l, mu, var) of rows of logits x [..., V] with targets [...], each [...]; one exp per element.

    With d = x - max(x) and Z = sum_z exp(d_z), log p = d - log Z. Hence
        l = d[target] - log Z,    mu = E_p[d] - log Z,    var = E_p[d²] - E_p[d]²
    (log p and d differ by a constant, so they share their variance under p).
    """
    d = x - x.amax(-1, keepdim=True)
    e = d.exp()
    z = e.sum(-1)
    mean_d = (e * d).sum(-1) / z
    var = (e * d.square()).sum(-1) / z - mean_d.square()
    log_z = z.log()
    target_logp = d.gather(-1, target.unsqueeze(-1)).squeeze(-1) - log_z
    return target_logp, mean_d - log_z, var


def _row_stats_buffered(
    x: torch.Tensor, target: torch.Tensor, work: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_row_stats` written into a preallocated work buffer [3, >=R, V]: fresh multi-megabyte temporaries
    cost a page fault per 4 kB on every block, which made the eager kernel 3x slower."""
    rows = x.shape[0]
    d, e, w = work[0, :rows], work[1, :rows], work[2, :rows]
    torch.sub(x, x.amax(-1, keepdim=True), out=d)
    torch.exp(d, out=e)
    z = e.sum(-1)
    torch.mul(e, d, out=w)
    mean_d = w.sum(-1) / z
    w.mul_(d)
    var = w.sum(-1) / z - mean_d.square()
    log_z = z.log()
    target_logp = d.gather(-1, target.unsqueeze(-1)).squeeze(-1) - log_z
    return target_logp, mean_d - log_z, var


@functools.cache
def _compiled_row_stats():
    return torch.compile(_row_stats, dynamic=False)


def token_logprob_stats(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token target log-prob l_t, mean mu_t and spread sigma_t of log p_t (the statistics of §2).

    sigma_t is floored as :func:`sigma_var_floor` says. On CPU the rows are processed in blocks small enough to
    stay in cache, written into reused buffers; ``compiled=True`` runs the same maths through ``torch.compile``
    (fused passes; the first call per shape compiles for 10-20 s, later calls are ~2x faster than eager).

    Args:
        logits: [B, T, V], any float dtype; position t predicts token t+1.
        input_ids: [B, T] token ids.
        attention_mask: [B, T], 1 for real tokens; ``None`` means no padding.
        compiled: use the ``torch.compile`` kernel.

    Returns:
        ``(target_logp, mu, sigma, valid)``, each [B, T-1]; ``valid[b, t]`` is true when both the
        predicting token t and the predicted token t+1 are real. Values at invalid positions are finite
        but meaningless.
    """
    mask = _check_inputs(logits, input_ids, attention_mask)
    batch, length, vocab = logits.shape
    work_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    n = length - 1
    if logits.is_cuda:
        # One launch per operation over the whole batch: a per-row loop leaves a GPU launch-bound.
        row_stats = _compiled_row_stats() if compiled else _row_stats
        out = torch.stack(row_stats(logits[:, :-1].to(work_dtype), input_ids[:, 1:]))
    else:
        out = torch.empty(3, batch, n, dtype=work_dtype)
        if compiled:
            step, row_stats = n, _compiled_row_stats()
        else:
            step = min(n, max(1, ROW_BLOCK_ELEMENTS // vocab))
            row_stats = functools.partial(_row_stats_buffered, work=torch.empty(3, step, vocab, dtype=work_dtype))
        for b in range(batch):
            for t0 in range(0, n, step):
                t1 = min(n, t0 + step)
                stats = row_stats(logits[b, t0:t1].to(work_dtype), input_ids[b, t0 + 1 : t1 + 1])
                for i, value in enumerate(stats):
                    out[i, b, t0:t1] = value
    # Finite logits give finite statistics (d <= 0, e in [0, 1], Z >= 1), so checking the [3, B, T-1] results
    # catches every NaN or infinity in the logits used, at a fraction of the cost of scanning [B, T, V].
    if not torch.isfinite(out).all():
        raise ValueError("logits contain NaN or infinite values; check the model's dtype (use float32 or bfloat16).")
    target_logp, mu, variance = out
    sigma = variance.clamp_min(sigma_var_floor(work_dtype)).sqrt()
    valid = mask[:, :-1] & mask[:, 1:]
    return target_logp, mu, sigma, valid


def minkpp_token_scores(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-K%++ token scores (l_t - mu_t) / sigma_t, [B, T-1], and the valid mask [B, T-1]."""
    target_logp, mu, sigma, valid = token_logprob_stats(logits, input_ids, attention_mask)
    return (target_logp - mu) / sigma, valid


def min_k_mean(token_scores: torch.Tensor, valid: torch.Tensor, k: float, min_tokens: int = 1) -> torch.Tensor:
    """Mean of the lowest k_len = max(min_tokens, floor(n_b·k)) valid scores of each row.

    ``n_b`` is the number of valid positions of row b. The floor follows the official code's ``int(n * k)``
    (so n·k = 56.999… gives 56); ``min_tokens`` avoids its empty slice (NaN) on short texts.

    Args:
        token_scores: [B, N] float scores.
        valid: [B, N] bool mask.
        k: fraction in (0, 1].
        min_tokens: lower bound on k_len, at least 1.

    Returns:
        [B] means, in the dtype of ``token_scores``.
    """
    if not isinstance(k, (int, float)) or not 0.0 < float(k) <= 1.0:
        raise ValueError(f"k must be a fraction in (0, 1]; got {k!r}. The paper sweeps k = 0.1, 0.2, ..., 1.0.")
    if min_tokens < 1:
        raise ValueError(f"min_tokens must be at least 1; got {min_tokens}.")
    n_valid = valid.sum(-1)
    if (n_valid == 0).any():
        rows = torch.nonzero(n_valid == 0).flatten().tolist()
        raise ValueError(
            f"rows {rows} have no scored token (empty or all padding); drop texts shorter than 2 tokens."
        )
    # Invalid positions sort last (+inf) and are never among the lowest k_len of a row.
    filled = token_scores.masked_fill(~valid, float("inf"))
    ascending, _ = filled.sort(dim=-1)
    # floor(n·k) computed in float64 like Python's int(n * k).
    k_len = torch.floor(n_valid.to(torch.float64) * float(k)).to(torch.long)
    k_len = torch.minimum(k_len.clamp_min(min_tokens), n_valid)
    keep = torch.arange(ascending.shape[-1], device=ascending.device) < k_len.unsqueeze(-1)
    total = ascending.masked_fill(~keep, 0.0).sum(-1)
    return total / k_len.to(total.dtype)


def minkpp_score(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    k: float = 0.2,
    attention_mask: torch.Tensor | None = None,
    min_tokens: int = 1,
) -> torch.Tensor:
    """Min-K%++ sequence score [B]: mean of the lowest k-fraction of (l_t - mu_t) / sigma_t."""
    scores, valid = minkpp_token_scores(logits, input_ids, attention_mask)
    return min_k_mean(scores, valid, k, min_tokens)


def mink_score(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    k: float = 0.2,
    attention_mask: torch.Tensor | None = None,
    min_tokens: int = 1,
) -> torch.Tensor:
    """Min-K% sequence score [B] (Shi et al. 2024): mean of the lowest k-fraction of l_t."""
    target_logp, _, _, valid = token_logprob_stats(logits, input_ids, attention_mask)
    return min_k_mean(target_logp, valid, k, min_tokens)


def loss_score(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss attack score [B]: mean target log-prob over valid tokens (= minus the LM loss)."""
    target_logp, _, _, valid = token_logprob_stats(logits, input_ids, attention_mask)
    return min_k_mean(target_logp, valid, 1.0)


def score_name(method: str, k: float | None = None) -> str:
    """Key of a score in :func:`scores_from_stats`: ``"minkpp@0.2"`` for the k-methods, else the method."""
    return f"{method}@{k:.2g}" if k is not None else method


def scores_from_stats(
    target_logp: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor,
    ks: Sequence[float] = (0.2,), min_tokens: int = 1,
) -> dict[str, torch.Tensor]:
    """Loss, and Min-K% and Min-K%++ at every k, from one set of token statistics (each [B, T-1]); each [B]."""
    out = {"loss": min_k_mean(target_logp, valid, 1.0)}
    z = (target_logp - mu) / sigma
    for k in ks:
        out[score_name("mink", k)] = min_k_mean(target_logp, valid, k, min_tokens)
        out[score_name("minkpp", k)] = min_k_mean(z, valid, k, min_tokens)
    return out


def sequence_scores(
    logits: torch.Tensor, input_ids: torch.Tensor, ks: Sequence[float] = (0.2,),
    attention_mask: torch.Tensor | None = None, min_tokens: int = 1, compiled: bool = False,
) -> dict[str, torch.Tensor]:
    """Every reference-free score of a batch from one pass over the logits: ``loss``, ``mink@k``, ``minkpp@k``."""
    stats = token_logprob_stats(logits, input_ids, attention_mask, compiled=compiled)
    return scores_from_stats(*stats, ks=ks, min_tokens=min_tokens)


def zlib_score(loss_scores: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Zlib attack score [B]: mean log-likelihood divided by the zlib-compressed length of the text in bytes.

    As in the official code, ``ll / len(zlib.compress(text.encode("utf-8")))``: ll is negative, so a text that
    compresses well (little zlib entropy) gets a more negative score.
    """
    if len(texts) != loss_scores.shape[0]:
        raise ValueError(f"texts has {len(texts)} entries but loss_scores has {loss_scores.shape[0]}.")
    lengths = torch.tensor([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=loss_scores.dtype)
    return loss_scores / lengths.to(loss_scores.device)


def ref_score(loss_target: torch.Tensor, loss_ref: torch.Tensor) -> torch.Tensor:
    """Ref attack score [B]: ll_target - ll_reference (both mean log-likelihoods, higher = member)."""
    if loss_target.shape != loss_ref.shape:
        raise ValueError(f"loss_target {tuple(loss_target.shape)} and loss_ref {tuple(loss_ref.shape)} differ.")
    return loss_target - loss_ref


def _as_numpy(x: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def mia_metrics(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AUROC and the low-FPR operating points of the official ``get_metrics`` (label 1 = member).

    ``fpr95`` is the first FPR on the ROC curve where TPR ≥ 0.95; ``tpr05`` / ``tpr01`` are the last TPR where
    FPR ≤ 0.05 / 0.01. The curve is sklearn's ``roc_curve`` (with its default ``drop_intermediate=True``).
    """
    s, y = _as_numpy(scores), _as_numpy(labels)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-d of equal length; got {s.shape} and {y.shape}.")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values.")
    if set(np.unique(y)) != {0.0, 1.0}:
        raise ValueError("labels must contain both classes, 1 = member and 0 = non-member.")
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(auc(fpr, tpr)),
        "fpr95": float(fpr[np.where(tpr >= 0.95)[0][0]]),
        "tpr05": float(tpr[np.where(fpr <= 0.05)[0][-1]]),
        "tpr01": float(tpr[np.where(fpr <= 0.01)[0][-1]]),
    }
