"""OpenOOD v1.5's layout (``$REPLBOOK_OPENOOD``, ``data_manifests/openood-v15.yaml``): the benchmark's splits and
preprocessing, its image lists and its images, as OpenOOD's download scripts leave them::

    data/benchmark_imglist/<benchmark>/{train,test}_<benchmark>.txt, test_<ood>.txt   ("path label" per line)
    data/images_classic/...                                                             (the images)
    results/<benchmark>_resnet18_32x32_base_e100_lr0.1_default/s{0,1,2}/best.ckpt       (state dicts)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from replbook.assets import AssetUnavailable, resolve

# OpenOOD v1.5's splits and preprocessing (its configs/datasets/<benchmark>/*_ood.yml and base preprocessor).
SPLITS = {
    "cifar10": {"near": ["cifar100", "tin"], "far": ["mnist", "svhn", "texture", "places365"]},
    "cifar100": {"near": ["cifar10", "tin"], "far": ["mnist", "svhn", "texture", "places365"]},
}
NORMALISATION = {"cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
                 "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle "
    "caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant "
    "flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man "
    "maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()


def openood_root() -> Path:
    """The OpenOOD folder named by ``data_manifests/openood-v15.yaml`` (its environment variable), checked to hold
    the manifest's files."""
    rel, path = next(iter(resolve("openood-v15").items()))
    return Path(str(path)[: -len(rel)])


def read_imglist(path: Path) -> list[tuple[str, int]]:
    """OpenOOD image list: one "relative/path label" per line."""
    if not path.exists():
        raise AssetUnavailable(f"OpenOOD image list {path} is missing; download OpenOOD v1.5's benchmark_imglist "
                               f"(see data_manifests/openood-v15.yaml).")
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            name, *label = line.split()
            entries.append((name, int(label[0]) if label else -1))
    return entries


def load_images(image_root: Path, entries: list[tuple[str, int]], benchmark: str, size: int = 32,
                limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, size, size] preprocessed as OpenOOD's test preprocessor does (RGB, bilinear resize of the
    short side, centre crop, ToTensor, the benchmark's normalisation), and labels [N]."""
    from PIL import Image

    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALISATION[benchmark])
    entries = entries[:limit] if limit else entries
    out = torch.empty(len(entries), 3, size, size)
    for i, (name, _) in enumerate(entries):
        with Image.open(image_root / name) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out[i] = (arr - mean) / std
    return out, torch.tensor([label for _, label in entries])


