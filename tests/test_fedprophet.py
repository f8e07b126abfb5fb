"""FedProphet's kernels against hand-worked cases (the specification's §6) and the specification's miniature."""

import math

import pytest
import torch
from torch import nn

from replbook import fedprophet as fp


def test_atom_memory_is_saved_activations_plus_three_times_parameter_bytes():
    [a1] = fp.profile_atoms([("a1", nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()))], (64, 1, 8, 8))
    # input 64·1·8·8·4 B (kept by the convolution) + ReLU output 64·16·8·8·4 B + 3 · 160 parameters · 4 B
    assert a1.mem_bytes == 16_384 + 262_144 + 3 * 160 * 4
    assert a1.out_shape == (64, 16, 8, 8) and a1.params == 160


def test_a_tensor_saved_twice_is_counted_once():
    [a2] = fp.profile_atoms([("a2", nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)))],
                            (64, 16, 8, 8))
    # ReLU and max-pool both keep the ReLU output; max-pool adds its int64 indices.
    assert a2.mem_bytes == 64 * 16 * 64 * 4 + 64 * 32 * 64 * 4 + 64 * 32 * 16 * 8 + 3 * 4640 * 4


@pytest.mark.parametrize("shape, expected", [((64, 16, 8, 8), 16 * 10 + 10), ((64, 4, 8, 8), 4 * 4 * 10 + 10),
                                             ((64, 4, 2, 2), 4 * 4 * 10 + 10), ((64, 128), 128 * 10 + 10)])
def test_aux_head_parameters(shape, expected):
    assert fp.aux_head_params(shape, 10) == expected


def test_greedy_partition_hand_worked():
    profiles = [fp.AtomProfile(n, m, 0, (1, 1)) for n, m in [("a", 100), ("b", 100), ("c", 100), ("d", 50)]]
    # head cost per atom: 4·1 (input) + 3·4·2 (Linear(1, 1) params) + 4·1·1 (logits) = 32 B
    assert fp.partition(profiles, 232, 1) == [["a", "b"], ["c", "d"]]
    assert fp.partition(profiles, 231, 1) == [["a"], ["b"], ["c", "d"]]
    with pytest.raises(ValueError, match="must exceed the second-largest atom memory 100 B"):
        fp.partition(profiles, 100, 1)


def test_the_specification_miniature_partitions_as_the_prototype():
    profiles = fp.profile_atoms(fp.digits_cnn_atoms(), (64, 1, 8, 8))
    full = sum(p.mem_bytes for p in profiles)
    modules = fp.partition(profiles, full // 2, 10)
    assert modules == [["a1"], ["a2"], ["a3", "a4"]]
    assert sum(fp.module_memory(profiles, modules)) == full


# ---------------------------------------------------------------------------------------------------------------
# The specification's worked examples (§6) and the other kernels


def test_e1_regularized_stage_loss_by_hand():
    z = torch.tensor([[1.0, 2.0], [0.0, 2.0]])  # Σ‖z_i‖² = 9
    logits = torch.zeros(2, 2)
    y = torch.tensor([0, 1])
    assert fp.regularized_module_loss(z, logits, y, 1e-5).item() == pytest.approx(math.log(2) + 1e-5 / 2 * 9 / 2,
                                                                                 abs=1e-7)
    assert fp.regularized_module_loss(z, logits, y, 0.0).item() == pytest.approx(math.log(2), abs=1e-7)
    with pytest.raises(ValueError, match="mu must be >= 0"):
        fp.regularized_module_loss(z, logits, y, -1.0)


def test_the_regulariser_makes_the_loss_strongly_convex_in_the_module_output():
    # with a linear head, L(z) − (μ/2)·mean‖z‖² is convex; along any line the second difference is >= μ·‖d‖²/B
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 3)
    z, d, y, mu = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 3, (5,)), 0.3
    h = 1e-2

    def f(t: float) -> float:
        zz = z + t * d
        return fp.regularized_module_loss(zz, head(zz), y, mu).double().item()

    second = (f(h) - 2 * f(0.0) + f(-h)) / h**2
    assert second >= mu * d.pow(2).sum().item() / 5 * 0.99


def test_prophet_mix():
    a, b = torch.tensor(2.0), torch.tensor(4.0)
    assert fp.prophet_mix(a, b, 0.25).item() == pytest.approx(2.5)
    assert fp.prophet_mix(a, b, 1.0).item() == 4.0
    assert fp.prophet_mix(a, None, 0.7).item() == 2.0
    with pytest.raises(ValueError, match="psi"):
        fp.prophet_mix(a, b, 1.5)


