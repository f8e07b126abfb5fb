"""CLAT: criticality-leveraged adversarial training (Gopal, Yang, Zhang, Horton, Chen; Duke; ICML 2025,
arXiv:2408.10204). No official code: written from the specification's equations.

Notation: F_i is the network up to and including layer i (F_0 = x), N_i the number of features F_i outputs per
sample, x′ an adversarial example of x.

    weakness     W(F_i) = (1/N_i) · E_x ‖F_i(x′) − F_i(x)‖₂          (squared norm with ``squared=True``)
    criticality  C_i    = W(F_i) / W(F_{i−1})                         how much layer i amplifies the perturbation
    CLAT loss    L      = CE(F(x), y) + β · (1/#S) · Σ_{i∈S} C_i       on the selected critical layers S only
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _features_and_output(model: nn.Module, x: torch.Tensor, layers: list[nn.Module],
                         ) -> tuple[list[torch.Tensor], torch.Tensor]:
    outputs: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out))
               for k, layer in enumerate(layers)]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [k for k in range(len(layers)) if k not in outputs]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass; list only modules the model calls.")
    return [x] + [outputs[k] for k in range(len(layers))], logits


def layer_features(model: nn.Module, x: torch.Tensor, layers: list[nn.Module]) -> list[torch.Tensor]:
    """[F_0 = x, F_1, …, F_L]: the input and the output of each listed layer (forward hooks), in layer order."""
    return _features_and_output(model, x, layers)[0]


def feature_weakness(f_clean: torch.Tensor, f_adv: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Per-sample weakness [B]: ‖f_adv − f_clean‖₂ (or its square) over the flattened features, divided by N_i."""
    if f_clean.shape != f_adv.shape:
        raise ValueError(f"clean and adversarial features differ in shape: {tuple(f_clean.shape)} vs "
                         f"{tuple(f_adv.shape)}.")
    diff = (f_adv - f_clean).flatten(1)
    norm = diff.square().sum(1) if squared else diff.norm(dim=1)
    return norm / diff.shape[1]


def layer_weakness(features_clean: list[torch.Tensor], features_adv: list[torch.Tensor], squared: bool = False,
                   ) -> torch.Tensor:
    """Weakness of every entry [L + 1] (input included): the batch mean of :func:`feature_weakness`."""
    return torch.stack([feature_weakness(c, a, squared).mean() for c, a in zip(features_clean, features_adv,
                                                                               strict=True)])


