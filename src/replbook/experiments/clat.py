"""The CLAT miniature: PGD adversarial training on a small Fashion-MNIST subset until it overfits robustly (stage 1),
then the same budget of continued PGD-AT on all layers against CLAT on its k most critical layers (stage 2), over
several seeds with paired differences."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from replbook import attacks, clat
from replbook.cache import cache_key, is_cached, load_state, model_path, save_state, tensor_hash
from replbook.data.images import load_fashion_mnist
from replbook.models import SmallCNN
from replbook.profiles import ChapterParams, Param
from replbook.progress import progress

PARAMS = ChapterParams(
    slug="clat",
    params=(
        Param("seeds", int, "Seeds (subset, initialisation, attacks).", 1, 20),
        Param("n_train", int, "Training images: small, so that adversarial training overfits.", 32, 60_000),
        Param("n_test", int, "Test images for the final evaluation.", 32, 10_000),
        Param("n_curve", int, "Test images for the per-epoch robust accuracy curves.", 32, 10_000),
        Param("eps", float, "L-inf radius on [0, 1] images.", 0.0, 1.0),
        Param("alpha", float, "PGD step size.", 1e-4, 1.0),
        Param("train_steps", int, "PGD steps during training.", 1, 50),
        Param("eval_steps", int, "PGD steps of the final evaluation.", 1, 200),
        Param("curve_steps", int, "PGD steps of the per-epoch curves.", 1, 50),
        Param("stage1_epochs", int, "Epochs of stage-1 PGD-AT.", 1, 500),
        Param("eps_warmup", int, "Stage-1 epochs over which eps ramps up linearly (0 for none).", 0, 500),
        Param("stage2_epochs", int, "Epochs of each stage-2 arm.", 1, 500),
        Param("lr1", float, "Stage-1 learning rate (SGD, momentum 0.9).", 1e-5, 1.0),
        Param("lr2", float, "Stage-2 learning rate of both arms.", 1e-5, 1.0),
        Param("k", int, "Critical layers CLAT trains.", 1, 10),
        Param("beta", float, "Weight of the criticality term.", 0.0, 100.0),
        Param("reselect_every", int, "Epochs between reselections.", 1, 500),
        Param("candidates", str, "Layers CLAT may select.", choices=("conv", "all-but-logit")),
        Param("batch_size", int, "Training batch size.", 8, 4096),
        Param("threads", int, "torch threads.", 1, 64),
    ),
    defaults={
        "smoke": dict(seeds=2, n_train=64, n_test=64, n_curve=32, eps=0.1, alpha=0.025, train_steps=2,
                      eval_steps=5, curve_steps=2, stage1_epochs=3, eps_warmup=1, stage2_epochs=2, lr1=0.05,
                      lr2=0.01, k=2, beta=0.1, reselect_every=1, candidates="conv", batch_size=32, threads=2),
        "cpu": dict(seeds=5, n_train=128, n_test=1000, n_curve=150, eps=0.1, alpha=0.025, train_steps=3,
                    eval_steps=20, curve_steps=3, stage1_epochs=40, eps_warmup=5, stage2_epochs=12, lr1=0.05,
                    lr2=0.01, k=2, beta=0.1, reselect_every=4, candidates="conv", batch_size=32, threads=2),
        "paper": dict(seeds=5, n_train=60_000, n_test=10_000, n_curve=1000, eps=0.1, alpha=0.01, train_steps=10,
                      eval_steps=50, curve_steps=10, stage1_epochs=60, eps_warmup=5, stage2_epochs=20, lr1=0.05,
                      lr2=0.01, k=2, beta=0.1, reselect_every=10, candidates="conv", batch_size=128, threads=16),
    },
    assets={"smoke": ["fashion-mnist"], "cpu": ["fashion-mnist"], "paper": ["fashion-mnist"]},
)

ARMS = ("continued AT", "CLAT")


@dataclass
class SeedResult:
    seed: int
    stage1_curve: list[dict] = field(default_factory=list)  # per epoch: clean, robust
    curves: dict[str, list[dict]] = field(default_factory=dict)  # arm → per epoch of stage 2
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # "stage 1" and arms → clean, robust
    selections: list[dict] = field(default_factory=list)


def _exclude(model: SmallCNN, candidates: str) -> frozenset[int]:
    layers = model.layers
    logit = {len(layers) - 1}
    if candidates == "conv":
        return frozenset(i for i, layer in enumerate(layers) if not isinstance(layer, torch.nn.Conv2d)) | logit
    return frozenset(logit)


def _evaluate(model, x, y, p: dict[str, Any], steps: int, seed: int) -> dict[str, float]:
    """Clean and PGD-``steps`` robust accuracy (eval mode)."""
    model.eval()
    return {"clean": attacks.accuracy(model, x, y),
            "robust": attacks.robust_accuracy(model, x, y, p["eps"], p["alpha"], steps, seed=seed)}


def run_seed(p: dict[str, Any], data: dict[str, torch.Tensor], seed: int) -> SeedResult:
    torch.set_num_threads(p["threads"])
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data["x"]), generator=gen)[: p["n_train"]]
    x, y = data["x"][idx], data["y"][idx]
    xc, yc = data["xt"][: p["n_curve"]], data["yt"][: p["n_curve"]]
    xt, yt = data["xt"][: p["n_test"]], data["yt"][: p["n_test"]]
    result = SeedResult(seed)

    torch.manual_seed(seed)
    model = SmallCNN()
    key = cache_key(stage=1, data=tensor_hash(x), seed=seed, **{k: p[k] for k in (
        "eps", "eps_warmup", "alpha", "train_steps", "stage1_epochs", "lr1", "batch_size")}, v=1)
    path = model_path("clat-stage1", key)
    curve_path = path.with_suffix(".curve.json")
    if is_cached(path) and curve_path.exists():
        load_state(model, path)
        result.stage1_curve = json.loads(curve_path.read_text())
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p["lr1"], momentum=0.9)
        for epoch in progress(range(p["stage1_epochs"]), desc=f"seed {seed} stage 1", leave=False):
            # A linear eps ramp: PGD-AT from scratch at full eps can sit at chance for many epochs.
            ramp = min(1.0, (epoch + 1) / p["eps_warmup"]) if p["eps_warmup"] else 1.0
            attacks.adversarial_train_epoch(model, x, y, opt, p["eps"] * ramp, p["alpha"] * ramp,
                                            p["train_steps"], p["batch_size"], gen)
            result.stage1_curve.append(_evaluate(model, xc, yc, p, p["curve_steps"], seed))
        save_state(model, path)
        curve_path.write_text(json.dumps(result.stage1_curve))
    stage1_state = {k: v.clone() for k, v in model.state_dict().items()}
    result.final["stage 1"] = _evaluate(model, xt, yt, p, p["eval_steps"], seed)

    for arm in ARMS:
        model.load_state_dict(stage1_state)
        arm_gen = torch.Generator().manual_seed(seed + 1000)  # both arms see the same batches and starts
        curve: list[dict] = []
        if arm == "continued AT":
            opt = torch.optim.SGD(model.parameters(), lr=p["lr2"], momentum=0.9)
            for _ in range(p["stage2_epochs"]):
                attacks.adversarial_train_epoch(model, x, y, opt, p["eps"], p["alpha"], p["train_steps"],
                                                p["batch_size"], arm_gen)
                curve.append(_evaluate(model, xc, yc, p, p["curve_steps"], seed))
        else:
            result.selections = clat.clat_finetune(
                model, model.layers, x, y, p["stage2_epochs"], p["k"], p["beta"], p["lr2"], p["eps"], p["alpha"],
                p["train_steps"], p["batch_size"], arm_gen, p["reselect_every"], _exclude(model, p["candidates"]),
                on_epoch=lambda _e, m, curve=curve: curve.append(_evaluate(m, xc, yc, p, p["curve_steps"], seed)))
        result.curves[arm] = curve
        result.final[arm] = _evaluate(model, xt, yt, p, p["eval_steps"], seed)
    return result


def run(p: dict[str, Any]) -> list[SeedResult]:
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    data = {"x": x, "y": y, "xt": xt, "yt": yt}
    return [run_seed(p, data, seed) for seed in progress(range(p["seeds"]), desc="seeds")]


def paired_difference(a: list[float], b: list[float], level: float = 0.95) -> dict[str, float]:
    """Mean of a − b over seeds with a Student-t interval (n − 1 degrees of freedom); n = 1 gives no interval."""
    d = np.asarray(a) - np.asarray(b)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "n": len(d)}
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(d)}


def best_minus_last(curve: list[dict]) -> float:
    """Robust overfitting: best robust accuracy over the epochs minus the last one."""
    robust = [c["robust"] for c in curve]
    return max(robust) - robust[-1]
