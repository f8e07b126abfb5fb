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
