"""The OSR-ViT miniature: procedural 64×64 open-set scenes (:mod:`replbook.data.shape_scenes`), a small dense
THPN and baseline detector, and a tiny ViT (``transformers.ViTModel``) pre-trained here on scenes of *auxiliary*
shapes, none of them a known or unknown test shape: the stand-in for DINOv2, which no offline source provides."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from replbook import osr
from replbook.cache import train_or_load
from replbook.data import shape_scenes
from replbook.data.shape_scenes import AUXILIARY, KNOWN, UNKNOWN, Scene, make_scenes
from replbook.experiments.osrvit.common import (
    DETECTORS,
    DetectionSplit,
    Splits,
    fraction_indices,
    run_seed,
    train_dense,
)
from replbook.models.vit_encoder import ImageEncoder, tiny_vit
from replbook.parallel import in_workers
from replbook.progress import progress

#: Seeds of the scenes: the data stay fixed across the experiment's seeds (which vary subsets and training).
DATA_SEED = 2404


def to_split(scenes: list[Scene]) -> DetectionSplit:
    """Scenes → images [N, 1, 64, 64] and their labelled boxes (unknown test shapes keep labels ≥ K)."""
    images = torch.from_numpy(np.stack([s.image for s in scenes]))[:, None]
    return DetectionSplit(images, [osr.ImageTruth(s.boxes, s.labels) for s in scenes])


@functools.lru_cache(maxsize=2)
def _splits(n_train: int, n_val: int, n_test: int, unlabelled_rate: float, unknown_rate: float) -> Splits:
    train_val = make_scenes(n_train + n_val, DATA_SEED, "train", unlabelled_rate=unlabelled_rate)
    test = make_scenes(n_test, DATA_SEED, "test", unknown_rate=unknown_rate)
    return Splits(to_split(train_val[:n_train]), to_split(train_val[n_train:]), to_split(test), len(KNOWN))


def make_splits(p: dict[str, Any]) -> Splits:
    """Training and validation scenes (known objects labelled; an unlabelled unknown object in a share
    ``unlabelled_rate`` of them) and test scenes (each object unknown with probability ``unknown_rate``)."""
    return _splits(p["n_train"], p["n_val"], p["n_test"], p["unlabelled_rate"], p["unknown_rate"])


def vit(p: dict[str, Any]) -> ImageEncoder:
    """The miniature's ViT at its (seeded) random initialisation."""
    torch.manual_seed(DATA_SEED)
    return tiny_vit(p["vit_hidden"], p["vit_layers"], image_size=p["crop_size"], patch=p["vit_patch"])


