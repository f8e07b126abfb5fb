"""The CLAT paper profile: the protocol of :mod:`.common` on CIFAR-10/100 from local files
(``data_manifests/cifar10.yaml``, ``cifar100.yaml``) with the paper's residual networks, on a GPU when present."""

from __future__ import annotations

from typing import Any

from replbook.data.cifar import load_cifar
from replbook.experiments.clat.common import SeedResult, run_seeds
from replbook.profiles import resolve_device


def run_paper(p: dict[str, Any]) -> list[SeedResult]:
    """Every seed of the protocol on the CIFAR set named by ``p["dataset"]``."""
    x, y, classes = load_cifar(p["dataset"], "train")
    xt, yt, _ = load_cifar(p["dataset"], "test")
    data = {"x": x, "y": y, "xt": xt, "yt": yt, "num_classes": len(classes)}
    return run_seeds(p, data, resolve_device(p["device"]))
