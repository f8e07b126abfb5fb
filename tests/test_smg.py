"""SMG-Learning kernels (replbook.smg) against the specification's worked examples (papers/smg.md §6) and the
Taylor relation between the dual meta-objective and the explicit PGA objective."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from replbook import smg


class Scalar(nn.Module):
    """One weight θ; the output is θ everywhere, so with a half squared error the loss is ½(θ − y)²."""

    def __init__(self, theta: float = 0.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=torch.float64))

    def forward(self, x):
        return self.theta * torch.ones_like(x)


def half_sq(out, y):
    return 0.5 * ((out - y) ** 2).mean()


def _b(y: float):
    return torch.zeros(1, dtype=torch.float64), torch.tensor([y], dtype=torch.float64)


D, R = _b(1.0), _b(-1.0)  # L_D = ½(θ − 1)², L_R = ½(θ + 1)²


def test_worked_example_e1_taylor_gap():
    model = Scalar(0.0)
    terms = smg.alignment_terms(model, half_sq, D, R, D, R)
    assert terms["g_D"].item() == -1 and terms["g_R"].item() == 1 and terms["ip_o"].item() == -1
    for alpha, gap in ((0.1, 0.005), (0.05, 0.00125)):
        explicit = smg.pga_objective(model, half_sq, D, R, D, R, alpha=alpha, beta=alpha, lam_a=0.0)
        meta = smg.dual_meta_objective(model, half_sq, D, R, D, R, alpha=alpha, beta=alpha, lam_a=0.0)
        assert explicit.item() == pytest.approx(1.0 + alpha)
        assert meta.item() == pytest.approx(0.5 + 0.5 * (alpha + 1) ** 2)
        assert (meta - explicit).item() == pytest.approx(gap)


def test_worked_example_e2_aligned_gradients_are_rewarded():
    model = Scalar(0.0)
    value = smg.pga_objective(model, half_sq, D, D, D, D, alpha=0.1, beta=0.1, lam_a=0.0)
    assert value.item() == pytest.approx(0.9)


def test_first_order_drops_exactly_the_hessian_term():
    """d/dθ [L_D(θ) + L_R(θ − α g_D)] at θ = 0, α = 0.1: second order −1 + (1 − α·H_D)·L_R'(θ') = −1 + 0.9·1.1;
    first order −1 + L_R'(θ') = −1 + 1.1 (θ' = 0.1, H_D = 1)."""
    for first_order, expected in ((False, -1 + 0.9 * 1.1), (True, -1 + 1.1)):
        model = Scalar(0.0)
        smg.meta_term(model, half_sq, D, R, 0.1, first_order=first_order).backward()
        assert model.theta.grad.item() == pytest.approx(expected)


def test_inner_products_on_a_linear_model_by_hand():
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
    f64 = dict(dtype=torch.float64)
    xd, yd = torch.tensor([[1.0, 0.0], [0.0, 1.0]], **f64), torch.tensor([[0.0], [0.0]], **f64)
    xr, yr = torch.tensor([[1.0, 1.0]], **f64), torch.tensor([[1.0]], **f64)
    terms = smg.alignment_terms(model, half_sq, (xd, yd), (xr, yr), (xd, yd), (xr, yr))
    # L = ½ mean((w·x − y)²) → g = mean((w·x − y) x): g_D = ½([1, 0]·1 + [0, 1]·(−2)) = [0.5, −1]; g_R = (−1 − 1)[1, 1]
    torch.testing.assert_close(terms["g_D"], torch.tensor([0.5, -1.0], dtype=torch.float64))
    torch.testing.assert_close(terms["g_R"], torch.tensor([-2.0, -2.0], dtype=torch.float64))
    assert terms["ip_o"].item() == pytest.approx(0.5 * -2 + -1 * -2)
    assert terms["ip_a"].item() == pytest.approx(terms["ip_o"].item())


def _mlp_and_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    batches = [(torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))) for _ in range(4)]
    return model, batches, nn.functional.cross_entropy


