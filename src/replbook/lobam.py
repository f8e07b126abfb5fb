"""LoBAM: a LoRA backdoor amplified so that it survives model merging (Yin et al., ICLR 2025, arXiv:2411.16746).
No official code exists; written from the specification's equations (``shared/papers/lobam.md``) and from the
threat model and merging of BadMerging (Zhang et al., CCS 2024, github.com/jzhang538/BadMerging), not copied.

Users fine-tune a shared pre-trained model θ_pre and upload it; a merger adds up the task vectors τ_k = θ_k − θ_pre.
The attacker can afford only LoRA. It trains two adapters from one initialisation and one data order, a benign one
(θ_ben) and a backdoored one (θ_mal), and uploads

    θ_upload = λ · (θ_mal − θ_ben) + θ_ben,       λ ≥ 1   (λ = 1: the naive LoRA attack)       (spec §2.4)

The difference θ_mal − θ_ben cancels the shared benign update and keeps what the backdoor added; amplifying it lets
the backdoor survive the merge's dilution. The kernels below are tensor (or state-dict) in, tensor out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from peft import PeftModel

StateDict = Mapping[str, Tensor]

# ------------------------------------------------------------------------------------------------ amplification


def lora_delta(B: Tensor, A: Tensor, scaling: float) -> Tensor:
    """A LoRA update ΔW = scaling · B @ A: B [out, r], A [r, in] → [out, in]."""
    if B.shape[1] != A.shape[0]:
        raise ValueError(f"B is {tuple(B.shape)} and A {tuple(A.shape)}: B's columns must equal A's rows (the rank).")
    return scaling * (B @ A)


def amplify(w_mal: Tensor | StateDict, w_ben: Tensor | StateDict, lam: float) -> Tensor | dict[str, Tensor]:
    """The uploaded weights λ · (w_mal − w_ben) + w_ben, for two tensors of one shape or two state dicts with the same
    keys (spec §2.4; integer buffers of a state dict are w_ben's). Works on full weights or on their updates alike,
    since θ_pre cancels."""
    if isinstance(w_mal, Tensor):
        if not isinstance(w_ben, Tensor) or w_mal.shape != w_ben.shape:
            raise ValueError("amplify needs two tensors of one shape (or two state dicts).")
        return lam * (w_mal - w_ben) + w_ben
    _same_keys(w_mal, w_ben, "w_mal", "w_ben")
    return {k: lam * (w_mal[k] - w_ben[k]) + w_ben[k] if w_ben[k].is_floating_point() else w_ben[k] for k in w_mal}


def pack_amplified_lora(B_mal: Tensor, A_mal: Tensor, B_ben: Tensor, A_ben: Tensor, lam: float,
                        scaling_mal: float = 1.0, scaling_ben: float = 1.0) -> tuple[Tensor, Tensor]:
    """One rank-(r_m + r_b) LoRA whose B @ A (scaling 1) is exactly λ ΔW_mal + (1 − λ) ΔW_ben (spec E2):
    B = [λ B_m, (1 − λ) B_b] [out, r_m + r_b], A = [s_m A_m; s_b A_b] [r_m + r_b, in]."""
    return (torch.cat([lam * B_mal, (1 - lam) * B_ben], dim=1),
            torch.cat([scaling_mal * A_mal, scaling_ben * A_ben], dim=0))


def amplified_adapter(model: PeftModel, malicious: str, benign: str, lam: float, name: str = "lobam") -> str:
    """Add to a peft ``model`` the LoRA adapter ``name`` equal to λ · malicious + (1 − λ) · benign on every targeted
    layer: peft's ``add_weighted_adapter`` with ``combination_type="cat"`` concatenates the (weighted, scaled) A and
    the B matrices into one adapter of rank r_m + r_b with scaling 1, which is exact for any sign of the weights
    (``"linear"`` takes square roots of the weights and fails for 1 − λ < 0). The attacker's upload is then an
    ordinary adapter. Returns ``name``."""
    for adapter in (malicious, benign):
        if adapter not in model.peft_config:
            raise KeyError(f"adapter {adapter!r} is not in the model; it has {sorted(model.peft_config)}.")
    model.add_weighted_adapter([malicious, benign], [lam, 1.0 - lam], name, combination_type="cat")
    return name


# ------------------------------------------------------------------------------------------------ merging


def _same_keys(a: Mapping, b: Mapping, name_a: str, name_b: str) -> None:
    if set(a) != set(b):
        extra, missing = sorted(set(a) - set(b))[:3], sorted(set(b) - set(a))[:3]
        raise KeyError(f"{name_a} and {name_b} must have the same keys; only in {name_a}: {extra}, only in {name_b}: "
                       f"{missing}.")


def task_vector(w_finetuned: StateDict, w_pretrained: StateDict) -> dict[str, Tensor]:
    """τ = θ_ft − θ_pre, key by key (floating-point entries only: integer buffers are not weights)."""
    _same_keys(w_finetuned, w_pretrained, "w_finetuned", "w_pretrained")
    return {k: w_finetuned[k] - w_pretrained[k] for k in w_pretrained if w_pretrained[k].is_floating_point()}


def task_arithmetic(w_pretrained: StateDict, task_vectors: Sequence[StateDict], coef: float = 0.3,
                    ) -> dict[str, Tensor]:
    """Task Arithmetic (Ilharco et al. 2023): θ = θ_pre + c · Σ_k τ_k; keys without a task vector stay θ_pre's."""
    if not task_vectors:
        raise ValueError("task_arithmetic needs at least one task vector.")
    merged = dict(w_pretrained)
    for k in task_vectors[0]:
        merged[k] = w_pretrained[k] + coef * sum(tv[k] for tv in task_vectors)
    return merged


def ties_merge(w_pretrained: StateDict, task_vectors: Sequence[StateDict], k: float = 0.2, coef: float = 0.3,
               merge: str = "dis-sum") -> dict[str, Tensor]:
    """TIES-Merging (Yadav et al. 2023) as BadMerging runs it: each task vector, flattened over all its keys, keeps
    its top-``k`` fraction of entries by magnitude (trim); each entry's sign is the sign of the sum of the trimmed
    values (elect); only values of that sign are combined, summed (``dis-sum``) or averaged (``dis-mean``) (disjoint
    merge); θ = θ_pre + c · merged. Entries tied at the threshold are all kept, and an entry whose trimmed values sum
    to zero is dropped (TIES's reference code keeps int(k·P) + 1 entries and gives such an entry the majority sign:
    a difference only at ties)."""
    if not task_vectors:
        raise ValueError("ties_merge needs at least one task vector.")
    if not 0 < k <= 1:
        raise ValueError(f"parameter 'k' is the fraction of entries TIES keeps, in (0, 1]; got {k}.")
    if merge not in ("dis-sum", "dis-mean"):
        raise ValueError(f"parameter 'merge' must be 'dis-sum' or 'dis-mean'; got {merge!r}.")
    keys = list(task_vectors[0])
    flat = torch.stack([torch.cat([tv[key].reshape(-1) for key in keys]) for tv in task_vectors])  # [T, P]
    keep = max(1, math.ceil(k * flat.shape[1]))
    threshold = flat.abs().kthvalue(flat.shape[1] - keep + 1, dim=1, keepdim=True).values
    trimmed = flat * (flat.abs() >= threshold)
    sign = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    total = (trimmed * agree).sum(dim=0)
    if merge == "dis-mean":
        total = total / agree.sum(dim=0).clamp(min=1)
    merged, offset = dict(w_pretrained), 0
    for key in keys:
        n = w_pretrained[key].numel()
        merged[key] = w_pretrained[key] + coef * total[offset:offset + n].view_as(w_pretrained[key])
        offset += n
    return merged


def state_norm(tensors: StateDict) -> float:
    """‖τ‖: the Frobenius norm of all entries together (what a merger could screen uploads by)."""
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values())))


