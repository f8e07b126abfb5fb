"""The miniature's data and backbone (``smoke`` and ``cpu``): Fashion-MNIST (Debian's ``dataset-fashion-mnist``,
checksum-verified) and the even CNN of :func:`replbook.models.cascade_cnn.even_cnn_atoms`."""

from __future__ import annotations

import torch
from torch import nn

from replbook.data.images import load_fashion_mnist
from replbook.models.cascade_cnn import even_cnn_atoms

SHAPE, CLASSES = (1, 28, 28), 10


def load(dataset: str, split: str, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images [N, 1, 28, 28] in [0, 1] and labels."""
    return load_fashion_mnist(split)


def atoms(s: dict) -> list[tuple[str, nn.Module]]:
    c, h, _ = s["input_shape"]
    return even_cnn_atoms(s["width"], s["num_classes"], in_channels=c, image_size=h, blocks=s["blocks"],
                          batch_norm=s["batch_norm"])
