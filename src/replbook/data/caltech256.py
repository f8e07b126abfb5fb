"""Caltech-256 (Griffin, Holub and Perona 2007) from the extracted ``256_ObjectCategories/`` folder (``paper``
profile of the FedProphet chapter).

The release publishes no checksums, so the folder carries our index, ``SHA256SUMS`` (``sha256sum`` output of every
JPEG, paths relative to the folder), made once after extracting; every image is verified against it before it is
decoded. The manifest ``data_manifests/caltech256.yaml`` names the environment variable that points at the folder.
Classes are the 256 object folders ``001.ak47`` … ``256.toad``; ``257.clutter`` is left out. The release has no
train/test split: :func:`load_caltech256` draws one per class from a seed [recon: the official split is not in the
specification].
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from replbook.assets import AssetError, resolve
from replbook.data.cgr_npz import read_index, read_verified

INDEX_COMMAND = ("cd $REPLBOOK_CALTECH256 && find . -name '*.jpg' | sed 's|^\\./||' | sort | xargs sha256sum "
                 "> SHA256SUMS")
CLUTTER = "257.clutter"


def class_of(name: str) -> int | None:
    """Class index 0..255 from a relative path ``NNN.label/NNN_MMMM.jpg``; None for the clutter folder."""
    folder = name.split("/")[0]
    if folder == CLUTTER:
        return None
    number = folder.split(".")[0]
    if not number.isdigit() or not 1 <= int(number) <= 256:
        raise AssetError(f"{name}: expected a folder 001.<label> … 256.<label> of 256_ObjectCategories.")
    return int(number) - 1


def _decode(data: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def load_caltech256(split: str = "train", size: int = 224, test_fraction: float = 0.2, seed: int = 0,
                    limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, size, size] float32 in [0, 1] and labels [N] int64 of ``split``: per class, a seeded
    ``test_fraction`` of the images is the test split. ``limit`` keeps the first images of a seeded shuffle."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    (index_file,) = resolve("caltech256").values()
    folder, index = index_file.parent, read_index(index_file, INDEX_COMMAND)
    by_class: dict[int, list[str]] = {}
    for name in sorted(index):
        label = class_of(name)
        if label is not None:
            by_class.setdefault(label, []).append(name)
    if not by_class:
        raise AssetError(f"{index_file} lists no images of 256_ObjectCategories; regenerate it: {INDEX_COMMAND}")
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, int]] = []
    for label, names in sorted(by_class.items()):
        order = rng.permutation(len(names))
        n_test = max(1, round(test_fraction * len(names))) if len(names) > 1 else 0
        part = order[:n_test] if split == "test" else order[n_test:]
        chosen += [(names[i], label) for i in sorted(part)]
    if limit is not None:
        keep = np.random.default_rng(seed + 1).permutation(len(chosen))[:limit]
        chosen = [chosen[i] for i in sorted(keep)]
    images = np.stack([_decode(read_verified(folder, name, index[name], INDEX_COMMAND), size)
                       for name, _ in chosen])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return x, torch.tensor([label for _, label in chosen], dtype=torch.int64)


def index_folder(folder: Path) -> Path:
    """Write ``folder/SHA256SUMS`` for every JPEG under ``folder`` (what :data:`INDEX_COMMAND` does)."""
    import hashlib

    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
             for p in sorted(folder.rglob("*.jpg"))]
    path = folder / "SHA256SUMS"
    path.write_text("\n".join(lines) + "\n")
    return path
