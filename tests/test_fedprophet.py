"""FedProphet's memory-aware partitioner against hand-worked cases and the specification's miniature."""

import pytest
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
