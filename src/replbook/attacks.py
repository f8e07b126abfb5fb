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


def _project_(delta: torch.Tensor, eps: float, norm: str) -> None:
    """:func:`_project` in place."""
    if norm == "inf":
        delta.clamp_(-eps, eps)
    else:
        delta.mul_((eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(
            -1, *([1] * (delta.ndim - 1))))


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
    # In-place updates keep the attack's own buffers to x, delta, x + delta and the gradient: on feature maps
    # (FedProphet's later stages) extra copies would outweigh the module's activations.
    if random_start and eps > 0:
        delta = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device).mul_(2).sub_(1).mul_(eps)
        _project_(delta, eps, norm)
    else:
        delta = torch.zeros_like(x)
    delta.add_(x).clamp_(lo, hi).sub_(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x + delta), delta)
        delta = delta.detach()
        # not in place on grad: autograd may return a broadcast view (e.g. for loss_fn = lambda z: z.sum())
        if norm == "inf":
            delta.add_(grad.sign(), alpha=alpha)
        else:
            delta.add_(grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1))),
                       alpha=alpha)
        del grad
        _project_(delta, eps, norm)
        delta.add_(x).clamp_(lo, hi).sub_(x)
    return (x + delta).detach()


def pgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
           **kwargs) -> torch.Tensor:
    """PGD against the cross-entropy of ``model`` on labels ``y`` (the model's mode is left as it is)."""
    return pgd(lambda z: F.cross_entropy(model(z), y, reduction="sum"), x, eps, alpha, steps, **kwargs)


def _batches(n: int, batch_size: int | None):
    step = n if not batch_size else batch_size
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> float:
    """Clean accuracy, in batches of ``batch_size`` (all at once by default)."""
    correct = sum(int((model(x[s]).argmax(-1) == y[s]).sum()) for s in _batches(len(y), batch_size))
    return correct / len(y)


def robust_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                restarts: int = 1, seed: int = 0, batch_size: int | None = None, **kwargs) -> torch.Tensor:
    """Per sample [B] bool: still classified correctly after PGD with each of ``restarts`` random starts."""
    robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for r in range(restarts):
        gen = torch.Generator().manual_seed(seed + r)
        for s in _batches(len(y), batch_size):
            x_adv = pgd_ce(model, x[s], y[s], eps, alpha, steps, generator=gen, **kwargs)
            with torch.no_grad():
                robust[s] &= model(x_adv).argmax(-1) == y[s]
    return robust


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                    restarts: int = 1, seed: int = 0, batch_size: int | None = None, **kwargs) -> float:
    """Accuracy under PGD with ``restarts`` random starts: a sample counts as robust only if no restart fools it."""
    return float(robust_mask(model, x, y, eps, alpha, steps, restarts, seed, batch_size, **kwargs).float().mean())


STRONG_ATTACKS = ("apgd", "autoattack")


def strong_robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, method: str = "apgd",
                           steps: int = 100, num_classes: int = 10, seed: int = 0,
                           batch_size: int | None = None, robust: torch.Tensor | None = None) -> float:
    """L∞ robust accuracy under the attacks of AutoAttack (Croce & Hein 2020), through the ``torchattacks`` package
    (the official ``autoattack`` package is not on PyPI). ``apgd``: APGD on the cross-entropy, then APGD on the
    DLR loss, per-sample worst case; ``autoattack``: the standard ensemble (APGD-CE, APGD-T, FAB-T, Square).
    ``robust`` [B] bool, e.g. :func:`robust_mask` of a PGD run on the same images, makes the result the worst case
    over that attack too (only its survivors are attacked). The model is evaluated in eval mode."""
    if method not in STRONG_ATTACKS:
        raise ValueError(f"method must be one of {STRONG_ATTACKS}; got {method!r}.")
    needed = 3 if method == "apgd" else 4  # the DLR loss reads the third (targeted: fourth) largest logit
    if num_classes < needed:
        raise ValueError(f"the {method} evaluation's DLR loss needs at least {needed} classes; got num_classes = "
                         f"{num_classes}.")
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError("the strong evaluation needs torchattacks; install it with "
                          "`pip install --no-deps torchattacks==3.5.1` (its torchvision requirement would pull a "
                          "CUDA torch), or set strong_eval to 'none'.") from err
    was_training = model.training
    model.eval()
    try:
        if method == "apgd":
            attack_list = [torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, loss=loss, seed=seed)
                           for loss in ("ce", "dlr")]
        else:
            attack_list = [torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard",
                                                   n_classes=num_classes, seed=seed)]
        robust = (torch.ones(len(y), dtype=torch.bool, device=y.device) if robust is None
                  else robust.clone().to(y.device))
        with torch.no_grad():
            robust &= torch.cat([model(x[s]).argmax(-1) == y[s] for s in _batches(len(y), batch_size)])
        for s in _batches(len(y), batch_size):
            for attack in attack_list:
                keep = robust[s].clone()
                if not keep.any():
                    break
                idx = torch.arange(s.start, s.stop, device=y.device)[keep]
                x_adv = attack(x[idx], y[idx])
                with torch.no_grad():
                    robust[idx] = model(x_adv).argmax(-1) == y[idx]
    finally:
        model.train(was_training)
    return float(robust.float().mean())


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                beta: float = 6.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES (Zhang et al. 2019): CE(f(x), y) + β · KL(p(x) ‖ p(x′)), with x′ the PGD maximiser of that KL in the
    ε-ball (started uniformly in the ball; the TRADES code starts at x + 0.001·N(0, 1)). Batch means."""
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=-1)
    x_adv = pgd(lambda z: F.kl_div(F.log_softmax(model(z), dim=-1), p_clean, reduction="sum"), x, eps, alpha, steps,
                generator=generator)
    logits = model(x)
    robust = F.kl_div(F.log_softmax(model(x_adv), dim=-1), F.softmax(logits, dim=-1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * robust


def adversarial_train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                            eps: float, alpha: float, steps: int, batch_size: int, generator: torch.Generator,
                            loss: str = "pgd", trades_beta: float = 6.0,
                            augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                            ) -> float:
    """One epoch over shuffled batches of PGD adversarial training (Madry et al. 2018; ``loss="pgd"``) or TRADES
    (``loss="trades"``), with an optional batch augmentation; returns the mean loss."""
    if loss not in ("pgd", "trades"):
        raise ValueError(f"loss must be 'pgd' or 'trades'; got {loss!r}.")
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator)
        if loss == "pgd":
            x_adv = pgd_ce(model, xb, yb, eps, alpha, steps, generator=generator)
            value = F.cross_entropy(model(x_adv), yb)
        else:
            value = trades_loss(model, xb, yb, eps, alpha, steps, trades_beta, generator)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        total += float(value.detach()) * len(idx)
    return total / len(x)
