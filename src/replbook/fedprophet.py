"""FedProphet's memory-aware partition of a model into cascaded modules (Tang et al., MLSys 2025,
arXiv:2409.08372; Duke and Accenture). Written from the specification's description of the official partitioner
(``src/scheduler/module_scheduler.py``), not copied.

The model is a sequence of "atoms" (layers or blocks). An atom's training memory at a batch size is
``param_scale`` × its parameter bytes (3 for SGD with momentum: weights, gradients, momentum) plus the bytes autograd
keeps for its backward pass. Atoms are grouped greedily into modules that each fit a memory budget, counting the
auxiliary head every module but the last trains on its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AtomProfile:
    """One atom at a batch: training memory (bytes), parameters, output shape [B, ...]."""

    name: str
    mem_bytes: int
    params: int
    out_shape: tuple[int, ...]


def _saved_bytes(atom: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in ``atom(x)``, and the output."""
    params = {p.data_ptr() for p in atom.parameters()}
    seen: dict[tuple[int, tuple[int, ...]], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.data_ptr(), tuple(t.shape))
        if t.data_ptr() not in params and key not in seen:  # a tensor saved twice is stored once
            seen[key] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = atom(x)
    return sum(seen.values()), out


def profile_atoms(atoms: list[tuple[str, nn.Module]], input_shape: tuple[int, ...], param_scale: int = 3,
                  ) -> list[AtomProfile]:
    """Profile atoms in order on a random input of ``input_shape`` (batch first), in training mode."""
    x = torch.randn(input_shape)
    out = []
    for name, atom in atoms:
        atom.train()
        x = x.detach().requires_grad_(True)  # every atom after the first receives a tensor that needs gradients
        saved, y = _saved_bytes(atom, x)
        params = sum(p.numel() for p in atom.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in atom.parameters())
        out.append(AtomProfile(name, param_scale * param_bytes + saved, params, tuple(y.shape)))
        x = y
    return out


def aux_head_params(out_shape: tuple[int, ...], num_classes: int) -> int:
    """Parameters of the official auxiliary head on an output [B, c, h, w] (or [B, f]): with w' = ceil(sqrt(C/c)),
    average-pool to w'×w' when h > w', then Linear(c·w'², C); a vector output gets Linear(f, C)."""
    if len(out_shape) == 2:
        return out_shape[1] * num_classes + num_classes
    _, c, h, w = out_shape
    side = math.ceil(math.sqrt(num_classes / c))
    features = c * side * side if h > side else c * h * w
    return features * num_classes + num_classes


def partition(profiles: list[AtomProfile], mem_budget: int, num_classes: int, data_bytes: int = 4,
              param_scale: int = 3) -> list[list[str]]:
    """Greedy modules: append atom a to the open module while

        mem(open) + mem(a) + data_bytes·|out(a)| + param_scale·data_bytes·params(head_a) + data_bytes·B·C

    (the aux head's input, parameters and logits) fits ``mem_budget``; otherwise close the module and open a new
    one with a. Raises ``ValueError`` when the budget does not exceed the second-largest atom memory (the official
    code asserts the same)."""
    if len(profiles) > 1 and mem_budget <= sorted(p.mem_bytes for p in profiles)[-2]:
        raise ValueError(f"mem_budget {mem_budget} B must exceed the second-largest atom memory "
                         f"{sorted(p.mem_bytes for p in profiles)[-2]} B; raise the budget or split the atoms.")
    modules: list[list[str]] = []
    open_names: list[str] = []
    open_mem = 0
    for p in profiles:
        batch = p.out_shape[0]
        head = (data_bytes * math.prod(p.out_shape) + param_scale * data_bytes * aux_head_params(p.out_shape,
                num_classes) + data_bytes * batch * num_classes)
        if open_names and open_mem + p.mem_bytes + head > mem_budget:
            modules.append(open_names)
            open_names, open_mem = [], 0
        open_names.append(p.name)
        open_mem += p.mem_bytes
    modules.append(open_names)
    return modules


def module_memory(profiles: list[AtomProfile], modules: list[list[str]]) -> list[int]:
    """Atom memory summed per module (aux heads not included)."""
    by_name = {p.name: p.mem_bytes for p in profiles}
    return [sum(by_name[n] for n in module) for module in modules]


def digits_cnn_atoms(num_classes: int = 10) -> list[tuple[str, nn.Module]]:
    """The specification's miniature CNN for 8×8 digits: a1 conv 1→16, a2 conv 16→32 + pool, a3 conv 32→32 + pool,
    a4 linear (3×3 convolutions with padding 1, ReLU after each)."""
    return [
        ("a1", nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())),
        ("a2", nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))),
        ("a3", nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))),
        ("a4", nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, num_classes))),
    ]
