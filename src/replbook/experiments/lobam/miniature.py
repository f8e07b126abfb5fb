"""The LoBAM miniature: a tiny ViT pre-trained here on a mixture of grey 28×28 image domains (the stand-in for CLIP),
then one user per task: Fashion-MNIST (Debian's ``dataset-fashion-mnist``) upright, rotated by 90° and with
inverted contrast, and scikit-learn's handwritten digits, each with a frozen linear head (the stand-in for CLIP's
zero-shot heads). Every task's images are disjoint from the pre-training images and from each other's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from replbook.cache import train_or_load
from replbook.data.images import load_digits_28, load_fashion_mnist
from replbook.experiments.lobam.common import (
    LobamResults,
    Protocol,
    Shared,
    Task,
    build_encoder,
    features,
    fit_probe,
    run_seed,
)
from replbook.models.vit_encoder import ImageEncoder, tiny_vit
from replbook.parallel import in_workers
from replbook.profiles import ParameterError
from replbook.progress import progress

#: The image domains: name → transform of [N, 1, 28, 28] images (digits are their own data set).
DOMAINS: dict[str, Callable[[Tensor], Tensor]] = {
    "fashion": lambda x: x,
    "fashion-rot90": lambda x: torch.rot90(x, 1, dims=(2, 3)),
    "fashion-inverted": lambda x: 1.0 - x,
    "fashion-flipped": lambda x: x.flip(2),
    "digits": lambda x: x,
}
TASKS = tuple(DOMAINS)
#: The pre-training labels: five coarse groups of the ten classes, so that θ_pre's features are broad but do not
#: solve the users' tasks (CLIP is pre-trained on other labels than the tasks merged from it). Fashion-MNIST: tops,
#: warm tops, dress and trouser, shoes, bag; digits: pairs of consecutive digits.
COARSE = {"fashion": (0, 1, 1, 2, 1, 3, 0, 3, 4, 3), "digits": (0, 0, 1, 1, 2, 2, 3, 3, 4, 4)}
#: Digits available for each split (1,797 images in all): pre-training, validation, test; the rest trains.
DIGITS_SPLIT = {"pretrain": 400, "val": 200, "test": 497}


@dataclass(frozen=True)
class MiniatureSetup:
    """The miniature's tasks, sizes, backbone and pre-training, and how its seeds run (the parameters of the same
    names)."""

    tasks: list[str]
    attacker: str
    seeds: int
    workers: int
    widths: list[int]
    layers: int
    n_pretrain: int
    n_train: int
    n_val: int
    n_test: int
    pretrain_epochs: int
    lr_pretrain: float
    batch_size: int
    eval_batch_size: int
    threads: int


def check_sizes(n_pretrain: int, n_train: int, n_val: int, n_test: int) -> None:
    """The Fashion-MNIST domains share its 60,000 training and 10,000 test images without overlap; the digits have
    fixed validation and test splits (:data:`DIGITS_SPLIT`) and at most the rest (700 images) to train on."""
    n_fashion = sum(t != "digits" for t in TASKS)
    per_domain = n_pretrain + n_train + n_val
    if n_fashion * per_domain > 60_000:
        raise ParameterError(f"parameters 'n_pretrain' + 'n_train' + 'n_val' ({per_domain}) exceed the "
                             f"{60_000 // n_fashion} Fashion-MNIST training images each of its {n_fashion} domains "
                             f"can have; lower them.")
    if n_fashion * n_test > 10_000:
        raise ParameterError(f"parameter 'n_test' ({n_test}) exceeds the {10_000 // n_fashion} Fashion-MNIST test "
                             f"images each of its {n_fashion} domains can have; lower it.")


def make_tasks(setup: MiniatureSetup) -> tuple[dict[str, Task], dict[str, tuple[Tensor, Tensor]]]:
    """The users' tasks and the pre-training images of each domain (``n_pretrain`` per domain), all disjoint. The
    Fashion-MNIST domains take consecutive blocks of the (fixed-seed) shuffled training split and of the test split;
    the digits are shuffled once and cut by :data:`DIGITS_SPLIT` (their training set is capped by what is left)."""
    (fx, fy), (ftx, fty) = load_fashion_mnist("train"), load_fashion_mnist("test")
    gen = torch.Generator().manual_seed(20241123)
    order, test_order = torch.randperm(len(fx), generator=gen), torch.randperm(len(ftx), generator=gen)
    dx, dy = load_digits_28()
    d_order = torch.randperm(len(dx), generator=gen)
    tasks, pretrain = {}, {}
    fashion_domains = [d for d in DOMAINS if d != "digits"]
    per_domain = setup.n_pretrain + setup.n_train + setup.n_val
    for i, name in enumerate(fashion_domains):
        idx = order[i * per_domain:(i + 1) * per_domain]
        t_idx = test_order[i * setup.n_test:(i + 1) * setup.n_test]
        x, y, xt, yt = DOMAINS[name](fx[idx]), fy[idx], DOMAINS[name](ftx[t_idx]), fty[t_idx]
        a, b = setup.n_pretrain, setup.n_pretrain + setup.n_train
        pretrain[name] = (x[:a], torch.tensor(COARSE["fashion"])[y[:a]])
        tasks[name] = Task(name, 10, x[a:b], y[a:b], x[b:], y[b:], xt, yt)
    cut = torch.tensor([DIGITS_SPLIT["pretrain"], DIGITS_SPLIT["val"], DIGITS_SPLIT["test"]]).cumsum(0).tolist()
    dxs, dys = dx[d_order], dy[d_order]
    n_pre = min(setup.n_pretrain, DIGITS_SPLIT["pretrain"])
    pretrain["digits"] = (dxs[:n_pre], torch.tensor(COARSE["digits"])[dys[:n_pre]])
    train_end = min(len(dx), cut[2] + setup.n_train)
    tasks["digits"] = Task("digits", 10, dxs[cut[2]:train_end], dys[cut[2]:train_end], dxs[cut[0]:cut[1]],
                           dys[cut[0]:cut[1]], dxs[cut[1]:cut[2]][: setup.n_test], dys[cut[1]:cut[2]][: setup.n_test])
    keep = list(setup.tasks)
    return {n: tasks[n] for n in keep}, {n: pretrain[n] for n in keep}


def pretrain_encoder(encoder: torch.nn.Module, pretrain: dict[str, tuple[Tensor, Tensor]], epochs: int, lr: float,
                     batch_size: int) -> list[float]:
    """Supervised pre-training on the mixture of domains with the coarse labels (:data:`COARSE`), one temporary head
    per domain (discarded afterwards): AdamW, ``pretrain_epochs`` epochs, batches mixing the domains. Returns the
    mean loss per epoch."""
    names = list(pretrain)
    x = torch.cat([pretrain[n][0] for n in names])
    y = torch.cat([pretrain[n][1] for n in names])
    domain = torch.cat([torch.full((len(pretrain[n][1]),), i) for i, n in enumerate(names)])
    heads = torch.nn.Linear(encoder.feature_dim, 5 * len(names))  # the domain's block of 5 logits
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    losses = []
    encoder.train()
    for _ in progress(range(epochs), desc="pre-training θ_pre", leave=False):
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            logits = heads(encoder(x[idx])).view(len(idx), len(names), 5)[torch.arange(len(idx)), domain[idx]]
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    encoder.eval()
    return losses


def encoder_spec(layers: int, hidden: int) -> dict[str, Any]:
    """The tiny ViT of width ``hidden`` for :func:`~replbook.experiments.lobam.common.build_encoder`."""
    return {"kind": "tiny-vit", "hidden": hidden, "layers": layers, "heads": 4}


def prepare(setup: MiniatureSetup, hidden: int) -> Shared:
    """The tasks, θ_pre of width ``hidden`` (pre-trained once and cached by content) and the frozen linear heads."""
    torch.set_num_threads(setup.threads)
    tasks, pretrain = make_tasks(setup)
    spec = encoder_spec(setup.layers, hidden)
    torch.manual_seed(0)
    encoder = build_encoder(spec)
    hyper = {"pretrain_epochs": setup.pretrain_epochs, "lr_pretrain": setup.lr_pretrain,
             "batch_size": setup.batch_size}
    train_or_load("lobam-pretrain", encoder,
                  lambda: pretrain_encoder(encoder, pretrain, setup.pretrain_epochs, setup.lr_pretrain,
                                           setup.batch_size),
                  data=[pretrain[n] for n in pretrain], hyper=hyper,
                  code=(pretrain_encoder, prepare, build_encoder, ImageEncoder, tiny_vit))
    heads = {}
    for name, task in tasks.items():
        heads[name] = fit_probe(features(encoder, task.x_train, setup.eval_batch_size), task.y_train, task.n_classes)
    pretrained = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return Shared(spec, pretrained, heads, tasks, setup.attacker)


def run_miniature(setup: MiniatureSetup, protocol: Protocol) -> LobamResults:
    """Every seed at each of ``widths`` (the first is the main one), all in one pool of workers."""
    widths = list(dict.fromkeys(setup.widths))
    shared = {w: prepare(setup, w) for w in progress(widths, desc="θ_pre per width", leave=False)}
    jobs = [(shared[w], protocol, seed) for w in widths for seed in range(setup.seeds)]
    results = in_workers(jobs, run_seed, setup.workers, setup.threads if setup.workers == 1 else 1)
    by_width = {w: results[i * setup.seeds:(i + 1) * setup.seeds] for i, w in enumerate(widths)}
    return LobamResults(by_width[widths[0]], widths[0], {w: r for w, r in by_width.items() if w != widths[0]})
