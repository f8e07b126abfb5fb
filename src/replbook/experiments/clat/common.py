"""The CLAT protocol both profiles run: stage 1 (PGD-AT, cached by content hash), then every stage-2 arm from the
same stage-1 weights, the same batches and the same attack starts; final clean, PGD and strong robust accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from replbook import attacks, clat
from replbook.cache import train_or_load
from replbook.codec import ResultsData
from replbook.data.images import random_crop_flip
from replbook.models import PreActResNet18, SmallCNN, WideResNet
from replbook.profiles import ParameterError
from replbook.progress import progress

BASELINE, CLAT = "continued AT", "CLAT"
#: The control that trains as few weights as CLAT, with its loss, on layers not chosen by criticality: a smoother
#: curve or a gain could come from training few weights alone.
RANDOM_LAYERS = "CLAT loss, random layers"
# Stage-2 arms: name → (how it trains, its options). All start from the same stage-1 model, see the same batches
# and attack starts, and run the same number of epochs.
ARM_SPECS: dict[str, dict[str, Any]] = {
    BASELINE: {"kind": "at"},
    "continued AT, lr/10": {"kind": "at", "lr_factor": 0.1},  # is CLAT only a smaller effective step?
    "TRADES": {"kind": "trades"},
    CLAT: {"kind": "clat", "selection": "top"},
    "CLAT loss, random layers": {"kind": "clat", "selection": "random"},
    "CLAT loss, least critical layers": {"kind": "clat", "selection": "bottom"},
}
IMAGE_SHAPES = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
ARCHS = ("small-cnn", "preact-resnet18", "wrn-34-10", "wrn-70-16", "wrn-10-1")


def check_architecture(arch: str, image_shape: tuple[int, ...]) -> None:
    """``arch`` must take images of ``image_shape`` ([C, H, W])."""
    wanted = (1, 28, 28) if arch == "small-cnn" else (3, 32, 32)
    if tuple(image_shape) != wanted:
        fix = "use a residual network for CIFAR" if arch == "small-cnn" else "use small-cnn for Fashion-MNIST"
        raise ParameterError(f"parameter 'arch': {arch} takes {'×'.join(map(str, wanted))} images, the data set has "
                             f"{tuple(image_shape)}; {fix}.")


def build_model(arch: str, image_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The network named by ``arch``, checked against the images it will see ([C, H, W])."""
    check_architecture(arch, image_shape)
    if arch == "small-cnn":
        return SmallCNN(num_classes=num_classes)
    if arch == "preact-resnet18":
        return PreActResNet18(num_classes)
    depth, widen = (int(v) for v in arch.removeprefix("wrn-").split("-"))
    return WideResNet(depth, widen, num_classes)


def check_arms(arms: list[str]) -> None:
    missing = [a for a in (BASELINE, CLAT) if a not in arms]
    if missing:
        raise ParameterError(f"parameter 'arms' must include {missing}: the claims compare CLAT with continued AT.")


def validate(p: dict[str, Any]) -> None:
    """The checks across parameters, before any work: the arms the claims need, and a network for the data."""
    check_arms(p["arms"])
    check_architecture(p["arch"], IMAGE_SHAPES[p["dataset"]])
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")


#: The strong evaluation is costly: the models the claims compare, and the random-layer control.
STRONG_MODELS = ("stage 1", BASELINE, CLAT, RANDOM_LAYERS)
#: The arms whose robust accuracy is tracked every epoch (claim C4).
CURVE_ARMS = (BASELINE, CLAT, RANDOM_LAYERS)


@dataclass(frozen=True)
class Protocol:
    """The two-stage protocol's settings (the parameters of the same names): the arms, seeds and subsets, the
    attacks of training and evaluation, both stages' training, CLAT's selection, and the threads."""

    arch: str
    arms: list[str]
    seeds: int
    n_train: int
    n_test: int
    n_curve: int
    eps: float
    alpha: float
    train_steps: int
    eval_steps: int
    curve_steps: int
    strong_eval: str
    n_strong: int
    strong_steps: int
    stage1_epochs: int
    eps_warmup: int
    stage2_epochs: int
    lr1: float
    lr2: float
    k: int
    beta: float
    trades_beta: float
    reselect_every: int
    candidates: str
    augment: bool
    batch_size: int
    eval_batch_size: int
    threads: int


