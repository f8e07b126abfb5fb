"""FedProphet's kernels (Tang et al., MLSys 2025, arXiv:2409.08372; Duke and Accenture; official code
github.com/Yoruko-Tang/FedProphet, read for the specification, not copied): the memory-aware partition of a model
into cascaded modules, the strong-convexity regularised module loss, the feature-space radius, Adaptive Perturbation
Adjustment (APA), Differentiated Module Assignment (DMA) and the partial average. Flower-free: the chapter's Flower
strategy and client call these.

The model is a sequence of "atoms" (layers or blocks). An atom's training memory at a batch size is
``param_scale`` × its parameter bytes (3 for SGD with momentum: weights, gradients, momentum) plus the bytes autograd
keeps for its backward pass. Atoms are grouped greedily into modules that each fit a memory budget, counting the
auxiliary head every module but the last trains on its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AtomProfile:
    """One atom at a batch: training memory (bytes), parameters, output shape [B, ...]."""

    name: str
    mem_bytes: int
    params: int
    out_shape: tuple[int, ...]
    macs: int = 0  # multiply-accumulates of one forward pass over the batch (convolutions and linear layers)


def _saved_bytes(atom: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in ``atom(x)``, and the output."""
    params = {p.data_ptr() for p in atom.parameters()}
    seen: dict[tuple[int, tuple[int, ...]], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.data_ptr(), tuple(t.shape))
        if t.data_ptr() not in params and key not in seen:  # a tensor saved twice is stored once
            seen[key] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = atom(x)
    return sum(seen.values()), out


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``module(x)`` in its convolutions (k_h·k_w·c_in/groups per output entry) and linear
    layers (in_features per output entry)."""
    total = 0

    def hook(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            total += output.numel() * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


def profile_atoms(atoms: list[tuple[str, nn.Module]], input_shape: tuple[int, ...], param_scale: int = 3,
                  ) -> list[AtomProfile]:
    """Profile atoms in order on a random input of ``input_shape`` (batch first), in training mode."""
    x = torch.randn(input_shape)
    out = []
    for name, atom in atoms:
        atom.train()
        x = x.detach().requires_grad_(True)  # every atom after the first receives a tensor that needs gradients
        saved, y = _saved_bytes(atom, x)
        params = sum(p.numel() for p in atom.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in atom.parameters())
        out.append(AtomProfile(name, param_scale * param_bytes + saved, params, tuple(y.shape),
                               count_macs(atom, x.detach())))
        x = y
    return out


def aux_head_params(out_shape: tuple[int, ...], num_classes: int, rule: str = "official") -> int:
    """Parameters of the auxiliary head on an output [B, c, h, w] (or [B, f]). ``official``: with
    w' = ceil(sqrt(C/c)), average-pool to w'×w' when h > w', then Linear(c·w'², C); ``flatten``: Linear(c·h·w, C);
    a vector output gets Linear(f, C)."""
    if len(out_shape) == 2:
        return out_shape[1] * num_classes + num_classes
    _, c, h, w = out_shape
    side = math.ceil(math.sqrt(num_classes / c))
    features = c * side * side if h > side and rule == "official" else c * h * w
    return features * num_classes + num_classes


def partition(profiles: list[AtomProfile], mem_budget: int, num_classes: int, data_bytes: int = 4,
              param_scale: int = 3, head_rule: str = "official") -> list[list[str]]:
    """Greedy modules: append atom a to the open module while

        mem(open) + mem(a) + data_bytes·numel(out(a)) + param_scale·data_bytes·params(head_a) + data_bytes·B·C

    (the aux head's input, parameters and logits) fits ``mem_budget``; otherwise close the module and open a new
    one with a; the head is counted under ``head_rule`` (:func:`aux_head`). Raises ``ValueError`` when the budget
    does not exceed the second-largest atom memory (the official code asserts the same)."""
    if len(profiles) > 1 and mem_budget <= sorted(p.mem_bytes for p in profiles)[-2]:
        raise ValueError(f"mem_budget {mem_budget} B must exceed the second-largest atom memory "
                         f"{sorted(p.mem_bytes for p in profiles)[-2]} B; raise the budget or split the atoms.")
    modules: list[list[str]] = []
    open_names: list[str] = []
    open_mem = 0
    for p in profiles:
        batch = p.out_shape[0]
        head = (data_bytes * math.prod(p.out_shape) + param_scale * data_bytes * aux_head_params(p.out_shape,
                num_classes, head_rule) + data_bytes * batch * num_classes)
        if open_names and open_mem + p.mem_bytes + head > mem_budget:
            modules.append(open_names)
            open_names, open_mem = [], 0
        open_names.append(p.name)
        open_mem += p.mem_bytes
    modules.append(open_names)
    return modules


def module_memory(profiles: list[AtomProfile], modules: list[list[str]]) -> list[int]:
    """Atom memory summed per module (aux heads not included)."""
    by_name = {p.name: p.mem_bytes for p in profiles}
    return [sum(by_name[n] for n in module) for module in modules]


def digits_cnn_atoms(num_classes: int = 10) -> list[tuple[str, nn.Module]]:
    """The specification's miniature CNN for 8×8 digits: a1 conv 1→16, a2 conv 16→32 + pool, a3 conv 32→32 + pool,
    a4 linear (3×3 convolutions with padding 1, ReLU after each)."""
    return [
        ("a1", nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())),
        ("a2", nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))),
        ("a3", nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))),
        ("a4", nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, num_classes))),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Training objective (spec §2.2)


def aux_head(out_shape: tuple[int, ...], num_classes: int, rule: str = "official") -> nn.Module:
    """The auxiliary classifier on a module output [B, c, h, w] or [B, f].

    ``official``: with w' = ceil(sqrt(C/c)), AdaptiveAvgPool(w'×w') → Flatten → Linear(c·w'², C) when h > w', else
    Flatten → Linear (so global average pooling whenever c ≥ C). ``flatten``: Flatten → Linear on every entry (the
    prototype's choice for small maps, where global pooling did not learn). Its parameters are
    :func:`aux_head_params` under the same rule."""
    if rule not in ("official", "flatten"):
        raise ValueError(f"aux-head rule must be 'official' or 'flatten'; got {rule!r}.")
    if len(out_shape) == 2:
        return nn.Linear(out_shape[1], num_classes)
    _, c, h, w = out_shape
    side = math.ceil(math.sqrt(num_classes / c))
    if rule == "official" and h > side:
        return nn.Sequential(nn.AdaptiveAvgPool2d(side), nn.Flatten(), nn.Linear(c * side * side, num_classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


def regularized_module_loss(z: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, mu: float) -> torch.Tensor:
    """Stage loss of one module (spec §2.2):

        L_m = CE(h_m(z_m), y) + (μ/2) · (1/B) · Σ_i ‖z_{m,i}‖²

    z [B, ...] is the module output, logits [B, C] its auxiliary head's output, y [B]. For the last module pass its
    own logits as ``z`` and ``mu=0``: plain cross-entropy. With a linear head the cross-entropy is convex in z, so
    the μ term makes the per-sample loss μ-strongly convex in the module's output."""
    if mu < 0:
        raise ValueError(f"mu must be >= 0; got {mu}.")
    ce = F.cross_entropy(logits, y)
    if mu == 0:
        return ce
    return ce + 0.5 * mu * z.flatten(1).pow(2).sum(dim=1).mean()


def prophet_mix(stage_loss: torch.Tensor, prophet_loss: torch.Tensor | None, psi: float) -> torch.Tensor:
    """(1 − ψ) · L_stage + ψ · L_prophet; the stage loss alone when the client trains no prophet module."""
    if not 0.0 <= psi <= 1.0:
        raise ValueError(f"psi must be in [0, 1]; got {psi}.")
    if prophet_loss is None:
        return stage_loss
    return (1 - psi) * stage_loss + psi * prophet_loss


def feature_displacement(module: nn.Module, z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm [B] of the module's output change ‖f(z_adv) − f(z)‖₂ (spec §2.3): the server averages it
    over all clients' samples into the next stage's input radius ε_{m+1}."""
    with torch.no_grad():
        return (module(z_adv) - module(z)).flatten(1).norm(dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Coordination (spec §2.4-2.6)


def apa_update(alpha: float, mean_ratio: float, target_ratio: float, eps_quantile: float, step: float = 0.1,
               tolerance: float = 0.05) -> float:
    """Adaptive Perturbation Adjustment (spec §2.4): r̄ = mean clean_acc / adv_acc of the last validations, r* the
    previous stage's best ratio. r̄ > (1 + tol)·r* (robustness lagging) → α + step; r̄ < (1 − tol)·r* →
    max(eps_quantile, α − step); else α."""
    if mean_ratio > (1 + tolerance) * target_ratio:
        return alpha + step
    if mean_ratio < (1 - tolerance) * target_ratio:
        return max(eps_quantile, alpha - step)
    return alpha


def assign_modules(stage: int, mem_avail: list[int], perf: list[float], module_mem: list[int],
                   module_flops: list[int], by_flops: bool = True) -> list[list[int]]:
    """Differentiated Module Assignment (spec §2.5): every client trains module ``stage``; client i also takes the
    following ("prophet") modules while the cumulative FLOPs stay below (perf_i / min perf) · FLOPs(stage) (it
    finishes no later than the slowest client does the stage module; skipped when ``by_flops`` is False) and the
    cumulative memory stays below ``mem_avail[i]``. Returns the module indices per client.

    ``module_mem`` is each module's memory with its own head; the sum charges every module's head and input, where
    the official rule subtracts the boundary features and heads a longer chain replaces: ours is more conservative.
    """
    if len(mem_avail) != len(perf):
        raise ValueError(f"mem_avail and perf must have one entry per client; got {len(mem_avail)} and {len(perf)}.")
    slowest = min(perf)
    out = []
    for mem, speed in zip(mem_avail, perf, strict=True):
        chosen = [stage]
        flops, used = module_flops[stage], module_mem[stage]
        limit = speed / slowest * module_flops[stage]
        for m in range(stage + 1, len(module_mem)):
            if (by_flops and flops + module_flops[m] >= limit) or used + module_mem[m] >= mem:
                break
            chosen.append(m)
            flops += module_flops[m]
            used += module_mem[m]
        out.append(chosen)
    return out


def partial_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Average each tensor over the clients whose state holds it, weighted by their data sizes (spec §2.6): a
    client replies only with what it trained, so a key missing from a reply is not averaged with zeros."""
    if len(states) != len(weights):
        raise ValueError(f"one weight per state; got {len(states)} states and {len(weights)} weights.")
    out: dict[str, torch.Tensor] = {}
    keys = dict.fromkeys(k for s in states for k in s)
    for key in keys:
        held = [(s[key].double(), w) for s, w in zip(states, weights, strict=True) if key in s]
        total = sum(w for _, w in held)
        out[key] = (sum(t * w for t, w in held) / total).to(next(s[key] for s in states if key in s).dtype)
    return out


def stage_lengths(rounds: int, n_stages: int) -> list[int]:
    """Rounds per stage: ``rounds`` split as evenly as possible, earlier stages taking the remainder. Raises when a
    stage would get no round."""
    if rounds < n_stages:
        raise ValueError(f"{rounds} rounds cannot train {n_stages} modules one stage each; give 'rounds' at least "
                         f"{n_stages}, or raise the memory budget for fewer modules.")
    return [rounds // n_stages + (1 if i < rounds % n_stages else 0) for i in range(n_stages)]
