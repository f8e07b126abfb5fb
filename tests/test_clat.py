"""CLAT kernels against the specification's worked examples (E1-E3) and properties."""

import pytest
import torch
from torch import nn

from replbook import clat


def test_e1_criticality_from_given_displacements():
    clean = [torch.zeros(1, 2), torch.zeros(1, 4), torch.zeros(1, 1)]
    adv = [torch.tensor([[0.3, 0.4]]), torch.tensor([[0.6, 0.8, 0.0, 0.0]]), torch.tensor([[3.0]])]
    w = clat.layer_weakness(clean, adv)
    assert torch.allclose(w, torch.tensor([0.25, 0.25, 3.0]))
    assert torch.allclose(clat.criticality(w), torch.tensor([1.0, 12.0]))
    w2 = clat.layer_weakness(clean, adv, squared=True)
    assert torch.allclose(w2, torch.tensor([0.125, 0.25, 9.0]))
    assert torch.allclose(clat.criticality(w2), torch.tensor([2.0, 36.0]))
    crit = clat.criticality(w)
    assert clat.top_k_layers(crit, 1) == [1]
    assert clat.top_k_layers(crit, 1, exclude={1}) == [0]  # the logit layer excluded


def test_e2_a_linear_layer_scores_its_gain():
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(2 * torch.eye(2))
    model = nn.Sequential(layer)
    x, x_adv = torch.rand(5, 2), torch.rand(5, 2)
    assert clat.criticality_index(model, x, x_adv, [layer]).item() == pytest.approx(2.0)
    assert clat.criticality_index(model, x, x_adv, [layer], squared=True).item() == pytest.approx(4.0)
    assert clat.criticality_index(model, x, x_adv, [layer], reduce="mean_of_ratios").item() == pytest.approx(2.0)


def test_e3_parameter_fraction_of_a_uniform_mlp():
    widths = [64, 128, 128, 128, 128, 128, 10]
    layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)]
    model = nn.Sequential(*layers)
    assert sum(p.numel() for p in model.parameters()) == 75_658
    assert clat.freeze_except(model, layers, [2, 3]) == pytest.approx(33_024 / 75_658)


def test_scaling_every_displacement_leaves_criticality_unchanged_and_a_still_layer_is_zero():
    clean = [torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 2)]
    adv = [torch.rand(3, 4), torch.rand(3, 5), torch.zeros(3, 2)]
    w = clat.layer_weakness(clean, adv)
    assert w[-1] == 0  # this layer's output does not move
    scaled = clat.layer_weakness(clean, [a * 7 for a in adv])
    assert torch.allclose(clat.criticality(scaled), clat.criticality(w))


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_clat_step_changes_only_the_selected_layers_and_freezes_batchnorm_statistics():
    model = small_cnn()
    layers = [model[0], model[3], model[6]]
    x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 3, (8,))
    x_adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    model.train()
    selected = clat.select_critical_layers(model, x, x_adv, 1, layers=layers)  # logits excluded by default
    assert selected in ([0], [1])
    fraction = clat.freeze_except(model, layers, selected)
    assert 0 < fraction < 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = clat.clat_loss(model, x, y, x_adv, layers, selected, beta=0.1)
    loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    chosen = {f"{[0, 3, 6][selected[0]]}.weight", f"{[0, 3, 6][selected[0]]}.bias"}
    assert changed == chosen  # BatchNorm running statistics included: frozen


def test_layers_that_do_not_run_are_reported():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"layers \[1\] did not run"):
        clat.layer_features(model, torch.rand(2, 1, 6, 6), [model[0], nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="k must lie in"):
        clat.top_k_layers(torch.tensor([1.0, 2.0]), 3)


def test_criticality_pass_leaves_batchnorm_statistics_and_the_mode_alone():
    model = small_cnn().train()
    stats = model[1].running_mean.clone()
    clat.criticality_index(model, torch.rand(8, 1, 6, 6), torch.rand(8, 1, 6, 6), [model[0], model[3]])
    assert torch.equal(model[1].running_mean, stats) and model.training


def test_the_logit_layer_is_selected_only_when_asked():
    model = small_cnn()
    layers = [model[0], model[3], model[6]]
    x, x_adv = torch.rand(8, 1, 6, 6), torch.rand(8, 1, 6, 6)
    assert 2 not in clat.select_critical_layers(model, x, x_adv, 2, layers=layers)
    assert clat.select_critical_layers(model, x, x_adv, 3, candidates=[0, 1, 2], layers=layers) == [0, 1, 2]


def test_finetune_selections_and_batchnorm_frozen_through_every_epoch():
    x, y = torch.rand(16, 1, 6, 6), torch.randint(0, 3, (16,))
    picks = {}
    for selection in ("top", "bottom", "random"):
        model = small_cnn()
        layers = [model[0], model[3], model[6]]
        stats = model[1].running_mean.clone()
        history = clat.clat_finetune(model, layers, x, y, epochs=2, k=1, beta=0.1, lr=0.1, eps=0.1, alpha=0.05,
                                     steps=2, batch_size=8, generator=torch.Generator().manual_seed(0),
                                     reselect_every=1, selection=selection)
        assert torch.equal(model[1].running_mean, stats)  # model.train() each epoch must not unfreeze BatchNorm
        assert all(len(h["selected"]) == 1 and 2 not in h["selected"] for h in history)
        picks[selection] = history[0]
    crit = picks["top"]["criticality"]
    assert picks["top"]["selected"] == [max((0, 1), key=lambda i: crit[i])]
    assert picks["bottom"]["selected"] == [min((0, 1), key=lambda i: crit[i])]
    assert clat.top_k_layers(torch.tensor([3.0, 1.0, 2.0]), 2, largest=False) == [1, 2]
    with pytest.raises(ValueError, match="selection"):
        clat.clat_finetune(small_cnn(), [], x, y, 1, 1, 0.1, 0.1, 0.1, 0.05, 1, 8, torch.Generator(),
                           selection="middle")


def test_random_crop_flip_keeps_content_and_shape():
    from replbook.data.images import random_crop_flip

    x = torch.rand(6, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True))
    shifted = random_crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    assert shifted.shape == x.shape and not torch.equal(shifted, x)
