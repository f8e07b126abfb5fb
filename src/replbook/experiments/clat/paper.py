"""The CLAT paper profile: the protocol of :mod:`.common` on CIFAR-10/100 from local files
(``data_manifests/cifar10.yaml``, ``cifar100.yaml``) with the paper's residual networks, on a GPU when present."""

from __future__ import annotations

from replbook.data.cifar import load_cifar
from replbook.experiments.clat.common import Protocol, SeedResult, run_seeds
from replbook.profiles import resolve_device


def run_paper(dataset: str, device: str, proto: Protocol) -> list[SeedResult]:
    """Every seed of the protocol on the CIFAR set named by ``dataset`` (``cifar10`` or ``cifar100``), on
    ``device`` (``auto`` picks CUDA when present)."""
    x, y, classes = load_cifar(dataset, "train")
    xt, yt, _ = load_cifar(dataset, "test")
    data = {"x": x, "y": y, "xt": xt, "yt": yt, "num_classes": len(classes)}
    return run_seeds(proto, data, resolve_device(device))