def test_meta_objective_matches_pga_to_second_order():
    """The gap shrinks about 4× per halving of α = β (O(α²))."""
    model, (d, r, a, b), ce = _mlp_and_batches()
    gaps = []
    for alpha in (0.2, 0.1, 0.05, 0.025):
        meta = smg.dual_meta_objective(model, ce, d, r, a, b, alpha=alpha, beta=alpha)
        explicit = smg.pga_objective(model, ce, d, r, a, b, alpha=alpha, beta=alpha)
        gaps.append(abs((meta - explicit).item()))
    ratios = [gaps[i] / gaps[i + 1] for i in range(3)]
    assert all(3.3 < q < 4.7 for q in ratios), ratios


def test_meta_gradient_is_close_to_the_pga_gradient():
    model, (d, r, a, b), ce = _mlp_and_batches()
    params = [p for p in model.parameters()]
    g_meta = smg.flat_grad(smg.dual_meta_objective(model, ce, d, r, a, b, alpha=0.01, beta=0.01), params)
    g_pga = smg.flat_grad(smg.pga_objective(model, ce, d, r, a, b, alpha=0.01, beta=0.01), params)
    cos = (g_meta @ g_pga / (g_meta.norm() * g_pga.norm())).item()
    assert cos > 0.999
    # and the alignment terms matter: without them the gradient differs more
    g_plain = smg.flat_grad(smg.pga_objective(model, ce, d, r, a, b, alpha=0.0, beta=0.0), params)
    assert (g_meta - g_pga).norm() < (g_meta - g_plain).norm()


def test_random_site_split_covers_the_six_partitions_of_three_sites():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(300):
        a, b = smg.random_site_split([3, 1, 2], g)
        assert a and b and not set(a) & set(b) and set(a) | set(b) == {1, 2, 3}
        seen.add((tuple(a), tuple(b)))
    assert len(seen) == 6
    with pytest.raises(ValueError, match="at least two sites"):
        smg.random_site_split([1], g)


@pytest.mark.parametrize("objective", smg.OBJECTIVES)
def test_smg_step_trains_every_objective(objective):
    model, (d, r1, r2, _), ce = _mlp_and_batches()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    out = smg.smg_step(model, opt, ce, d, {1: r1, 2: r2}, 3, objective=objective, alpha=0.1, beta=0.1,
                       generator=torch.Generator().manual_seed(0))
    assert out["loss"] > 0
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    if objective in ("arbitrary", "pga"):
        assert sorted(out["A"] + out["B"]) == [1, 2, 3]


def test_smg_objective_values_by_definition():
    model, (d, r1, r2, _), ce = _mlp_and_batches()
    replay = {1: r1, 2: r2}
    R = (torch.cat([r1[0], r2[0]]), torch.cat([r1[1], r2[1]]))
    mix = smg.smg_objective(model, ce, d, replay, 3, objective="mix", alpha=0.1, beta=0.1,
                            generator=torch.Generator())["loss"]
    assert mix.item() == pytest.approx((smg.batch_loss(model, ce, d) + smg.batch_loss(model, ce, R)).item())
    orient = smg.smg_objective(model, ce, d, replay, 3, objective="orientational", alpha=0.1, beta=0.1,
                               generator=torch.Generator())["loss"]
    assert orient.item() == pytest.approx(smg.meta_term(model, ce, d, R, 0.1).item())
    only_current = smg.smg_objective(model, ce, d, {}, 0, objective="pga", alpha=0.1, beta=0.1,
                                     generator=torch.Generator())["loss"]
    assert only_current.item() == pytest.approx(smg.batch_loss(model, ce, d).item())
    with pytest.raises(ValueError, match="objective"):
        smg.smg_objective(model, ce, d, replay, 3, objective="sga", alpha=0.1, beta=0.1, generator=torch.Generator())
    with pytest.raises(ValueError, match="both current and replayed"):
        smg.smg_objective(model, ce, d, replay, 1, objective="mix", alpha=0.1, beta=0.1, generator=torch.Generator())
