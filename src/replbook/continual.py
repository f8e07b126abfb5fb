"""Regularisation baselines of continual learning, for any segmenter or classifier with logits over dim 1.

* EWC (Kirkpatrick et al., PNAS 2017, arXiv:1612.00796): after a stage, the diagonal Fisher information
  F_i = E_x E_{y~p_θ(y|x)} [(∂ log p_θ(y|x) / ∂θ_i)²] and the weights θ* are kept; later stages add
  (λ/2)·Σ_i F_i (θ_i − θ*_i)² (:func:`fisher_diagonal`, :func:`ewc_penalty`). Several stages sum their Fishers
  around the latest θ* (online EWC, Schwarz et al. 2018, with γ = 1).
* LwF (Li & Hoiem, ECCV 2016, arXiv:1606.09282): the previous model's softened outputs on the current inputs are
  targets, T²·KL(softmax(z_old/T) ‖ softmax(z_new/T)) (:func:`distillation_loss`), per pixel for segmenters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def fisher_diagonal(model: nn.Module, inputs: Iterable[Tensor], *, labels: str = "sampled",
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The diagonal Fisher of ``model`` over single examples: for every input x [C, ...] (one at a time, so the
    square is taken per example, not per batch), the squared gradient of log p(y|x) summed over the output positions
    (pixels of a segmenter) and divided by their number, y drawn from the model's own prediction
    (``labels="sampled"``: the true Fisher) or its argmax ("argmax"). With labels drawn independently per position
    the expectation is the mean per-position Fisher, on the scale of a loss averaged over positions (as
    cross-entropy is), so λ means the same for a classifier and a segmenter. Returns {parameter name: F [same
    shape]}, averaged over the inputs; the model is left in eval mode."""
    if labels not in ("sampled", "argmax"):
        raise ValueError(f"labels must be 'sampled' or 'argmax'; got {labels!r}.")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fisher = {n: torch.zeros_like(p) for n, p in named}
    model.eval()
    count = 0
    for x in inputs:
        logits = model(x[None])  # [1, K, ...]
        logp = logits.log_softmax(1)
        with torch.no_grad():
            probs = logp.exp().movedim(1, -1).reshape(-1, logits.shape[1])
            y = (torch.multinomial(probs, 1, generator=generator)[:, 0] if labels == "sampled"
                 else probs.argmax(-1))
        chosen = logp.movedim(1, -1).reshape(-1, logits.shape[1]).gather(1, y[:, None].to(logp.device)).sum()
        grads = torch.autograd.grad(chosen, [p for _, p in named], allow_unused=True)
        for (n, _), g in zip(named, grads, strict=True):
            if g is not None:
                fisher[n] += g.detach() ** 2 / len(y)  # per output position
        count += 1
    if count == 0:
        raise ValueError("fisher_diagonal needs at least one input.")
    return {n: f / count for n, f in fisher.items()}


def ewc_penalty(model: nn.Module, fisher: dict[str, Tensor], anchor: dict[str, Tensor]) -> Tensor:
    """½·Σ_i F_i (θ_i − θ*_i)² over the parameters named in ``fisher`` (θ* = ``anchor``); multiply by λ."""
    params = dict(model.named_parameters())
    missing = [n for n in fisher if n not in params or n not in anchor]
    if missing:
        raise KeyError(f"ewc_penalty: {missing[:3]} are in the Fisher but not in the model or the anchor.")
    return 0.5 * sum((fisher[n] * (params[n] - anchor[n]) ** 2).sum() for n in fisher)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)) over the classes (dim 1), averaged over every other position
    (examples and pixels). Both [B, K, ...]; the teacher is not differentiated."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} logits "
                         f"differ in shape.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}.")
    t = temperature
    log_p_teacher = (teacher_logits.detach() / t).log_softmax(1)
    log_p_student = (student_logits / t).log_softmax(1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
    return t * t * kl.mean()


def merge_fishers(old: dict[str, Tensor] | None, new: dict[str, Tensor]) -> dict[str, Tensor]:
    """Online EWC with γ = 1: the Fishers of all past stages summed."""
    return dict(new) if old is None else {n: old[n] + new[n] for n in new}
