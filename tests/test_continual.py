"""EWC and LwF kernels (replbook.continual) against hand-worked cases."""

import math

import pytest
import torch
from torch import nn

from replbook import continual


def zero_linear() -> nn.Linear:
    model = nn.Linear(2, 2, bias=False)
    nn.init.zeros_(model.weight)
    return model


def test_fisher_diagonal_by_hand():
    # W = 0: p = (½, ½); argmax picks class 0; ∂ log p_0 / ∂W = (e_0 − p) xᵀ, squared: ¼ x² in both rows
    inputs = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    fisher = continual.fisher_diagonal(zero_linear(), inputs, labels="argmax")
    expected = 0.25 * torch.tensor([2.5, 2.0])  # ¼ · mean(x²) = ¼ · ([1, 4] + [4, 0]) / 2
    torch.testing.assert_close(fisher["weight"], expected.expand(2, 2))
    # with W = 0 every label gives the same squares, so the sampled (true) Fisher is the same
    sampled = continual.fisher_diagonal(zero_linear(), inputs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled["weight"], expected.expand(2, 2))


def test_fisher_is_normalised_per_output_position():
    # a 1×1 convolution over two pixels, the second one zero: only pixel 0 has a gradient, ¼ x², divided by 2 pixels
    conv = nn.Conv2d(2, 2, 1, bias=False)
    nn.init.zeros_(conv.weight)
    x = torch.tensor([[[1.0, 0.0]], [[2.0, 0.0]]])  # [C=2, H=1, W=2]
    fisher = continual.fisher_diagonal(conv, x[None], labels="argmax")
    expected = 0.25 * torch.tensor([1.0, 4.0]) / 2
    torch.testing.assert_close(fisher["weight"][:, :, 0, 0], expected.expand(2, 2))


def test_fisher_is_per_example_not_per_batch():
    # two inputs whose gradients cancel in a batch: the per-example Fisher keeps both squares
    inputs = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    fisher = continual.fisher_diagonal(zero_linear(), inputs, labels="argmax")
    assert fisher["weight"][0, 0] == pytest.approx(0.25)


def test_fisher_errors():
    with pytest.raises(ValueError, match="labels"):
        continual.fisher_diagonal(zero_linear(), torch.zeros(1, 2), labels="true")
    with pytest.raises(ValueError, match="at least one input"):
        continual.fisher_diagonal(zero_linear(), torch.zeros(0, 2))


def test_ewc_penalty_by_hand_and_its_gradient():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    fisher = {"weight": torch.tensor([[1.0, 2.0]])}
    anchor = {"weight": torch.zeros(1, 2)}
    penalty = continual.ewc_penalty(model, fisher, anchor)
    assert penalty.item() == pytest.approx(0.5 * (1 + 2))
    penalty.backward()
    torch.testing.assert_close(model.weight.grad, torch.tensor([[1.0, 2.0]]))  # F (θ − θ*)
    with pytest.raises(KeyError, match="not in the model"):
        continual.ewc_penalty(model, {"bias": torch.zeros(1)}, anchor)


def test_merge_fishers_sums():
    a, b = {"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}
    assert continual.merge_fishers(None, a)["w"].item() == 1.0
    assert continual.merge_fishers(a, b)["w"].item() == 3.0


def test_distillation_loss_by_hand():
    teacher = torch.zeros(1, 2, 1, 1)  # p = (½, ½)
    student = torch.tensor([math.log(3.0), 0.0]).reshape(1, 2, 1, 1)  # q = (¾, ¼)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert continual.distillation_loss(student, teacher, 1.0).item() == pytest.approx(kl, rel=1e-5)
    # at T = 2 the same softened distributions, scaled by T²
    assert continual.distillation_loss(2 * student, teacher, 2.0).item() == pytest.approx(4 * kl, rel=1e-5)
    assert continual.distillation_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_differentiates_the_student_only():
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4, requires_grad=True)
    continual.distillation_loss(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="differ in shape"):
        continual.distillation_loss(student, teacher[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        continual.distillation_loss(student, teacher, 0.0)