@dataclass
class SeedResult:
    """One seed: stage 1's per-epoch clean and robust accuracy, stage 2's per arm (the :data:`CURVE_ARMS`), the
    final accuracies of stage 1 and every arm (clean, robust, and for :data:`STRONG_MODELS` robust_subset and
    strong), and every selection of the CLAT-loss arms (epoch, selected layers, criticality, trainable fraction)."""

    seed: int
    stage1_curve: list[dict[str, float]] = field(default_factory=list)
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    selections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Layer:
    """One layer of the network CLAT may reach: its name (the logit layer marked), parameters, share of the
    network's parameters, and whether CLAT may select it (``candidates``)."""

    name: str
    parameters: int
    share: float
    candidate: bool


@dataclass
class ClatResults(ResultsData):
    """Every seed's results; the network's layers; and the most parameters any ``k`` candidate layers hold, as a
    share of the network (at or below :data:`SHARE_LIMIT`, C3 holds whatever CLAT selects)."""

    seeds: list[SeedResult]
    layers: list[Layer]
    largest_possible_share: float


#: C3 "about 5% of the parameters": the share CLAT may train and still count as "about 5%".
SHARE_LIMIT = 0.10


def excluded_layers(model: torch.nn.Module, candidates: str) -> frozenset[int]:
    layers = model.layers
    logit = {len(layers) - 1}
    if candidates == "conv":
        return frozenset(i for i, layer in enumerate(layers) if not isinstance(layer, torch.nn.Conv2d)) | logit
    return frozenset(logit)


def _evaluate(model, x, y, proto: Protocol, steps: int, seed: int) -> dict[str, float]:
    """Clean and PGD-``steps`` robust accuracy (eval mode)."""
    model.eval()
    return {"clean": attacks.accuracy(model, x, y, proto.eval_batch_size),
            "robust": attacks.robust_accuracy(model, x, y, proto.eps, proto.alpha, steps, seed=seed,
                                              batch_size=proto.eval_batch_size)}


def _final(model, data: dict[str, torch.Tensor], proto: Protocol, seed: int, name: str,
           num_classes: int) -> dict[str, Any]:
    """Clean and PGD-``eval_steps`` accuracy on the test images; for :data:`STRONG_MODELS`, on the first
    ``n_strong`` of them, the worst case over that PGD and the strong attacks (``strong``) beside the PGD value on
    the same images (``robust_subset``), so the two read on one footing."""
    model.eval()
    x, y = data["xt"], data["yt"]
    mask = attacks.robust_mask(model, x, y, proto.eps, proto.alpha, proto.eval_steps, seed=seed,
                               batch_size=proto.eval_batch_size)
    out = {"clean": attacks.accuracy(model, x, y, proto.eval_batch_size), "robust": float(mask.float().mean())}
    if proto.strong_eval != "none" and name in STRONG_MODELS:
        n = proto.n_strong
        out["robust_subset"] = float(mask[:n].float().mean())
        out["strong"] = attacks.strong_robust_accuracy(
            model, x[:n], y[:n], proto.eps, proto.strong_eval, proto.strong_steps, num_classes, seed,
            proto.eval_batch_size, robust=mask[:n])
    return out


def train_stage1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, proto: Protocol, gen: torch.Generator,
                 augment, curve_data: tuple[torch.Tensor, torch.Tensor], seed: int) -> list[dict]:
    """Stage 1: PGD-AT from scratch with a linear eps warm-up; returns the per-epoch clean and robust accuracy on
    ``curve_data``."""
    opt = torch.optim.SGD(model.parameters(), lr=proto.lr1, momentum=0.9)
    curve = []
    for epoch in progress(range(proto.stage1_epochs), desc=f"seed {seed} stage 1", leave=False):
        # A linear eps ramp: PGD-AT from scratch at full eps can sit at chance for many epochs.
        ramp = min(1.0, (epoch + 1) / proto.eps_warmup) if proto.eps_warmup else 1.0
        attacks.adversarial_train_epoch(model, x, y, opt, proto.eps * ramp, proto.alpha * ramp,
                                        proto.train_steps, proto.batch_size, gen, augment=augment)
        curve.append(_evaluate(model, *curve_data, proto, proto.curve_steps, seed))
    return curve


