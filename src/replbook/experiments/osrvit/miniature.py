"""The OSR-ViT miniature: procedural 64×64 open-set scenes (:mod:`replbook.data.shape_scenes`), a small dense
THPN and baseline detector, and a tiny ViT (``transformers.ViTModel``) pre-trained here on scenes of *auxiliary*
shapes, none of them a known or unknown test shape: the stand-in for DINOv2, which no offline source provides."""

from __future__ import annotations

import functools
from dataclasses import dataclass
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
    DetectorSetup,
    OsrvitResults,
    Protocol,
    Schedule,
    SeedRun,
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


@dataclass(frozen=True)
class SceneSetup:
    """The miniature's scenes: how many of each split, and how often an unknown object appears."""

    n_train: int
    n_val: int
    n_test: int
    unlabelled_rate: float
    unknown_rate: float


@dataclass(frozen=True)
class VitSetup:
    """The miniature's ViT and its pre-training on the auxiliary scenes (the parameters of the same names)."""

    n_aux: int
    crop_size: int
    context: float
    vit_hidden: int
    vit_layers: int
    vit_patch: int
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float


#: The settings that decide the pre-trained ViT's weights (its cache key).
VIT_HYPER = ("n_aux", "crop_size", "context", "vit_hidden", "vit_layers", "pretrain_steps", "pretrain_batch",
             "pretrain_lr")


def to_split(scenes: list[Scene]) -> DetectionSplit:
    """Scenes → images [N, 1, 64, 64] and their labelled boxes (unknown test shapes keep labels ≥ K)."""
    images = torch.from_numpy(np.stack([s.image for s in scenes]))[:, None]
    return DetectionSplit(images, [osr.ImageTruth(s.boxes, s.labels) for s in scenes])


@functools.lru_cache(maxsize=2)
def make_splits(scenes: SceneSetup) -> Splits:
    """Training and validation scenes (known objects labelled; an unlabelled unknown object in a share
    ``unlabelled_rate`` of them) and test scenes (each object unknown with probability ``unknown_rate``)."""
    train_val = make_scenes(scenes.n_train + scenes.n_val, DATA_SEED, "train", unlabelled_rate=scenes.unlabelled_rate)
    test = make_scenes(scenes.n_test, DATA_SEED, "test", unknown_rate=scenes.unknown_rate)
    return Splits(to_split(train_val[:scenes.n_train]), to_split(train_val[scenes.n_train:]), to_split(test),
                  len(KNOWN))


def vit(setup: VitSetup) -> ImageEncoder:
    """The miniature's ViT at its (seeded) random initialisation."""
    torch.manual_seed(DATA_SEED)
    return tiny_vit(setup.vit_hidden, setup.vit_layers, image_size=setup.crop_size, patch=setup.vit_patch)


def pretrain_vit(encoder: ImageEncoder, setup: VitSetup) -> dict[str, Any]:
    """Supervised pre-training on crops of the auxiliary scenes (:data:`AUXILIARY` shapes + a background class of
    random boxes away from every object), AdamW with cosine decay; the linear head is discarded."""
    scenes = make_scenes(setup.n_aux, DATA_SEED, "auxiliary")
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
    crops = osr.crop_and_resize(data.images, boxes, setup.crop_size, setup.context)
    labels = torch.cat(labels)
    head = nn.Linear(encoder.feature_dim, len(AUXILIARY) + 1)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=setup.pretrain_lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=setup.pretrain_lr, total_steps=setup.pretrain_steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(DATA_SEED)
    encoder.train()
    losses, correct = [], []
    for _ in progress(range(setup.pretrain_steps), desc="pre-training the ViT", leave=False):
        idx = torch.randint(len(labels), (setup.pretrain_batch,), generator=gen)
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


def pretrained_vit(setup: VitSetup) -> ImageEncoder:
    """The pre-trained ViT, from the cache when this code and these settings trained it before."""
    encoder = vit(setup)
    train_or_load("osrvit-vit", encoder, lambda: pretrain_vit(encoder, setup), data=("auxiliary", DATA_SEED),
                  hyper={k: getattr(setup, k) for k in VIT_HYPER},
                  code=(pretrain_vit, vit, tiny_vit, ImageEncoder, shape_scenes, osr.crop_and_resize))
    return encoder


def train_detectors(setup: DetectorSetup, sub: DetectionSplit, seed: int) -> dict[str, nn.Module]:
    """THPN and the baseline trained on ``sub`` (or loaded); the arms always need both (``validate``)."""
    return {name: train_dense(setup, name, sub, seed, len(KNOWN), prefix="osrvit")[0] for name in DETECTORS}


def _train_job(kind: str, fraction: float, seed: int, scenes: SceneSetup, vit_setup: VitSetup,
               detector: DetectorSetup, threads: int) -> None:
    """One training job of the pool: the ViT's pre-training, or one detector at one fraction and seed (cached)."""
    torch.set_num_threads(threads)
    if kind == "vit":
        pretrained_vit(vit_setup)
    else:
        splits = make_splits(scenes)
        sub = splits.train.subset(fraction_indices(len(splits.train), fraction, seed))
        train_dense(detector, kind, sub, seed, len(KNOWN), prefix="osrvit")


def _job(fraction: float, seed: int, scenes: SceneSetup, vit_setup: VitSetup, detector: DetectorSetup,
         protocol: Protocol, threads: int) -> SeedRun:
    torch.set_num_threads(threads)
    splits = make_splits(scenes)
    encoders = {}
    if "osrvit" in protocol.arms:
        encoders["osrvit"] = pretrained_vit(vit_setup)
    if "osrvit-random" in protocol.arms:
        encoders["osrvit-random"] = vit(vit_setup)
    return run_seed(protocol, splits, encoders, fraction, seed, lambda sub, s: train_detectors(detector, sub, s))


def run_miniature(schedule: Schedule, scenes: SceneSetup, vit_setup: VitSetup, detector: DetectorSetup,
                  protocol: Protocol) -> OsrvitResults:
    """Every training first, as balanced jobs in ``workers`` one-thread processes (the ViT's pre-training, then
    each detector at each fraction and seed, all cached), then the evaluation of every (fraction, seed)."""
    threads = 1 if schedule.workers > 1 else schedule.threads
    settings = (scenes, vit_setup, detector)
    trainings = [("vit", 1.0, 0, *settings)] if "osrvit" in protocol.arms else []
    trainings += [(name, f, s, *settings) for f in schedule.fractions for s in range(schedule.seeds)
                  for name in DETECTORS]
    in_workers(trainings, _train_job, schedule.workers, threads, desc="training (ViT, detectors)")
    jobs = [(f, s, *settings, protocol) for f in schedule.fractions for s in range(schedule.seeds)]
    runs = in_workers(jobs, _job, schedule.workers, threads, desc="evaluating (fraction, seed)")
    torch.set_num_threads(schedule.threads)
    splits = make_splits(scenes)
    shown = range(protocol.n_examples)
    return OsrvitResults(runs, splits.n_known, list(KNOWN),
                         test_images=splits.test.images[list(shown), 0].numpy().astype(np.float32),
                         test_truths=[splits.test.truths[i] for i in shown])
