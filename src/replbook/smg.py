"""SMG-Learning (arXiv:2406.18037): parallel gradient alignment (PGA) and its dual meta-objectives.

No official code exists (the repository github.com/dyxu-cuhkcse/SMG-Learning holds a README only); the formulas are
the specification's reconstruction (papers/smg.md §2.2, tagged [recon]) from the abstract and the MICCAI-2022
predecessor, to be checked against the paper. With θ the segmenter's weights, L_X(θ) the loss on batch X and
g_X = ∇_θ L_X(θ):

* orientational alignment IP_o = ⟨g_D, g_R⟩ between the current site's batch D and the replayed past sites' R;
* arbitrary alignment IP_a = ⟨g_A, g_B⟩ between a random split of the seen sites into meta-train A and meta-test B;
* PGA objective:      L_D + L_R − λ_o·α·IP_o + λ_a·(L_A + L_B − β·IP_a)             (:func:`pga_objective`)
* dual meta-objective: L_D(θ) + L_R(θ − α g_D) + λ_a·(L_A(θ) + L_B(θ − β g_A))      (:func:`dual_meta_objective`)

A first-order Taylor step, L(θ − α g) = L(θ) − α⟨g, ∇L(θ)⟩ + O(α²), makes the two equal up to O(α², β²) (with
λ_o = 1); the meta form needs no explicit inner products. Batches are ``(inputs, targets)``; ``loss_fn(model(inputs),
targets)`` is a scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
#: Training objectives of the SMG chapter's arms: plain mixing L_D + L_R; orientational only (M_o); arbitrary only
#: (L_D + L_R + λ_a·M_a); both (M_o + λ_a·M_a, the SMG objective).
OBJECTIVES = ("mix", "orientational", "arbitrary", "pga")


def _trainable(model: nn.Module) -> tuple[list[str], list[Tensor]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters.")
    return [n for n, _ in named], [p for _, p in named]


def batch_loss(model: nn.Module, loss_fn: LossFn, batch: Batch, params: dict[str, Tensor] | None = None) -> Tensor:
    """L_X(θ) for batch X = (inputs, targets); with ``params`` the model runs on those weights instead of its own
    (``torch.func.functional_call``; weights not named keep the module's values)."""
    inputs, targets = batch
    out = model(inputs) if params is None else functional_call(model, params, (inputs,))
    return loss_fn(out, targets)


def flat_grad(loss: Tensor, params: Sequence[Tensor], *, create_graph: bool = False) -> Tensor:
    """∇ loss with respect to ``params``, concatenated into one vector [P] (zeros where a parameter is unused)."""
    grads = torch.autograd.grad(loss, list(params), create_graph=create_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params,
                                                                                           strict=True)])


def alignment_terms(model: nn.Module, loss_fn: LossFn, D: Batch, R: Batch, A: Batch, B: Batch,
                    *, create_graph: bool = False) -> dict[str, Tensor]:
    """Every term of the PGA objective, explicitly: L_X and g_X for X ∈ {D, R, A, B}, IP_o = ⟨g_D, g_R⟩ and
    IP_a = ⟨g_A, g_B⟩. ``create_graph=True`` keeps the graph through the gradients (double backprop)."""
    _, params = _trainable(model)
    out: dict[str, Tensor] = {}
    for name, batch in (("D", D), ("R", R), ("A", A), ("B", B)):
        loss = batch_loss(model, loss_fn, batch)
        out[f"L_{name}"] = loss
        out[f"g_{name}"] = flat_grad(loss, params, create_graph=create_graph)
    out["ip_o"] = out["g_D"] @ out["g_R"]
    out["ip_a"] = out["g_A"] @ out["g_B"]
    return out


def pga_objective(model: nn.Module, loss_fn: LossFn, D: Batch, R: Batch, A: Batch, B: Batch, *, alpha: float,
                  beta: float, lam_o: float = 1.0, lam_a: float = 1.0) -> Tensor:
    """L_D + L_R − λ_o·α·⟨g_D, g_R⟩ + λ_a·(L_A + L_B − β·⟨g_A, g_B⟩): a scalar whose gradient reaches the model's
    parameters through the inner products (double backprop: Hessian–gradient products)."""
    t = alignment_terms(model, loss_fn, D, R, A, B, create_graph=True)
    return t["L_D"] + t["L_R"] - lam_o * alpha * t["ip_o"] + lam_a * (t["L_A"] + t["L_B"] - beta * t["ip_a"])


def meta_term(model: nn.Module, loss_fn: LossFn, train: Batch, test: Batch, step: float, *,
              first_order: bool = False) -> Tensor:
    """L_train(θ) + L_test(θ − step·g_train): one inner SGD step on ``train``, evaluated on ``test`` (MLDG). With
    ``first_order`` the inner gradient is a constant: the outer gradient drops its Hessian–gradient term."""
    names, params = _trainable(model)
    inner_loss = batch_loss(model, loss_fn, train)
    grads = torch.autograd.grad(inner_loss, params, create_graph=not first_order, retain_graph=True,
                                allow_unused=True)
    stepped = {}
    for n, p, g in zip(names, params, grads, strict=True):
        if g is None:
            stepped[n] = p
            continue
        stepped[n] = p - step * (g.detach() if first_order else g)
    return inner_loss + batch_loss(model, loss_fn, test, stepped)


