"""Backbones as lists of atoms (named blocks) for cascade training (FedProphet).

``even_cnn_atoms``: the miniature's CNN for 28×28 grey images, blocks chosen so that no block dominates the training
memory (the channel count doubles where the resolution halves). ``vgg16_bn_atoms``: VGG16 with batch norm, one atom
per convolution (the pooling in the atom it follows) and the classifier as the last atom, for 32×32 CIFAR images.
"""

from __future__ import annotations

from torch import nn


def _conv(c_in: int, c_out: int, pool: bool, bn: bool = False, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def even_cnn_atoms(width: int = 16, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                   blocks: int = 2, batch_norm: bool = False) -> list[tuple[str, nn.Module]]:
    """``3 × blocks`` 3×3 conv-ReLU atoms ``c1``, ``c2``, … and a linear classifier ``fc``. The first block of each
    of the three resolutions halves it with stride 2 (no max-pool, whose indices would double a block's memory)
    while the channels go w, 2w, 4w, so that every block keeps activations of similar size and no block dominates
    the training memory."""
    atoms: list[tuple[str, nn.Module]] = []
    c_in, side = in_channels, image_size
    for level in range(3):
        c_out = width * 2 ** level
        for b in range(blocks):
            atoms.append((f"c{len(atoms) + 1}", _conv(c_in, c_out, pool=False, bn=batch_norm,
                                                       stride=2 if b == 0 else 1)))
            c_in = c_out
        side = (side + 1) // 2
    atoms.append(("fc", nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, num_classes))))
    return atoms


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_bn_atoms(num_classes: int = 10, in_channels: int = 3) -> list[tuple[str, nn.Module]]:
    """VGG16-BN for 32×32 inputs (the official FedProphet CIFAR-10 model's layout): thirteen conv-BN-ReLU atoms, the
    five max-pools folded into the atom before them, and a linear classifier on the 512-d output."""
    atoms: list[tuple[str, nn.Module]] = []
    c_in = in_channels
    index = 0
    for j, v in enumerate(VGG16):
        if v == "M":
            continue
        pool = j + 1 < len(VGG16) and VGG16[j + 1] == "M"
        atoms.append((f"conv{index + 1}", _conv(c_in, int(v), pool=pool, bn=True)))
        c_in, index = int(v), index + 1
    atoms.append(("fc", nn.Sequential(nn.Flatten(), nn.Linear(512, num_classes))))
    return atoms


def resnet34_atoms(num_classes: int = 256, in_channels: int = 3) -> list[tuple[str, nn.Module]]:
    """ResNet-34 (He et al. 2016; the official FedProphet Caltech-256 model) for 224×224 inputs, one atom per
    residual block: the stem (7×7 conv stride 2, BN, ReLU, 3×3 max-pool), sixteen basic blocks (3, 4, 6, 3 at 64,
    128, 256, 512 channels) and the classifier (global average pool, linear)."""
    from replbook.models.resnet import _BasicBlock as BasicBlock

    atoms: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)))]
    c_in = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        for b in range(blocks):
            atoms.append((f"layer{stage + 1}_{b}", BasicBlock(c_in, width, 2 if b == 0 and stage > 0 else 1)))
            c_in = width
    atoms.append(("fc", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))))
    return atoms
