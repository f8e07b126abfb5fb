"""The chapter's data and backbone, chosen by the settings: Fashion-MNIST and the even CNN (:mod:`.miniature`),
CIFAR-10 and VGG16-BN (:mod:`.paper`). Deterministic in the settings, so the server and every client process build
the same splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from replbook.experiments.fedprophet import miniature, paper
from replbook.experiments.fedprophet.common import split_clients

DATASETS = {"fashion-mnist": (miniature.SHAPE, miniature.CLASSES), **paper.DATASETS}
MODELS = {"even_cnn": miniature.atoms, "vgg16_bn": paper.atoms, "resnet34": paper.atoms}


def build_atoms(s: dict) -> list:
    """The backbone's atoms (name, module), freshly initialised."""
    if s["model"] not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}; got {s['model']!r}.")
    return MODELS[s["model"]](s)


def input_shape(s: dict) -> tuple[tuple[int, int, int], int]:
    """(channels, height, width) and classes of the settings' dataset."""
    if s["dataset"] == "fashion-mnist":
        return miniature.SHAPE, miniature.CLASSES
    return paper.shape(s)


def _load(s: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if s["dataset"] not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}; got {s['dataset']!r}.")
    loader = miniature.load if s["dataset"] == "fashion-mnist" else paper.load
    return loader(s["dataset"], split, s)


def load_data(s: dict) -> dict[str, Any]:
    """``{"val": (x, y), "test": (x, y), "clients": {seed: [(x, y) per client]}}``: ``n_train`` training images
    shared out over ``n_clients`` (the split redrawn per seed), ``n_val`` more training images held by the server
    for validation (APA and model selection), ``n_test`` test images."""
    x_all, y_all = _load(s, "train")
    x_test, y_test = _load(s, "test")
    need = s["n_train"] + s["n_val"]
    if need > len(x_all) or s["n_test"] > len(x_test):
        raise ValueError(f"n_train + n_val = {need} and n_test = {s['n_test']} exceed the {len(x_all)} training and "
                         f"{len(x_test)} test images of {s['dataset']}; lower them.")
    order = np.random.default_rng(s["data_seed"]).permutation(len(x_all))
    train_idx, val_idx = order[:s["n_train"]], order[s["n_train"]:need]
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    test_idx = np.random.default_rng(s["data_seed"] + 1).permutation(len(x_test))[:s["n_test"]]
    clients = {}
    for seed in s["seeds"]:
        parts = split_clients(y_train.numpy(), s["n_clients"], s["split"], s["dirichlet_alpha"], seed)
        clients[seed] = [(x_train[torch.from_numpy(p)], y_train[torch.from_numpy(p)]) for p in parts]
    return {"val": (x_all[val_idx], y_all[val_idx]), "test": (x_test[test_idx], y_test[test_idx]),
            "clients": clients}
