"""Offline image datasets: Fashion-MNIST from Debian's package, read from its IDX files."""

from __future__ import annotations

import gzip

import numpy as np
import torch

from replbook.assets import resolve

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def _read_idx(path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] float32 in [0, 1] and labels [N] int64 of the ``train`` (60k) or ``test`` (10k) split,
    checksum-verified through ``data_manifests/fashion-mnist.yaml``."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    files = resolve("fashion-mnist")
    folder = "/usr/share/datasets/fashion-mnist/"
    images = _read_idx(files[f"{folder}{prefix}-images-idx3-ubyte.gz"], 16).reshape(-1, 1, 28, 28)
    labels = _read_idx(files[f"{folder}{prefix}-labels-idx1-ubyte.gz"], 8)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch [B, C, H, W]: zero-pad by ``pad``, crop back to H×W at a random
    offset per image, flip half of the images horizontally."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    out[flip.to(x.device)] = out[flip.to(x.device)].flip(-1)
    return out


def load_digits_28() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's handwritten digits (1,797 images of 8×8, 16 grey levels; Alpaydin and Kaynak 1998, shipped
    inside scikit-learn) as [N, 1, 28, 28] float32 in [0, 1] (bilinear upsampling to 24×24 and a 2-pixel border,
    like MNIST's margin) and labels [N] int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False).clamp(0, 1)
    return torch.nn.functional.pad(x, (2, 2, 2, 2)), torch.from_numpy(digits.target.astype(np.int64))