def pretrain_vit(encoder: ImageEncoder, p: dict[str, Any]) -> dict[str, Any]:
    """Supervised pre-training on crops of the auxiliary scenes (:data:`AUXILIARY` shapes + a background class of
    random boxes away from every object), AdamW with cosine decay; the linear head is discarded."""
    scenes = make_scenes(p["n_aux"], DATA_SEED, "auxiliary")
    data = to_split(scenes)
    rng = np.random.default_rng(DATA_SEED)
    boxes, labels = [], []
    for t in data.truths:
        size = rng.uniform(10, 26, (6, 1))
        xy = rng.uniform(0, 64 - size, (6, 2))
        rand = torch.as_tensor(np.concatenate([xy, xy + size], 1), dtype=torch.float32)
        obj = torch.as_tensor(t.boxes, dtype=torch.float32)
        bg = rand[osr.box_iou(rand, obj).max(1).values < 0.2][:2] if len(obj) else rand[:2]
        boxes.append(torch.cat([obj, bg]))
        labels += [torch.as_tensor(t.labels) - len(KNOWN + UNKNOWN), torch.full((len(bg),), len(AUXILIARY))]
    crops = osr.crop_and_resize(data.images, boxes, p["crop_size"], p["context"])
    labels = torch.cat(labels)
    head = nn.Linear(encoder.feature_dim, len(AUXILIARY) + 1)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=p["pretrain_lr"], weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["pretrain_lr"], total_steps=p["pretrain_steps"],
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(DATA_SEED)
    encoder.train()
    losses, correct = [], []
    for _ in progress(range(p["pretrain_steps"]), desc="pre-training the ViT", leave=False):
        idx = torch.randint(len(labels), (p["pretrain_batch"],), generator=gen)
        x = crops[idx]
        x = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5, x.flip(-1), x)
        logits = head(encoder(x))
        loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        correct.append(float((logits.argmax(1) == labels[idx]).float().mean()))
    encoder.eval()
    every = max(1, len(losses) // 50)
    return {"loss": losses[::every], "accuracy": correct[::every], "n_crops": len(labels)}


def pretrained_vit(p: dict[str, Any]) -> tuple[ImageEncoder, dict[str, Any]]:
    """The pre-trained ViT, from the cache when this code and these settings trained it before."""
    encoder = vit(p)
    keys = ("n_aux", "crop_size", "context", "vit_hidden", "vit_layers", "pretrain_steps", "pretrain_batch",
            "pretrain_lr")
    log = train_or_load("osrvit-vit", encoder, lambda: pretrain_vit(encoder, p), data=("auxiliary", DATA_SEED),
                        hyper={k: p[k] for k in keys},
                        code=(pretrain_vit, vit, tiny_vit, ImageEncoder, shape_scenes, osr.crop_and_resize))
    return encoder, log


def train_detectors(p: dict[str, Any], sub: DetectionSplit, seed: int) -> tuple[dict[str, nn.Module], dict]:
    """THPN and the baseline trained on ``sub`` (or loaded); the arms always need both (``validate``)."""
    trained = {name: train_dense(p, name, sub, seed, len(KNOWN), prefix="osrvit") for name in DETECTORS}
    return {k: v[0] for k, v in trained.items()}, {k: v[1] for k, v in trained.items()}


def _train_job(kind: str, fraction: float, seed: int, p: dict[str, Any], threads: int) -> None:
    """One training job of the pool: the ViT's pre-training, or one detector at one fraction and seed (cached)."""
    torch.set_num_threads(threads)
    if kind == "vit":
        pretrained_vit(p)
    else:
        splits = make_splits(p)
        sub = splits.train.subset(fraction_indices(len(splits.train), fraction, seed))
        train_dense(p, kind, sub, seed, len(KNOWN), prefix="osrvit")


def _job(fraction: float, seed: int, p: dict[str, Any], threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    splits = make_splits(p)
    encoders = {}
    if "osrvit" in p["arms"]:
        encoders["osrvit"] = pretrained_vit(p)[0]
    if "osrvit-random" in p["arms"]:
        encoders["osrvit-random"] = vit(p)
    return run_seed(p, splits, encoders, fraction, seed, lambda sub, s: train_detectors(p, sub, s))


def run_miniature(p: dict[str, Any]) -> dict[str, Any]:
    """Every training first, as balanced jobs in ``workers`` one-thread processes (the ViT's pre-training, then
    each detector at each fraction and seed, all cached), then the evaluation of every (fraction, seed)."""
    threads = 1 if p["workers"] > 1 else p["threads"]
    trainings = [("vit", 1.0, 0, p)] if "osrvit" in p["arms"] else []
    trainings += [(name, f, s, p) for f in p["fractions"] for s in range(p["seeds"]) for name in DETECTORS]
    in_workers(trainings, _train_job, p["workers"], threads, desc="training (ViT, detectors)")
    jobs = [(f, s, p) for f in p["fractions"] for s in range(p["seeds"])]
    runs = in_workers(jobs, _job, p["workers"], threads, desc="evaluating (fraction, seed)")
    torch.set_num_threads(p["threads"])
    log = pretrained_vit(p)[1] if "osrvit" in p["arms"] else None
    splits = make_splits(p)
    return {"runs": runs, "pretrain": log, "n_known": splits.n_known,
            "test_images": [splits.test.images[i, 0].numpy().tolist() for i in range(p["n_examples"])],
            "test_truths": [{"boxes": t.boxes.tolist(), "labels": t.labels.tolist()}
                            for t in splits.test.truths[:p["n_examples"]]]}
