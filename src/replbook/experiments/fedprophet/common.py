"""What one federated client and the server compute, without Flower: the cascade model, a client's local round for
each arm, the stage-transition radius measurement, evaluation, and the per-client memory measurement.

Arms (``arm``):
- ``jfat``: end-to-end federated adversarial training (PGD-AT on the whole model every round; FedAvg).
- ``cascade``: module-wise FAT, stage by stage, every client trains only the stage module with its auxiliary head,
  the regularised stage loss with ``mu``, feature-space L2 attacks after stage 0 at radius ``eps_quantile`` · ε_m.
- ``fedprophet``: ``cascade`` plus Adaptive Perturbation Adjustment and Differentiated Module Assignment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from replbook import fedprophet as fp
from replbook.attacks import pgd
from replbook.codec import ResultsData
from replbook.measure import peak_cpu_allocation

ARMS = ("jfat", "cascade", "fedprophet")


# ---------------------------------------------------------------------------------------------------------------
# The results


@dataclass
class Plan:
    """The partition the run used (:func:`plan`): each module's atoms, the whole model's and the budget's predicted
    bytes, each module's predicted bytes and MACs, and every atom's (name, predicted bytes, MACs)."""

    modules: list[list[str]]
    full_bytes: int
    budget_bytes: int
    module_bytes: list[int]
    module_macs: list[int]
    atoms: list[tuple[str, int, int]]


@dataclass
class RoundLog:
    """The server's log of one run, per round [n_rounds]: the stage, APA's α, the stage's input radius ε_m, and the
    validation accuracy (clean, PGD) of the model it validated."""

    round: np.ndarray
    stage: np.ndarray
    alpha: np.ndarray
    stage_eps: np.ndarray
    val_clean: np.ndarray
    val_pgd: np.ndarray


@dataclass
class ClientRounds:
    """Every reply of a client that trained, one entry per (client, round) [n]: the client (partition id), round
    and stage, the modules it trained (``first_module`` … ``first_module + n_modules − 1``), its measured peak
    memory, the partitioner's prediction for what it trained, and its compute seconds for the round."""

    pid: np.ndarray
    round: np.ndarray
    stage: np.ndarray
    first_module: np.ndarray
    n_modules: np.ndarray
    peak_bytes: np.ndarray
    predicted_bytes: np.ndarray
    seconds: np.ndarray


@dataclass
class ArmRun:
    """One arm at one seed: its name (``arm``) and kind (:data:`ARMS`), its μ (FedProphet's as selected on
    validation), test accuracies ("clean", "pgd"; "apgd" and "pgd_same_images" with the APGD control), validation
    accuracies, each stage's measured input radius ε_m (ε_0 = 0: pixels) and clean output norm, the bytes sent both
    ways, wall seconds, the server's per-round log and the clients' per-round measurements."""

    seed: int
    arm: str
    kind: str
    mu: float
    test: dict[str, float]
    val: dict[str, float]
    stage_eps: list[float]
    stage_norm: list[float]
    bytes_down: int
    bytes_up: int
    seconds: float
    log: RoundLog
    clients: ClientRounds


@dataclass
class FedProphetResults(ResultsData):
    """The chapter's results: the JSON settings the Flower apps ran (arms, seeds, budgets, speeds), the partition,
    and every (seed, arm) run in the order they ran."""

    settings: dict[str, Any]
    plan: Plan
    runs: list[ArmRun]