def criticality(weakness: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """C_i = W_i / max(W_{i−1}, eps) for i = 1..L: [L]. ``eps`` guards a vanishing denominator."""
    return weakness[1:] / weakness[:-1].clamp_min(eps) if eps > 0 else weakness[1:] / weakness[:-1]


def criticality_index(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, layers: list[nn.Module],
                      squared: bool = False, eps: float = 1e-12, reduce: str = "ratio_of_means") -> torch.Tensor:
    """Criticality of every layer [L] on a batch, without gradients and with the model in eval mode (BatchNorm
    statistics are neither used from the batch nor updated); the model's mode is restored. ``ratio_of_means``
    averages weakness over the batch before the ratio (our reading of the paper); ``mean_of_ratios`` takes the
    ratio per sample first."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean = layer_features(model, x, layers)
            adv = layer_features(model, x_adv, layers)
    finally:
        model.train(was_training)
    if reduce == "ratio_of_means":
        return criticality(layer_weakness(clean, adv, squared), eps)
    if reduce == "mean_of_ratios":
        per_sample = torch.stack([feature_weakness(c, a, squared) for c, a in zip(clean, adv, strict=True)])
        return (per_sample[1:] / per_sample[:-1].clamp_min(eps)).mean(1)
    raise ValueError(f"reduce must be 'ratio_of_means' or 'mean_of_ratios'; got {reduce!r}.")


def top_k_layers(crit: torch.Tensor, k: int, exclude: set[int] | frozenset[int] = frozenset(),
                 largest: bool = True) -> list[int]:
    """Indices (0-based, into the layer list) of the k most critical layers (the k least critical with
    ``largest=False``, a control), excluding ``exclude``, sorted."""
    candidates = [i for i in range(len(crit)) if i not in exclude]
    if not 0 < k <= len(candidates):
        raise ValueError(f"k must lie in [1, {len(candidates)}] (the candidate layers); got {k}.")
    ranked = sorted(candidates, key=lambda i: float(crit[i]), reverse=largest)
    return sorted(ranked[:k])


def select_critical_layers(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, n: int,
                           candidates: list[int] | None = None, layers: list[nn.Module] | None = None) -> list[int]:
    """The n most critical of the ``candidates`` (indices into ``layers``, default ``model.layers``; by default
    every layer but the last, the logits, which CLAT must not select unless asked: minimising the logit layer's
    criticality collapses the outputs)."""
    layers = list(model.layers) if layers is None else layers
    candidates = list(range(len(layers) - 1)) if candidates is None else candidates
    crit = criticality_index(model, x, x_adv, layers)
    return top_k_layers(crit, n, frozenset(range(len(layers))) - set(candidates))


def freeze_except(model: nn.Module, layers: list[nn.Module], keep: list[int]) -> float:
    """Freeze every parameter except those of ``layers[keep]``; BatchNorm layers are put in eval mode so their
    running statistics stay frozen too. Returns the trainable-parameter fraction."""
    for p in model.parameters():
        p.requires_grad_(False)
    for i in keep:
        for p in layers[i].parameters():
            p.requires_grad_(True)
    freeze_batchnorm_statistics(model)
    return trainable_fraction(model)


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics used, not updated); call after ``model.train()``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def trainable_fraction(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def clat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, layers: list[nn.Module],
              selected: list[int], beta: float = 0.1, squared: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """CE on clean inputs plus β times the mean criticality of the selected layers (Stage-2 loss). The
    denominators W_{i−1} are detached: only the selected layers' amplification is pushed down."""
    clean, logits = _features_and_output(model, x, layers)
    adv = layer_features(model, x_adv, layers)
    terms = []
    for i in selected:  # layer i (0-based) has input entry i and output entry i + 1
        w_out = feature_weakness(clean[i + 1], adv[i + 1], squared).mean()
        w_in = feature_weakness(clean[i], adv[i], squared).mean().detach().clamp_min(eps)
        terms.append(w_out / w_in)
    return F.cross_entropy(logits, y) + beta * torch.stack(terms).mean()


SELECTIONS = ("top", "bottom", "random")


def clat_finetune(model: nn.Module, layers: list[nn.Module], x: torch.Tensor, y: torch.Tensor, epochs: int,
                  k: int, beta: float, lr: float, eps: float, alpha: float, steps: int, batch_size: int,
                  generator: torch.Generator, reselect_every: int = 10, exclude: frozenset[int] | None = None,
                  probe_size: int = 256, on_epoch=None, selection: str = "top", augment=None) -> list[dict]:
    """Stage 2 of CLAT: every ``reselect_every`` epochs, measure criticality on ``probe_size`` training samples
    against PGD examples of the current model, select k layers (the logit layer excluded unless ``exclude`` says
    otherwise), freeze the rest (BatchNorm statistics included), then train on :func:`clat_loss` with SGD
    (momentum 0.9).

    ``selection``: ``top`` is CLAT (the k most critical); ``bottom`` (the k least critical) and ``random`` (k
    candidates drawn with ``generator``) are controls with the same loss and budget. ``augment(x, generator)``
    transforms each training batch. Returns one record per selection: epoch, selected layer indices, criticality per
    layer, trainable fraction. ``on_epoch(epoch, model)`` is called after each epoch.
    """
    from replbook.attacks import pgd_ce

    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}; got {selection!r}.")
    exclude = frozenset({len(layers) - 1}) if exclude is None else exclude
    history: list[dict] = []
    optimizer = None
    selected: list[int] = []
    for epoch in range(epochs):
        if epoch % reselect_every == 0:
            probe = torch.randperm(len(x), generator=generator)[:probe_size]
            model.eval()  # the probe attack must not move BatchNorm statistics either
            x_adv = pgd_ce(model, x[probe], y[probe], eps, alpha, steps, generator=generator)
            crit = criticality_index(model, x[probe], x_adv, layers)
            if selection == "random":
                candidates = [i for i in range(len(layers)) if i not in exclude]
                if not 0 < k <= len(candidates):
                    raise ValueError(f"k must lie in [1, {len(candidates)}] (the candidate layers); got {k}.")
                pick = torch.randperm(len(candidates), generator=generator)[:k]
                selected = sorted(candidates[int(j)] for j in pick)
            else:
                selected = top_k_layers(crit, k, exclude, largest=selection == "top")
            fraction = freeze_except(model, layers, selected)
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
            history.append({"epoch": epoch, "selected": selected, "criticality": crit.tolist(),
                             "trainable_fraction": fraction})
        model.train()
        freeze_batchnorm_statistics(model)  # frozen layers keep their statistics through the epoch too
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, generator)
            x_adv = pgd_ce(model, xb, yb, eps, alpha, steps, generator=generator)
            loss = clat_loss(model, xb, yb, x_adv, layers, selected, beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if on_epoch:
            on_epoch(epoch, model)
    for p in model.parameters():
        p.requires_grad_(True)
    return history
