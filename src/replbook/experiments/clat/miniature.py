"""The CLAT miniature: the protocol of :mod:`.common` on a small Fashion-MNIST subset (Debian's
``dataset-fashion-mnist``) with a small CNN, on the CPU."""

from __future__ import annotations

import torch

from replbook.data.images import load_fashion_mnist
from replbook.experiments.clat.common import Protocol, SeedResult, run_seeds


def run_miniature(proto: Protocol) -> list[SeedResult]:
    """Every seed of the protocol on Fashion-MNIST."""
    (x, y), (xt, yt) = load_fashion_mnist("train"), load_fashion_mnist("test")
    return run_seeds(proto, {"x": x, "y": y, "xt": xt, "yt": yt, "num_classes": 10}, torch.device("cpu"))
