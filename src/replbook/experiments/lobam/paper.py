"""The LoBAM chapter's ``paper`` profile: CLIP ViT-B/32's vision tower and BadMerging's task-arithmetic image sets
from local files, run through the same protocol as the miniature (:mod:`.common`).

**Model.** ``CLIPVisionModel`` from the manifest the parameter ``clip`` names (ViT-B/32 from the local Hugging Face
cache, ViT-L/14 from a folder) or from a folder it gives; never the network. Images stay in [0, 1]; the encoder
resizes them and applies CLIP's normalisation, so the trigger is a patch of pixels as in BadMerging.

**Data.** ``data_manifests/lobam-tasks.yaml`` names a folder (``REPLBOOK_LOBAM_DATA``) laid out as::

    SHA256SUMS                 sha256 of every npz file below (sha256sum output, paths relative to the folder)
    <task>/train.npz           images uint8 [N, H, W, 3], labels int64 [N]
    <task>/test.npz            the same for the test split

one folder per task of :data:`PAPER_TASKS` that the run names (CIFAR100, GTSRB, EuroSAT, Stanford Cars, SUN397,
Oxford-IIIT Pets, as BadMerging's ``data/links.txt`` lists them), converted once by the user at the encoder's input
resolution (224 × 224 for CLIP): BadMerging pastes its 22-pixel patch after that resize, so the trigger's size only
means the same at that resolution, and other sizes are refused. The images are held in memory as float32 (about
0.6 MB each at 224²): ``n_train`` and ``n_test`` bound what a run loads. The validation images are the last
``n_val`` of a fixed-seed shuffle of the training split; the test images a fixed-seed sample of ``n_test``.

**Heads.** BadMerging freezes CLIP's zero-shot text heads; a ``CLIPVisionModel`` has no text tower, so each task's
frozen head is a linear probe on θ_pre's features, as in the miniature (a deviation, stated on the page).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replbook.assets import AssetError, resolve
from replbook.data.cgr_npz import read_index, read_verified
from replbook.experiments.lobam.common import LobamResults, Protocol, Shared, Task, features, fit_probe, run_seed
from replbook.models.vit_encoder import ImageEncoder
from replbook.parallel import in_workers
from replbook.profiles import resolve_device
from replbook.progress import progress

PAPER_TASKS = ("cifar100", "gtsrb", "eurosat", "cars", "sun397", "pets")
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
INDEX_COMMAND = ("cd $REPLBOOK_LOBAM_DATA && find . -name '*.npz' | sed 's|^\\./||' | sort | xargs sha256sum "
                 "> SHA256SUMS")


@dataclass(frozen=True)
class PaperSetup:
    """The paper profile's backbone, tasks and sizes, and how its seeds run (the parameters of the same names)."""

    clip: str
    tasks: list[str]
    attacker: str
    seeds: int
    workers: int
    n_train: int
    n_val: int
    n_test: int
    eval_batch_size: int
    device: str
    threads: int


#: CLIP backbones by manifest: ViT-B/32 (the headline) from the Hugging Face cache, ViT-L/14 from a folder.
CLIP_MANIFESTS = ("clip-vit-base-patch32", "clip-vit-large-patch14")


def load_clip_vision(clip: str) -> tuple[ImageEncoder, dict[str, Any]]:
    """CLIP's vision tower from one of :data:`CLIP_MANIFESTS` (resolved, never downloaded) or from a folder holding
    a saved ``CLIPVisionModel`` or ``CLIPModel``; returns the encoder and its spec for
    :func:`~replbook.experiments.lobam.common.build_encoder`."""
    from transformers import CLIPVisionModel

    if clip in CLIP_MANIFESTS:
        folder = str(next(iter(resolve(clip).values())).parent)
    elif os.path.isdir(clip):
        folder = clip
    else:
        raise AssetError(f"parameter 'clip': {clip!r} is neither a folder nor one of {list(CLIP_MANIFESTS)}; give "
                         f"a folder with a saved CLIPVisionModel or CLIPModel, or a manifest name.")
    model = CLIPVisionModel.from_pretrained(folder, local_files_only=True).eval()
    spec = {"kind": "clip", "config": model.config.to_dict(), "mean": CLIP_MEAN, "std": CLIP_STD}
    return ImageEncoder(model, CLIP_MEAN, CLIP_STD), spec


def _read_split(folder: Path, name: str, index: dict[str, str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One verified npz split of ``size`` × ``size`` images → images [N, 3, size, size] float32 in [0, 1], labels
    [N] int64."""
    if name not in index:
        raise AssetError(f"{folder / 'SHA256SUMS'} does not list {name}; add the file and regenerate the index: "
                         f"{INDEX_COMMAND}")
    with np.load(io.BytesIO(read_verified(folder, name, index[name], INDEX_COMMAND))) as data:
        missing = {"images", "labels"} - set(data.files)
        if missing:
            raise AssetError(f"{folder / name} lacks the arrays {sorted(missing)}; it needs images uint8 [N, H, W, 3] "
                             f"and labels int64 [N].")
        images, labels = data["images"], data["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
        raise AssetError(f"{folder / name}: images must be uint8 [N, H, W, 3] with one label each; got "
                         f"{images.dtype} {images.shape} and {len(labels)} labels.")
    if images.shape[1:3] != (size, size):
        raise AssetError(f"{folder / name}: images are {images.shape[1]}×{images.shape[2]}; convert them to the "
                         f"encoder's {size}×{size} (the trigger's side in pixels means the same only there).")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(labels.astype(np.int64))


def load_tasks(names: list[str], n_train: int, n_val: int, n_test: int, size: int) -> dict[str, Task]:
    """The tasks ``names`` of ``size`` × ``size`` images from the folder of ``data_manifests/lobam-tasks.yaml``,
    every file checked against its index."""
    (index_file,) = resolve("lobam-tasks").values()
    folder, index = index_file.parent, read_index(index_file, INDEX_COMMAND)
    tasks = {}
    for name in progress(names, desc="loading tasks", leave=False):
        x, y = _read_split(folder, f"{name}/train.npz", index, size)
        xt, yt = _read_split(folder, f"{name}/test.npz", index, size)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_val_here = min(n_val, len(x) // 5)
        train, val = order[: len(x) - n_val_here][:n_train], order[len(x) - n_val_here:]
        n_classes = int(max(y.max(), yt.max())) + 1
        test = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1))[:n_test]
        tasks[name] = Task(name, n_classes, x[train], y[train], x[val], y[val], xt[test], yt[test])
    return tasks


def run_paper(setup: PaperSetup, protocol: Protocol) -> LobamResults:
    """The protocol with CLIP's vision tower on the paper's tasks."""
    torch.set_num_threads(setup.threads)
    encoder, spec = load_clip_vision(setup.clip)
    encoder.to(resolve_device(setup.device))
    tasks = load_tasks(setup.tasks, setup.n_train, setup.n_val, setup.n_test, encoder.image_size)
    heads = {name: fit_probe(features(encoder, t.x_train, setup.eval_batch_size), t.y_train, t.n_classes)
             for name, t in tasks.items()}
    shared = Shared(spec, {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}, heads, tasks,
                    setup.attacker)
    jobs = [(shared, protocol, seed) for seed in range(setup.seeds)]
    return LobamResults(in_workers(jobs, run_seed, setup.workers, setup.threads), 0)
