"""The paper profile's data and backbones, as the official README's two settings: CIFAR-10 with VGG16-BN, and
Caltech-256 with ResNet-34 (:mod:`replbook.models.cascade_cnn`). CIFAR-10 comes from the python-pickle release in a
local folder (``data_manifests/cifar10.yaml``, md5-checked; :mod:`replbook.data.cifar`), Caltech-256 from its
extracted folder with our sha256 index (``data_manifests/caltech256.yaml``; :mod:`replbook.data.caltech256`). The
official runs start from ImageNet weights, which this profile does not load: it trains from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from replbook.data.caltech256 import load_caltech256
from replbook.data.cifar import load_cifar
from replbook.models.cascade_cnn import resnet34_atoms, vgg16_bn_atoms

DATASETS = {"cifar10": ((3, 32, 32), 10), "caltech256": ((3, 224, 224), 256)}


def shape(s: dict) -> tuple[tuple[int, int, int], int]:
    """Input shape and classes of the paper dataset ``s["dataset"]`` (Caltech-256 at ``s["image_size"]``)."""
    (c, h, w), classes = DATASETS[s["dataset"]]
    if s["dataset"] == "caltech256":
        h = w = s["image_size"]
    return (c, h, w), classes


def load(dataset: str, split: str, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, H, W] in [0, 1] and labels; Caltech-256 decodes only the images the run can use."""
    if dataset == "cifar10":
        x, y, _ = load_cifar("cifar10", split)
        return x, y
    limit = s["n_train"] + s["n_val"] if split == "train" else s["n_test"]
    return load_caltech256(split, size=s["image_size"], seed=s["data_seed"], limit=limit)


def atoms(s: dict) -> list[tuple[str, nn.Module]]:
    if s["model"] == "resnet34":
        return resnet34_atoms(s["num_classes"], in_channels=s["input_shape"][0])
    return vgg16_bn_atoms(s["num_classes"], in_channels=s["input_shape"][0])
