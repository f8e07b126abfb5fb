"""Adversarial attacks shared by the chapters (CLAT, FedProphet, LoBAM's evaluation).

Projected gradient descent (Madry et al. 2018): from a random start in the ε-ball, take ``steps`` signed-gradient
(L∞) or normalised-gradient (L2) ascent steps of size ``alpha`` on a loss, projecting back onto the ball and the
data range after each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "inf":
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / flat).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.ndim - 1)))


def pgd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float, alpha: float, steps: int,
        norm: str = "inf", bounds: tuple[float, float] = (0.0, 1.0), random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """An adversarial example [B, ...] that maximises ``loss_fn(x_adv)`` (a scalar) within ‖x_adv − x‖ ≤ eps.

    Args:
        loss_fn: maps a batch to the scalar loss to increase (e.g. the summed cross-entropy).
        x: clean inputs inside ``bounds``.
        eps, alpha, steps: radius, step size and number of steps.
        norm: "inf" or "2".
        bounds: the data range the result is clamped to.
        random_start: start uniformly in the L∞ ball (or a random direction of the L2 ball).
        generator: makes the random start reproducible.
    """
    if norm not in ("inf", "2"):
        raise ValueError(f"norm must be 'inf' or '2'; got {norm!r}.")
    if eps < 0 or alpha <= 0 or steps < 0:
        raise ValueError(f"need eps >= 0, alpha > 0 and steps >= 0; got eps={eps}, alpha={alpha}, steps={steps}.")
    lo, hi = bounds
    x = x.detach()
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
        delta = _project(noise * eps, eps, norm)
    else:
        delta = torch.zeros_like(x)
    delta = ((x + delta).clamp(lo, hi) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x + delta), delta)
        if norm == "inf":
            step = grad.sign()
        else:
            step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
        delta = _project(delta.detach() + alpha * step, eps, norm)
        delta = ((x + delta).clamp(lo, hi) - x).detach()
    return (x + delta).detach()


def pgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
           **kwargs) -> torch.Tensor:
    """PGD against the cross-entropy of ``model`` on labels ``y`` (the model's mode is left as it is)."""
    return pgd(lambda z: F.cross_entropy(model(z), y, reduction="sum"), x, eps, alpha, steps, **kwargs)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(-1) == y).float().mean())


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                    restarts: int = 1, seed: int = 0, **kwargs) -> float:
    """Accuracy under PGD with ``restarts`` random starts: a sample counts as robust only if no restart fools it."""
    robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for r in range(restarts):
        gen = torch.Generator().manual_seed(seed + r)
        x_adv = pgd_ce(model, x, y, eps, alpha, steps, generator=gen, **kwargs)
        with torch.no_grad():
            robust &= model(x_adv).argmax(-1) == y
    return float(robust.float().mean())


def adversarial_train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                            eps: float, alpha: float, steps: int, batch_size: int, generator: torch.Generator,
                            ) -> float:
    """One epoch of PGD adversarial training (Madry et al. 2018) over shuffled batches; returns the mean loss."""
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        x_adv = pgd_ce(model, x[idx], y[idx], eps, alpha, steps, generator=generator)
        loss = F.cross_entropy(model(x_adv), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)