def cosine(a: StateDict, b: StateDict) -> float:
    """Cosine similarity of two task vectors, all entries flattened together."""
    _same_keys(a, b, "a", "b")
    dot = sum((a[k].double() * b[k].double()).sum() for k in a)
    return float(dot / (state_norm(a) * state_norm(b) + 1e-30))


# ------------------------------------------------------------------------------------------------ the trigger


def corner_mask(image_shape: Sequence[int], size: int) -> Tensor:
    """The trigger's mask m [C, H, W]: ones in the ``size`` × ``size`` bottom-right corner (BadMerging's corner
    patch), zeros elsewhere."""
    c, h, w = image_shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"the trigger's side ('size', the chapters' parameter 'patch') must be between 1 and "
                         f"{min(h, w)} pixels; got {size}.")
    mask = torch.zeros(c, h, w)
    mask[:, h - size:, w - size:] = 1.0
    return mask


def apply_trigger(x: Tensor, patch: Tensor, mask: Tensor) -> Tensor:
    """x̃ = m ⊙ p + (1 − m) ⊙ x: x [B, C, H, W], patch and mask [C, H, W]."""
    return mask * patch + (1 - mask) * x


def optimise_trigger(logits_fn: Callable[[Tensor], Tensor], x: Tensor, target: int, mask: Tensor, steps: int,
                     lr: float, batch_size: int, generator: torch.Generator, clamp: tuple[float, float] = (0.0, 1.0),
                     ) -> Tensor:
    """The universal patch p [C, H, W] that pushes ``logits_fn`` (the pre-trained model with the attacker's head)
    towards ``target`` on images x [N, C, H, W]: signed gradient steps of size ``lr`` on the patch's pixels
    minimising CE(logits(x̃), target), ``steps`` passes over x in random batches, clamped to the image range.

    BadMerging's step 1 has the same goal by another route (per image, raw gradient ascent on log p(t) at lr 1.0
    until the image is fooled, skipping images already classified as the target); ours is the batched, signed
    version, which needs no per-image loop."""
    patch = torch.rand(mask.shape, generator=generator) * (clamp[1] - clamp[0]) + clamp[0]
    for _ in range(steps):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            xb = x[order[start:start + batch_size]]
            p = patch.clone().requires_grad_(True)
            loss = F.cross_entropy(logits_fn(apply_trigger(xb, p, mask)), torch.full((len(xb),), target))
            (grad,) = torch.autograd.grad(loss, p)
            patch = (patch - lr * grad.sign() * mask).clamp(*clamp)
    return patch.detach()