def dual_meta_objective(model: nn.Module, loss_fn: LossFn, D: Batch, R: Batch, A: Batch, B: Batch, *, alpha: float,
                        beta: float, lam_a: float = 1.0, first_order: bool = False) -> Tensor:
    """M_o + λ_a·M_a with M_o = L_D(θ) + L_R(θ − α g_D) (meta-train on the new site, meta-test on the replayed ones)
    and M_a = L_A(θ) + L_B(θ − β g_A) (a random split of the seen sites); equals :func:`pga_objective` with λ_o = 1
    up to O(α², β²)."""
    m_o = meta_term(model, loss_fn, D, R, alpha, first_order=first_order)
    m_a = meta_term(model, loss_fn, A, B, beta, first_order=first_order)
    return m_o + lam_a * m_a


def random_site_split(site_ids: Sequence[int], generator: torch.Generator) -> tuple[list[int], list[int]]:
    """A uniformly random ordered split of the seen sites into non-empty, disjoint meta-train A and meta-test B
    (for sites {1, 2, 3}: one of the six ordered partitions). Needs at least two sites."""
    sites = sorted(set(site_ids))
    if len(sites) < 2:
        raise ValueError(f"random_site_split needs at least two sites; got {sites}. With one site, split its "
                         f"images (or augmentations) instead.")
    # a non-empty proper subset as a bit mask, uniform over the 2^n − 2 choices
    mask = int(torch.randint(1, 2 ** len(sites) - 1, (1,), generator=generator))
    a = [s for i, s in enumerate(sites) if mask >> i & 1]
    b = [s for i, s in enumerate(sites) if not mask >> i & 1]
    return a, b


def _cat(batches: Sequence[Batch]) -> Batch:
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def smg_objective(model: nn.Module, loss_fn: LossFn, current: Batch, replay: dict[int, Batch], current_site: int,
                  *, objective: str, alpha: float, beta: float, lam_a: float = 1.0, first_order: bool = False,
                  generator: torch.Generator) -> dict[str, Tensor]:
    """The training objective of one iteration for one arm: D = the current site's batch, R = the replayed batches of
    the past sites (concatenated), A/B = the batches of a random split of all seen sites (current and replayed).

    ``objective``: "mix" (L_D + L_R), "orientational" (M_o), "arbitrary" (L_D + L_R + λ_a·M_a) or "pga"
    (M_o + λ_a·M_a). Without replay every objective is plain L_D (a single site cannot be split). Returns
    ``{"loss": the objective}``, plus ``"split"`` (A's and B's sites as two tensors) when a split was drawn."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if not replay:
        return {"loss": batch_loss(model, loss_fn, current)}
    if current_site in replay:
        raise ValueError(f"site {current_site} is both current and replayed.")
    R = _cat(list(replay.values()))
    by_site = {current_site: current, **replay}
    if objective == "mix":
        return {"loss": batch_loss(model, loss_fn, current) + batch_loss(model, loss_fn, R)}
    out: dict[str, Tensor] = {}
    if objective in ("arbitrary", "pga"):
        a_sites, b_sites = random_site_split(list(by_site), generator)
        A, B = _cat([by_site[s] for s in a_sites]), _cat([by_site[s] for s in b_sites])
        m_a = meta_term(model, loss_fn, A, B, beta, first_order=first_order)
        out["split"] = (torch.tensor(a_sites), torch.tensor(b_sites))
    if objective == "orientational":
        out["loss"] = meta_term(model, loss_fn, current, R, alpha, first_order=first_order)
    elif objective == "arbitrary":
        out["loss"] = batch_loss(model, loss_fn, current) + batch_loss(model, loss_fn, R) + lam_a * m_a
    else:
        out["loss"] = meta_term(model, loss_fn, current, R, alpha, first_order=first_order) + lam_a * m_a
    return out


def smg_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, current: Batch,
             replay: dict[int, Batch], current_site: int, **objective_kwargs) -> dict[str, float]:
    """One training iteration: the arm's objective (:func:`smg_objective`, keyword arguments passed on), its gradient
    (second order unless ``first_order``), one optimiser step. Returns the loss and the split as plain numbers."""
    optimizer.zero_grad()
    out = smg_objective(model, loss_fn, current, replay, current_site, **objective_kwargs)
    out["loss"].backward()
    optimizer.step()
    record: dict[str, float | list[int]] = {"loss": out["loss"].item()}
    if "split" in out:
        record["A"], record["B"] = (t.tolist() for t in out["split"])
    return record