def test_e2_greedy_partition_from_the_specification():
    # every head costs 1 unit: an empty output (1, 0), no head-parameter cost (param_scale 0), 1·B·C = 1 logit
    profiles = [fp.AtomProfile(f"a{i + 1}", m, 0, (1, 0)) for i, m in enumerate([3, 5, 2, 4, 1])]
    assert fp.partition(profiles, 8, 1, data_bytes=1, param_scale=0) == [["a1"], ["a2", "a3"], ["a4", "a5"]]
    assert fp.partition(profiles, 7, 1, data_bytes=1, param_scale=0) == [["a1"], ["a2"], ["a3", "a4"], ["a5"]]


@pytest.mark.parametrize("shape, classes, layers", [((64, 64, 16, 16), 10, (1, 64)), ((64, 4, 8, 8), 10, (2, 16)),
                                                    ((64, 64, 56, 56), 256, (2, 256))])
def test_e3_aux_head_rule(shape, classes, layers):
    side, features = layers
    head = fp.aux_head(shape, classes, "official")
    assert isinstance(head[0], torch.nn.AdaptiveAvgPool2d) and head[0].output_size == side
    assert head[-1].in_features == features and head[-1].out_features == classes
    assert sum(p.numel() for p in head.parameters()) == fp.aux_head_params(shape, classes)
    assert fp.aux_head(shape, classes, "flatten")[-1].in_features == math.prod(shape[1:])


def test_e4_apa():
    assert fp.apa_update(0.5, 1.60, 1.5, 0.3) == pytest.approx(0.6)
    assert fp.apa_update(0.5, 1.40, 1.5, 0.3) == pytest.approx(0.4)
    assert fp.apa_update(0.5, 1.50, 1.5, 0.3) == 0.5
    assert fp.apa_update(0.35, 1.40, 1.5, 0.3) == 0.3


def test_e5_dma_by_flops_and_memory():
    flops, mem = [10, 8, 8], [1, 1, 1]
    big = [100, 100, 100]
    assert fp.assign_modules(0, big, [1, 2, 4], mem, flops) == [[0], [0, 1], [0, 1, 2]]
    # memory binds: the fast client cannot hold the third module
    assert fp.assign_modules(0, [100, 100, 2.5], [1, 2, 4], mem, flops) == [[0], [0, 1], [0, 1]]
    # memory only: everyone who can hold more takes more
    assert fp.assign_modules(0, [1.5, 2.5, 100], [1, 1, 1], mem, flops, by_flops=False) == [[0], [0, 1], [0, 1, 2]]
    assert fp.assign_modules(2, big, [1, 2, 4], mem, flops) == [[2], [2], [2]]


def test_partial_average_averages_each_entry_over_the_clients_that_sent_it():
    a = {"w": torch.tensor([1.0, 1.0]), "h": torch.tensor([2.0])}
    b = {"w": torch.tensor([4.0, 7.0])}
    out = fp.partial_average([a, b], [1.0, 2.0])
    assert torch.allclose(out["w"], torch.tensor([3.0, 5.0]))
    assert torch.equal(out["h"], torch.tensor([2.0]))  # only a sent it: not averaged with zeros
    n = fp.partial_average([{"n": torch.tensor(4)}, {"n": torch.tensor(6)}], [1, 1])["n"]
    assert n.dtype == torch.int64 and n.item() == 5
    with pytest.raises(ValueError, match="one weight per state"):
        fp.partial_average([a], [1.0, 2.0])


def test_feature_displacement_is_the_per_sample_l2_norm_of_the_output_change():
    lin = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2) * 2)
    z = torch.zeros(2, 2)
    z_adv = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert torch.allclose(fp.feature_displacement(lin, z, z_adv), torch.tensor([10.0, 2.0]))


def test_count_macs_by_hand():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    assert fp.count_macs(conv, torch.zeros(1, 2, 5, 5)) == 4 * 5 * 5 * 2 * 9
    assert fp.count_macs(torch.nn.Linear(7, 3), torch.zeros(2, 7)) == 2 * 3 * 7


def test_the_partition_charges_the_head_of_its_rule():
    # a 4×8×8 output: official head pools to 2×2 (16 features), flatten keeps 256
    assert fp.aux_head_params((64, 4, 8, 8), 10, "flatten") == 256 * 10 + 10
    profiles = [fp.AtomProfile(n, 1000, 0, (2, 4, 8, 8)) for n in "abc"]
    head = {rule: 4 * 512 + 3 * 4 * fp.aux_head_params((2, 4, 8, 8), 10, rule) + 4 * 2 * 10
            for rule in ("official", "flatten")}
    budget = 2000 + head["official"]  # two atoms fit with the official head, not with the flatten one
    assert fp.partition(profiles, budget, 10) == [["a", "b"], ["c"]]
    assert fp.partition(profiles, budget, 10, head_rule="flatten") == [["a"], ["b"], ["c"]]


def test_stage_lengths():
    assert fp.stage_lengths(24, 5) == [5, 5, 5, 5, 4] and sum(fp.stage_lengths(7, 3)) == 7
    with pytest.raises(ValueError, match="give 'rounds' at least 4"):
        fp.stage_lengths(3, 4)
