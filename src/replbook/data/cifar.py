"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the python-pickle release in a local folder (``paper`` profile).

torchvision does not import beside the CPU torch of this project, so this is a small numpy reader. The folders are
the extracted ``cifar-10-python.tar.gz`` (``cifar-10-batches-py/``) and ``cifar-100-python.tar.gz``
(``cifar-100-python/``) from https://www.cs.toronto.edu/~kriz/cifar.html; their manifests
(``data_manifests/cifar10.yaml``, ``cifar100.yaml``) name the environment variable that points at them and the md5
of every file, which is checked before anything is unpickled. Unpickling is restricted to numpy arrays besides
plain containers, so even a file that slipped past the checksum cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from replbook.assets import resolve

# The globals a numpy array's pickle needs (numpy 1 and numpy 2 module names), plus the bytes constructor that
# Python 3 writes at protocol <= 2 (a re-pickled copy of the release); nothing else may be loaded.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

LAYOUT = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "labels": b"labels", "meta": ("batches.meta", b"label_names")},
    "cifar100": {"train": ["train"], "test": ["test"], "labels": b"fine_labels",
                 "meta": ("meta", b"fine_label_names")},
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists.")


def read_batch(path: Path) -> dict:
    """One CIFAR python batch as a dict with bytes keys (``b'data'`` [N, 3072] uint8, ``b'labels'`` …)."""
    with open(path, "rb") as handle:
        try:
            return _ArrayUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path}: not a CIFAR python batch ({err}).") from err


def load_cifar(name: str = "cifar10", split: str = "train") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images [N, 3, 32, 32] float32 in [0, 1], labels [N] int64 (CIFAR-100: the 100 fine labels) and class names,
    from the folder named in ``data_manifests/<name>.yaml`` after checking every file's md5."""
    if name not in LAYOUT:
        raise ValueError(f"name must be one of {sorted(LAYOUT)}; got {name!r}.")
    layout = LAYOUT[name]
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    files = resolve(name)
    images, labels = [], []
    for batch_name in layout[split]:
        batch = read_batch(files[batch_name])
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{files[batch_name]}: expected data of shape [N, 3072]; got {data.shape}.")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[layout["labels"]], dtype=np.int64))
    meta_file, meta_key = layout["meta"]
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in read_batch(files[meta_file])[meta_key]]
    x = torch.from_numpy(np.concatenate(images).astype(np.float32) / 255.0)
    return x, torch.from_numpy(np.concatenate(labels)), classes
