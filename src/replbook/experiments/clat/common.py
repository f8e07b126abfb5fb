"""The CLAT protocol both profiles run: stage 1 (PGD-AT, cached by content hash), then every stage-2 arm from the
same stage-1 weights, the same batches and the same attack starts; final clean, PGD and strong robust accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from replbook import attacks, clat
from replbook.cache import train_or_load
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


@dataclass
class SeedResult:
    seed: int
    stage1_curve: list[dict] = field(default_factory=list)  # per epoch: clean, robust
    curves: dict[str, list[dict]] = field(default_factory=dict)  # arm → per epoch of stage 2
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # "stage 1" and arms → clean, robust(, strong)
    selections: dict[str, list[dict]] = field(default_factory=dict)  # CLAT-loss arms → one record per selection


def excluded_layers(model: torch.nn.Module, candidates: str) -> frozenset[int]:
    layers = model.layers
    logit = {len(layers) - 1}
    if candidates == "conv":
        return frozenset(i for i, layer in enumerate(layers) if not isinstance(layer, torch.nn.Conv2d)) | logit
    return frozenset(logit)


def _evaluate(model, x, y, p: dict[str, Any], steps: int, seed: int) -> dict[str, float]:
    """Clean and PGD-``steps`` robust accuracy (eval mode)."""
    model.eval()
    return {"clean": attacks.accuracy(model, x, y, p["eval_batch_size"]),
            "robust": attacks.robust_accuracy(model, x, y, p["eps"], p["alpha"], steps, seed=seed,
                                              batch_size=p["eval_batch_size"])}


def _final(model, data: dict[str, torch.Tensor], p: dict[str, Any], seed: int, name: str,
           num_classes: int) -> dict[str, Any]:
    """Clean and PGD-``eval_steps`` accuracy on the test images; for :data:`STRONG_MODELS`, on the first
    ``n_strong`` of them, the worst case over that PGD and the strong attacks (``strong``) beside the PGD value on
    the same images (``robust_subset``), so the two read on one footing."""
    model.eval()
    x, y = data["xt"], data["yt"]
    mask = attacks.robust_mask(model, x, y, p["eps"], p["alpha"], p["eval_steps"], seed=seed,
                               batch_size=p["eval_batch_size"])
    out = {"clean": attacks.accuracy(model, x, y, p["eval_batch_size"]), "robust": float(mask.float().mean())}
    if p["strong_eval"] != "none" and name in STRONG_MODELS:
        n = p["n_strong"]
        out["robust_subset"] = float(mask[:n].float().mean())
        out["strong"] = attacks.strong_robust_accuracy(
            model, x[:n], y[:n], p["eps"], p["strong_eval"], p["strong_steps"], num_classes, seed,
            p["eval_batch_size"], robust=mask[:n])
    return out


def train_stage1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, p: dict[str, Any], gen: torch.Generator,
                 augment, curve_data: tuple[torch.Tensor, torch.Tensor], seed: int) -> list[dict]:
    """Stage 1: PGD-AT from scratch with a linear eps warm-up; returns the per-epoch clean and robust accuracy on
    ``curve_data``."""
    opt = torch.optim.SGD(model.parameters(), lr=p["lr1"], momentum=0.9)
    curve = []
    for epoch in progress(range(p["stage1_epochs"]), desc=f"seed {seed} stage 1", leave=False):
        # A linear eps ramp: PGD-AT from scratch at full eps can sit at chance for many epochs.
        ramp = min(1.0, (epoch + 1) / p["eps_warmup"]) if p["eps_warmup"] else 1.0
        attacks.adversarial_train_epoch(model, x, y, opt, p["eps"] * ramp, p["alpha"] * ramp,
                                        p["train_steps"], p["batch_size"], gen, augment=augment)
        curve.append(_evaluate(model, *curve_data, p, p["curve_steps"], seed))
    return curve


def run_seed(p: dict[str, Any], data: dict[str, Any], seed: int, device: torch.device) -> SeedResult:
    """Stage 1 (cached by content hash) and every stage-2 arm in ``p["arms"]`` for one seed."""
    torch.set_num_threads(p["threads"])
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data["x"]), generator=gen)[: p["n_train"]]
    x, y = data["x"][idx], data["y"][idx]
    x, y = x.to(device), y.to(device)
    test = {"xt": data["xt"][: p["n_test"]].to(device), "yt": data["yt"][: p["n_test"]].to(device)}
    xc, yc = test["xt"][: p["n_curve"]], test["yt"][: p["n_curve"]]
    augment = random_crop_flip if p["augment"] else None
    num_classes = data["num_classes"]
    result = SeedResult(seed)

    torch.manual_seed(seed)
    model = build_model(p["arch"], tuple(x.shape[1:]), num_classes).to(device)
    hyper = {"seed": seed, **{k: p[k] for k in ("eps", "eps_warmup", "alpha", "train_steps", "stage1_epochs", "lr1",
                                                 "batch_size", "augment", "curve_steps", "eval_batch_size")}}
    result.stage1_curve = train_or_load(
        f"clat-stage1-{p['arch']}", model, lambda: train_stage1(model, x, y, p, gen, augment, (xc, yc), seed),
        data=(x, y, xc, yc), hyper=hyper, code=(train_stage1, attacks.adversarial_train_epoch, _evaluate))
    stage1_state = {k: v.clone() for k, v in model.state_dict().items()}
    result.final["stage 1"] = _final(model, test, p, seed, "stage 1", num_classes)

    for arm in progress(p["arms"], desc=f"seed {seed} stage 2", leave=False):
        spec = ARM_SPECS[arm]
        model.load_state_dict(stage1_state)
        arm_gen = torch.Generator().manual_seed(seed + 1000)  # every arm sees the same batches and starts
        curve: list[dict] = []

        def record(m, curve=curve, arm=arm):
            if arm in CURVE_ARMS:  # the other controls skip the per-epoch curve: it is half their cost on CPU
                curve.append(_evaluate(m, xc, yc, p, p["curve_steps"], seed))

        if spec["kind"] in ("at", "trades"):
            lr = p["lr2"] * spec.get("lr_factor", 1.0)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            for _ in range(p["stage2_epochs"]):
                attacks.adversarial_train_epoch(
                    model, x, y, opt, p["eps"], p["alpha"], p["train_steps"], p["batch_size"], arm_gen,
                    loss="pgd" if spec["kind"] == "at" else "trades", trades_beta=p["trades_beta"], augment=augment)
                record(model)
        else:
            result.selections[arm] = clat.clat_finetune(
                model, model.layers, x, y, p["stage2_epochs"], p["k"], p["beta"], p["lr2"], p["eps"], p["alpha"],
                p["train_steps"], p["batch_size"], arm_gen, p["reselect_every"],
                excluded_layers(model, p["candidates"]), on_epoch=lambda _e, m, record=record: record(m),
                selection=spec["selection"], augment=augment)
        if curve:
            result.curves[arm] = curve
        result.final[arm] = _final(model, test, p, seed, arm, num_classes)
    return result



def run_seeds(p: dict[str, Any], data: dict[str, Any], device: torch.device) -> list[SeedResult]:
    """Every seed of the protocol on ``data`` (x, y, xt, yt, num_classes), with a progress bar over seeds."""
    return [run_seed(p, data, seed, device) for seed in progress(range(p["seeds"]), desc="seeds")]


def best_minus_last(curve: list[dict]) -> float:
    """Robust overfitting: best robust accuracy over the epochs minus the last one."""
    robust = [c["robust"] for c in curve]
    return max(robust) - robust[-1]
