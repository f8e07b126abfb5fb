"""The paper-profile networks: parameter counts worked by hand, the CLAT layer registry, and errors."""

import pytest
import torch
from torch import nn

from replbook import clat
from replbook.models import PreActResNet18, WideResNet


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_hand_counts():
    with torch.device("meta"):
        # WRN-34-10: stem 432 + stages 2,102,112 + 8,812,480 + 35,237,760 + final BN 1,280 + fc 6,410.
        assert count(WideResNet(34, 10)) == 46_160_474
        # PreAct ResNet-18: stem 1,728 + stages 147,968 + 525,184 + 2,098,944 + 8,392,192 + BN 1,024 + fc 5,130.
        assert count(PreActResNet18()) == 11_172_170


@pytest.mark.parametrize("model", [WideResNet(10, 1), PreActResNet18(width=4)])
def test_layers_are_the_main_path_convs_and_the_classifier_in_forward_order(model):
    layers = model.layers
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert isinstance(layers[-1], nn.Linear) and all(isinstance(m, nn.Conv2d) for m in layers[:-1])
    assert len(layers) + len(shortcuts) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    order = []
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in layers]
    logits = model.eval()(torch.rand(2, 3, 32, 32))
    for h in handles:
        h.remove()
    assert logits.shape == (2, 10) and order == layers
    crit = clat.criticality_index(model, torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), layers)
    assert crit.shape == (len(layers),) and torch.isfinite(crit).all()


def test_a_depth_that_is_not_6n_plus_4_is_refused():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(12, 1)