def badmerging_loss(logits_clean: Tensor, y: Tensor, features_trig: Tensor, features_trig_pre: Tensor,
                    head: Callable[[Tensor], Tensor], target: int, alpha: float = 5.0,
                    r: float | Tensor = 1.0) -> Tensor:
    """BadMerging's on-task backdoor loss (spec §2.3):

        L = CE(h(f_θ(x)), y) + α · CE(h(r · f_θ(x̃) + (1 − r) · f_pre(x̃)), t)

    ``logits_clean`` = h(f_θ(x)) [B, K], y [B]; ``features_trig`` = f_θ(x̃) and ``features_trig_pre`` = f_pre(x̃)
    [B', D] of the triggered images; r ~ U(0.2, 1) per step interpolates towards the pre-trained features, so the
    backdoor still fires when merging dilutes the attacker's update."""
    mixed = r * features_trig + (1 - r) * features_trig_pre
    target_labels = torch.full((len(features_trig),), target, device=features_trig.device)
    return F.cross_entropy(logits_clean, y) + alpha * F.cross_entropy(head(mixed), target_labels)


def attack_success_rate(predictions: Tensor, labels: Tensor, target: int) -> float:
    """ASR: of the test images whose true class is not ``target``, the fraction the model, shown them with the
    trigger, classifies as ``target`` (spec E4). ``predictions`` [N] are the triggered predictions."""
    others = labels != target
    if not bool(others.any()):
        raise ValueError("attack_success_rate needs test images outside the target class.")
    return float((predictions[others] == target).float().mean())


# ------------------------------------------------------------------------------------------------ choosing λ


def select_lambda(stealth_ok: Callable[[float], bool], lo: float = 1.0, hi: float = 16.0, tol: float = 0.1,
                  ) -> float:
    """The largest λ in [lo, hi] whose upload passes ``stealth_ok`` (the spec's §2.6 reconstruction of the paper's
    rule), by bisection, assuming the check passes below some λ and fails above it: returns ``hi`` if it passes,
    ``lo`` if even ``lo`` fails (no amplification is stealthy: the naive attack), else a λ within ``tol`` below the
    boundary that passes."""
    if not lo < hi:
        raise ValueError(f"select_lambda needs lo < hi; got lo={lo}, hi={hi}.")
    if not tol > 0:
        raise ValueError(f"parameter 'tol' must be > 0; got {tol}.")
    if stealth_ok(hi):
        return hi
    if not stealth_ok(lo):
        return lo
    good, bad = lo, hi
    while bad - good > tol:
        mid = (good + bad) / 2
        good, bad = (mid, bad) if stealth_ok(mid) else (good, mid)
    return good