class Cascade(nn.Module):
    """A backbone cut into modules of atoms, with an auxiliary head on every module but the last.

    State keys: ``atoms.<atom>.*`` and ``heads.<m>.*``."""

    def __init__(self, atoms: list[tuple[str, nn.Module]], modules: list[list[str]], out_shapes: dict[str, tuple],
                 num_classes: int, head_rule: str = "official"):
        super().__init__()
        self.atoms = nn.ModuleDict(dict(atoms))
        self.modules_ = [list(m) for m in modules]
        self.heads = nn.ModuleDict({str(m): fp.aux_head(out_shapes[names[-1]], num_classes, head_rule)
                                    for m, names in enumerate(self.modules_[:-1])})

    @property
    def n_modules(self) -> int:
        return len(self.modules_)

    def run(self, z: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Modules ``first``..``last`` (inclusive) on z."""
        for m in range(first, last + 1):
            for name in self.modules_[m]:
                z = self.atoms[name](z)
        return z

    def logits(self, z: torch.Tensor, m: int) -> torch.Tensor:
        """Module m's classifier on its output: its aux head, or the output itself for the last module."""
        return z if m == self.n_modules - 1 else self.heads[str(m)](z)

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Logits of the model truncated after module ``upto`` (default: the whole model)."""
        m = self.n_modules - 1 if upto is None else upto
        return self.logits(self.run(x, 0, m), m)

    def keys(self, modules: list[int], heads: list[int]) -> list[str]:
        """The state keys of ``modules``' atoms and of the ``heads`` (by module index)."""
        names = {n for m in modules for n in self.modules_[m]}
        prefixes = tuple(f"atoms.{n}." for n in names) + tuple(f"heads.{h}." for h in heads)
        return [k for k in self.state_dict() if k.startswith(prefixes)]


def trained_heads(model: Cascade, stage: int, deepest: int, psi: float) -> list[int]:
    """The heads a client's loss reaches: the deepest assigned module's, and the stage module's unless ψ = 1 gives
    its loss no weight (a client that would return an untouched stage head must not dilute the average)."""
    heads = {deepest} | ({stage} if psi < 1 or deepest == stage else set())
    return sorted(heads & {int(h) for h in model.heads})


@dataclass
class LocalResult:
    state: dict[str, torch.Tensor]  # the trained entries only
    n_samples: int
    peak_bytes: int  # measured: parameters held + the profiler's peak over the first local iteration
    predicted_bytes: int  # the partitioner's memory model for what this client trained
    seconds: float
    loss: float


def stage_objective(model: Cascade, z_in: torch.Tensor, y: torch.Tensor, stage: int, deepest: int, mu: float,
                    psi: float) -> torch.Tensor:
    """(1 − ψ)·L_stage + ψ·L_prophet on a batch of stage inputs (spec §2.2): regularised losses of the stage module
    and of the deepest assigned module, each through its own head (plain CE for the last module)."""
    last = model.n_modules - 1
    z = model.run(z_in, stage, stage)
    stage_loss = fp.regularized_module_loss(z, model.logits(z, stage), y, 0.0 if stage == last else mu)
    if deepest == stage:
        return stage_loss
    z_deep = model.run(z, stage + 1, deepest)
    prophet = fp.regularized_module_loss(z_deep, model.logits(z_deep, deepest), y, 0.0 if deepest == last else mu)
    return fp.prophet_mix(stage_loss, prophet, psi)


def attack_stage_input(model: Cascade, z_in: torch.Tensor, y: torch.Tensor, stage: int, deepest: int, cfg: dict,
                       generator: torch.Generator) -> torch.Tensor:
    """The training attack on the stage input, maximising the stage objective (spec §2.3): L∞ PGD on pixels at stage
    0; at later stages L2 PGD in feature space, radius α·ε_m, step 2.5·radius/T, bounded below by 0 when every
    feature is non-negative (post-ReLU)."""
    def loss(z: torch.Tensor) -> torch.Tensor:
        return stage_objective(model, z, y, stage, deepest, cfg["mu"], cfg["psi"]) * len(z)

    if stage == 0:
        return pgd(loss, z_in, cfg["eps"], cfg["step"], cfg["train_steps"], generator=generator)
    radius = cfg["alpha"] * cfg["stage_eps"]
    lower = 0.0 if bool((z_in >= 0).all()) else -math.inf
    return pgd(loss, z_in, radius, 2.5 * radius / cfg["train_steps"], cfg["train_steps"], norm="2",
               bounds=(lower, math.inf), generator=generator)


def _param_bytes(modules: list[nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def local_train(model: Cascade, x: torch.Tensor, y: torch.Tensor, cfg: dict, predicted_bytes: int,
                seed: int) -> LocalResult:
    """One client's round: ``cfg["local_steps"]`` SGD iterations on adversarial batches. For ``jfat`` the whole
    model trains on pixel PGD; otherwise modules ``cfg["modules"]`` (stage first) train on the stage objective, the
    earlier modules frozen and run without gradients. The first iteration runs under torch's profiler for the peak
    memory."""
    generator = torch.Generator().manual_seed(seed)
    arm, assigned = cfg["arm"], cfg["modules"]
    stage, deepest = assigned[0], assigned[-1]
    if arm == "jfat":
        trained_keys = model.keys(list(range(model.n_modules)), [])
        params = list(model.atoms.parameters())
        run_modules = [model.atoms]
    else:
        heads = trained_heads(model, stage, deepest, cfg["psi"])
        trained_keys = model.keys(assigned, heads)
        params = [p for m in assigned for n in model.modules_[m] for p in model.atoms[n].parameters()]
        params += [p for h in heads for p in model.heads[str(h)].parameters()]
        run_modules = [model.atoms[n] for m in range(deepest + 1) for n in model.modules_[m]]
        run_modules += [model.heads[str(h)] for h in heads]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9)
    model.train()
    if arm != "jfat":  # the frozen prefix runs as at validation and test: batch norm with its running statistics
        for m in range(stage):
            for name in model.modules_[m]:
                model.atoms[name].eval()
    losses: list[float] = []

    def iteration() -> None:
        idx = torch.randint(len(x), (min(cfg["batch_size"], len(x)),), generator=generator)
        xb, yb = x[idx], y[idx]
        if arm == "jfat":
            adv = pgd(lambda z: F.cross_entropy(model(z), yb, reduction="sum"), xb, cfg["eps"], cfg["step"],
                      cfg["train_steps"], generator=generator) if cfg["adversarial"] else xb
            loss = F.cross_entropy(model(adv), yb)
        else:
            with torch.no_grad():
                z_in = model.run(xb, 0, stage - 1) if stage > 0 else xb
            adv = attack_stage_input(model, z_in, yb, stage, deepest, cfg, generator) if cfg["adversarial"] else z_in
            loss = stage_objective(model, adv, yb, stage, deepest, cfg["mu"], cfg["psi"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    profiled = time.process_time()
    peak = _param_bytes(run_modules) + peak_cpu_allocation(iteration)
    profiled = time.process_time() - profiled
    start = time.process_time()
    for _ in range(cfg["local_steps"] - 1):
        iteration()
    # the profiler's own cost (seconds at its first use in a process) stays out: the unprofiled iterations are timed
    # and scaled to the round; with one local step only the profiled one is there to time
    steps = cfg["local_steps"]
    seconds = (time.process_time() - start) * steps / (steps - 1) if steps > 1 else profiled
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in set(trained_keys)}
    return LocalResult(state, len(x), peak, predicted_bytes, seconds, float(np.mean(losses)))


def measure_displacement(model: Cascade, x: torch.Tensor, y: torch.Tensor, stage: int, cfg: dict,
                         seed: int) -> tuple[float, float, int]:
    """The stage-transition measurement (spec §2.3): attack the stage module's input within the stage's radius to
    maximise ‖f_m(z + δ) − f_m(z)‖²/B, and return the sum over samples of ‖f_m(z + δ) − f_m(z)‖₂ and the count; the
    server's mean over all clients is the next stage's radius ε_{m+1}. Also the sum of the clean output norms
    ‖f_m(z)‖₂, the scale the displacement is read against (and that μ shrinks)."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    module = _StageModule(model, stage)
    total, norms, count = 0.0, 0.0, 0
    for start in range(0, min(len(x), cfg["measure_samples"]), cfg["batch_size"]):
        xb = x[start:min(start + cfg["batch_size"], cfg["measure_samples"])]
        with torch.no_grad():
            z = model.run(xb, 0, stage - 1) if stage > 0 else xb
            clean = module(z)

        def loss(zz: torch.Tensor, clean: torch.Tensor = clean) -> torch.Tensor:
            return (module(zz) - clean).flatten(1).pow(2).sum()

        if stage == 0:
            z_adv = pgd(loss, z, cfg["eps"], cfg["step"], cfg["train_steps"], generator=generator)
        else:
            radius = cfg["alpha"] * cfg["stage_eps"]
            lower = 0.0 if bool((z >= 0).all()) else -math.inf
            z_adv = pgd(loss, z, radius, 2.5 * radius / cfg["train_steps"], cfg["train_steps"], norm="2",
                        bounds=(lower, math.inf), generator=generator)
        total += float(fp.feature_displacement(module, z, z_adv).sum())
        norms += float(clean.flatten(1).norm(dim=1).sum())
        count += len(xb)
    return total, norms, count


class _StageModule(nn.Module):
    def __init__(self, model: Cascade, stage: int):
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.run(z, self.stage, self.stage)


def evaluate(model: Cascade, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int,
             upto: int | None = None, seed: int = 0, batch_size: int = 500) -> dict[str, float]:
    """Clean and PGD (L∞, pixels) accuracy of the model truncated after module ``upto`` (default: whole)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    clean = robust = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        with torch.no_grad():
            clean += int((model(xb, upto).argmax(1) == yb).sum())
        adv = pgd(lambda z, yb=yb: F.cross_entropy(model(z, upto), yb, reduction="sum"), xb, eps, step, steps,
                  generator=generator)
        with torch.no_grad():
            robust += int((model(adv, upto).argmax(1) == yb).sum())
    return {"clean": clean / len(x), "pgd": robust / len(x)}


def split_clients(labels: np.ndarray, n_clients: int, split: str, dirichlet_alpha: float,
                  seed: int) -> list[np.ndarray]:
    """Indices per client: ``iid`` (a random equal split) or ``dirichlet`` (each class's samples shared out by
    proportions drawn from Dirichlet(α) over clients; smaller α, more skew)."""
    rng = np.random.default_rng(seed)
    if split == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), n_clients)]
    parts: list[list[int]] = [[] for _ in range(n_clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = (np.cumsum(rng.dirichlet([dirichlet_alpha] * n_clients)) * len(idx)).astype(int)[:-1]
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].extend(chunk.tolist())
    for i, part in enumerate(parts):
        if len(part) == 0:
            raise ValueError(f"client {i} received no samples under dirichlet α={dirichlet_alpha}; raise "
                             "'dirichlet_alpha' or the number of training samples.")
    return [np.sort(np.array(part)) for part in parts]


def plan(atoms: list[tuple[str, nn.Module]], input_shape: tuple, num_classes: int, budget_fraction: float,
         head_rule: str, budget_bytes: int = 0) -> dict[str, Any]:
    """Profile the atoms at the training batch, partition them at ``budget_bytes`` (if > 0) or else
    ``budget_fraction`` of the whole model's predicted training memory, and return the partition with each
    module's predicted memory (atoms + its aux head's parameters, input and logits) and MACs."""
    profiles = fp.profile_atoms(atoms, input_shape)
    full = sum(p.mem_bytes for p in profiles)
    budget = budget_bytes if budget_bytes > 0 else int(budget_fraction * full)
    modules = fp.partition(profiles, budget, num_classes, head_rule=head_rule)
    by_name = {p.name: p for p in profiles}
    module_mem, module_macs = [], []
    for m, names in enumerate(modules):
        mem = sum(by_name[n].mem_bytes for n in names)
        if m < len(modules) - 1:
            out = by_name[names[-1]].out_shape
            head = fp.aux_head(out, num_classes, head_rule)
            mem += 4 * math.prod(out) + 3 * 4 * sum(p.numel() for p in head.parameters()) + 4 * out[0] * num_classes
        module_mem.append(mem)
        module_macs.append(sum(by_name[n].macs for n in names))
    return {"modules": modules, "full_bytes": full, "budget_bytes": budget, "module_bytes": module_mem,
            "module_macs": module_macs, "out_shapes": {p.name: p.out_shape for p in profiles},
            "atoms": [(p.name, p.mem_bytes, p.macs) for p in profiles]}