def run_seed(proto: Protocol, data: dict[str, Any], seed: int, device: torch.device) -> SeedResult:
    """Stage 1 (cached by content hash) and every stage-2 arm in ``proto.arms`` for one seed."""
    torch.set_num_threads(proto.threads)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data["x"]), generator=gen)[: proto.n_train]
    x, y = data["x"][idx], data["y"][idx]
    x, y = x.to(device), y.to(device)
    test = {"xt": data["xt"][: proto.n_test].to(device), "yt": data["yt"][: proto.n_test].to(device)}
    xc, yc = test["xt"][: proto.n_curve], test["yt"][: proto.n_curve]
    augment = random_crop_flip if proto.augment else None
    num_classes = data["num_classes"]
    result = SeedResult(seed)

    torch.manual_seed(seed)
    model = build_model(proto.arch, tuple(x.shape[1:]), num_classes).to(device)
    hyper = {"seed": seed, **{k: getattr(proto, k) for k in ("eps", "eps_warmup", "alpha", "train_steps",
                                                              "stage1_epochs", "lr1", "batch_size", "augment",
                                                              "curve_steps", "eval_batch_size")}}
    result.stage1_curve = train_or_load(
        f"clat-stage1-{proto.arch}", model, lambda: train_stage1(model, x, y, proto, gen, augment, (xc, yc), seed),
        data=(x, y, xc, yc), hyper=hyper, code=(train_stage1, attacks.adversarial_train_epoch, _evaluate))
    stage1_state = {k: v.clone() for k, v in model.state_dict().items()}
    result.final["stage 1"] = _final(model, test, proto, seed, "stage 1", num_classes)

    for arm in progress(proto.arms, desc=f"seed {seed} stage 2", leave=False):
        spec = ARM_SPECS[arm]
        model.load_state_dict(stage1_state)
        arm_gen = torch.Generator().manual_seed(seed + 1000)  # every arm sees the same batches and starts
        curve: list[dict] = []

        def record(m, curve=curve, arm=arm):
            if arm in CURVE_ARMS:  # the other controls skip the per-epoch curve: it is half their cost on CPU
                curve.append(_evaluate(m, xc, yc, proto, proto.curve_steps, seed))

        if spec["kind"] in ("at", "trades"):
            lr = proto.lr2 * spec.get("lr_factor", 1.0)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            for _ in range(proto.stage2_epochs):
                attacks.adversarial_train_epoch(
                    model, x, y, opt, proto.eps, proto.alpha, proto.train_steps, proto.batch_size, arm_gen,
                    loss="pgd" if spec["kind"] == "at" else "trades", trades_beta=proto.trades_beta, augment=augment)
                record(model)
        else:
            result.selections[arm] = clat.clat_finetune(
                model, model.layers, x, y, proto.stage2_epochs, proto.k, proto.beta, proto.lr2, proto.eps,
                proto.alpha, proto.train_steps, proto.batch_size, arm_gen, proto.reselect_every,
                excluded_layers(model, proto.candidates), on_epoch=lambda _e, m, record=record: record(m),
                selection=spec["selection"], augment=augment)
        if curve:
            result.curves[arm] = curve
        result.final[arm] = _final(model, test, proto, seed, arm, num_classes)
    return result


def run_seeds(proto: Protocol, data: dict[str, Any], device: torch.device) -> list[SeedResult]:
    """Every seed of the protocol on ``data`` (x, y, xt, yt, num_classes), with a progress bar over seeds."""
    return [run_seed(proto, data, seed, device) for seed in progress(range(proto.seeds), desc="seeds")]


def layer_table(arch: str, dataset: str, candidates: str) -> list[Layer]:
    """The layers of ``arch`` for ``dataset`` (built on the meta device: shapes only), their parameters and share,
    and which CLAT may select."""
    classes = 100 if dataset == "cifar100" else 10
    with torch.device("meta"):
        model = build_model(arch, IMAGE_SHAPES[dataset], classes)
    names = {id(m): n for n, m in model.named_modules()}
    excluded = excluded_layers(model, candidates)
    total = sum(p.numel() for p in model.parameters())
    out = []
    for i, layer in enumerate(model.layers):
        count = sum(p.numel() for p in layer.parameters())
        name = names[id(layer)] + (" (logits)" if i == len(model.layers) - 1 else "")
        out.append(Layer(name, count, count / total, i not in excluded))
    return out


def largest_possible_share(layers: list[Layer], k: int) -> float:
    """The most parameters any ``k`` of the candidate layers hold, as a share of the network."""
    return float(sum(sorted((layer.share for layer in layers if layer.candidate), reverse=True)[:k]))
