import pytest
import torch
from torch import nn

from replbook.attacks import accuracy, pgd, pgd_ce, robust_accuracy


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_stays_in_the_ball_and_the_data_range(norm):
    model, x, y = linear_model(), torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    x_adv = pgd_ce(model, x, y, eps=0.1, alpha=0.05, steps=5, norm=norm, generator=torch.Generator().manual_seed(1))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    assert (size <= 0.1 + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_increases_the_loss_and_is_reproducible():
    model, x, y = linear_model(), torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,))
    loss = nn.CrossEntropyLoss()
    a = pgd_ce(model, x, y, 0.1, 0.02, 10, generator=torch.Generator().manual_seed(3))
    b = pgd_ce(model, x, y, 0.1, 0.02, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert loss(model(a), y) > loss(model(x), y)


def test_linear_loss_is_maximised_at_the_linf_corner():
    w = torch.tensor([[1.0, -2.0, 0.5]])
    x = torch.full((1, 3), 0.5)
    x_adv = pgd(lambda z: (z * w).sum(), x, eps=0.1, alpha=0.05, steps=4, random_start=False)
    assert torch.allclose(x_adv, x + 0.1 * w.sign())


def test_zero_radius_returns_the_input_and_bad_arguments_raise():
    model, x, y = linear_model(), torch.rand(4, 1, 4, 4), torch.randint(0, 3, (4,))
    assert torch.equal(pgd_ce(model, x, y, 0.0, 0.01, 3), x)
    with pytest.raises(ValueError, match="norm must be"):
        pgd_ce(model, x, y, 0.1, 0.01, 3, norm="1")
    assert robust_accuracy(model, x, y, 0.0, 0.01, 2, restarts=2) == accuracy(model, x, y)


def test_batched_evaluation_equals_one_batch():
    model, x, y = linear_model(), torch.rand(30, 1, 4, 4), torch.randint(0, 3, (30,))
    assert accuracy(model, x, y, batch_size=7) == pytest.approx(accuracy(model, x, y))
    assert robust_accuracy(model, x, y, 0.2, 0.05, 5, batch_size=30) == robust_accuracy(model, x, y, 0.2, 0.05, 5)


def test_trades_loss_is_the_cross_entropy_plus_a_nonnegative_kl():
    from replbook.attacks import trades_loss

    model, x, y = linear_model(), torch.rand(16, 1, 4, 4), torch.randint(0, 3, (16,))
    ce = nn.functional.cross_entropy(model(x), y)
    gen = torch.Generator().manual_seed(0)
    assert trades_loss(model, x, y, 0.1, 0.02, 3, beta=0.0, generator=gen).item() == pytest.approx(ce.item())
    with_kl = trades_loss(model, x, y, 0.1, 0.02, 3, beta=6.0, generator=gen)
    assert with_kl.item() > ce.item()  # the attack finds a point whose prediction differs
    with_kl.backward()
    assert model[1].weight.grad is not None


def test_strong_evaluation_is_no_weaker_than_pgd_and_exact_on_a_constant_model():
    from replbook.attacks import strong_robust_accuracy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 3, (40,))
    with torch.no_grad():
        y = model(x).argmax(-1)  # all correct before the attack
    strong = strong_robust_accuracy(model, x, y, 0.3, "apgd", steps=20, num_classes=3, batch_size=16)
    assert strong <= robust_accuracy(model, x, y, 0.3, 0.075, 10) + 0.05 and strong < 1.0
    const = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    yc = torch.tensor([1, 0] * 10)
    assert strong_robust_accuracy(const, torch.rand(20, 1, 4, 4), yc, 0.3, "apgd", 10, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="method"):
        strong_robust_accuracy(model, x, y, 0.3, "fgsm")


def test_autoattack_path_runs_and_cannot_fool_a_constant_model():
    from replbook.attacks import strong_robust_accuracy

    const = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.5]))
    y = torch.tensor([1, 1, 1, 0])
    acc = strong_robust_accuracy(const, torch.rand(4, 1, 4, 4), y, 0.1, "autoattack", num_classes=4)
    assert acc == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 4 classes"):
        strong_robust_accuracy(const, torch.rand(4, 1, 4, 4), y, 0.1, "autoattack", num_classes=3)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_takes_a_loss_whose_gradient_is_a_broadcast_view(norm):
    # the gradient of z.sum() is an expanded view of one number: the update must not write into it
    x = torch.full((2, 3), 0.5)
    adv = pgd(lambda z: z.sum(), x, eps=0.1, alpha=0.05, steps=2, norm=norm, random_start=False)
    assert (adv >= x).all() and (adv > x).any()
