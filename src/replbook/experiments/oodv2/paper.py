"""The OOD chapter's ``paper`` profile: OpenOOD v1.5's CIFAR benchmarks with its released ResNet-18 checkpoints, and
zero-shot MCM / GL-MCM with CLIP on the same splits, scored by the same detectors as the miniature.

OpenOOD's layout is read by :mod:`replbook.data.openood`; CLIP comes from the local Hugging Face cache
(``data_manifests/clip-vit-base-patch16.yaml``) or a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from replbook import ood
from replbook.assets import AssetUnavailable, resolve
from replbook.data.openood import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    NORMALISATION,
    SPLITS,
    load_images,
    openood_root,
    read_imglist,
)
from replbook.experiments.oodv2.common import (
    Examples,
    Oodv2Results,
    Scoring,
    SeedResult,
    group_replicates,
    metric_rows,
    model_outputs,
    score_all,
)
from replbook.models import CifarResNet18
from replbook.progress import progress


@dataclass(frozen=True)
class Benchmark:
    """Which OpenOOD v1.5 benchmark, how many of its checkpoints (``seeds``), the training and validation images
    the detectors are fitted on, and the bootstrap resamples (the parameters of the same names)."""

    benchmark: str
    seeds: int
    n_train: int
    n_val: int
    n_boot: int


def load_openood_checkpoint(path: Path, num_classes: int, width: int = 64) -> CifarResNet18:
    """A released ``best.ckpt`` (a state dict, loaded with ``weights_only=True``) in OpenOOD's ResNet18_32x32."""
    if not path.exists():
        raise AssetUnavailable(f"OpenOOD checkpoint {path} is missing; download OpenOOD v1.5's checkpoints "
                               f"(see data_manifests/openood-v15.yaml).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = CifarResNet18(num_classes, width)
    model.load_state_dict(state)
    return model.eval()


def run_openood(setup: Benchmark, scoring: Scoring, root: Path | None = None, width: int = 64,
                limit: int | None = None) -> list[SeedResult]:
    """Every detector on the benchmark's near and far splits, for each released checkpoint (s0, s1, s2 = our
    seeds). ``limit`` caps the images per list (a quick look; the leaderboard uses all)."""
    bench = setup.benchmark
    root = root or openood_root()
    lists = root / "data" / "benchmark_imglist" / bench
    images = root / "data" / "images_classic"
    classes = 10 if bench == "cifar10" else 100
    x_id, y_id = load_images(images, read_imglist(lists / f"test_{bench}.txt"), bench, limit=limit)
    x_train, y_train = load_images(images, read_imglist(lists / f"train_{bench}.txt"), bench,
                                   limit=limit or setup.n_train)
    val_list = lists / f"val_{bench}.txt"  # TempScale's held-out ID images (OpenOOD's validation list)
    x_val, y_val = (load_images(images, read_imglist(val_list), bench, limit=limit or setup.n_val) if val_list.exists()
                    else (x_train, y_train))
    splits = {f"{group}: {name}": load_images(images, read_imglist(lists / f"test_{name}.txt"), bench,
                                              limit=limit)[0]
              for group, names in SPLITS[bench].items() for name in names}
    results = []
    for seed in progress(range(setup.seeds), desc="checkpoints"):
        ckpt = root / "results" / f"{bench}_resnet18_32x32_base_e100_lr0.1_default" / f"s{seed}" / "best.ckpt"
        model = load_openood_checkpoint(ckpt, classes, width)
        with torch.no_grad():
            fit_feats = torch.cat([model.features(x_train[i : i + 500]) for i in range(0, len(x_train), 500)])
            val_logits = model(x_val)
        result = SeedResult(seed, temperature=ood.fit_temperature(val_logits, y_val))
        x_by_split = {"ID": x_id, **splits}
        outputs = {name: model_outputs(model, x) for name, x in x_by_split.items()}
        scores = score_all(model, scoring, fit_feats, y_train, result.temperature, x_by_split, outputs)
        result.metrics = metric_rows(scores, list(splits), seed)
        result.boot = group_replicates(scores, list(splits), setup.n_boot, seed)
        result.accuracy = {"clean": float((outputs["ID"][1].argmax(1) == y_id).float().mean())}
        results.append(result)
    return results


# --- CLIP: MCM and GL-MCM --------------------------------------------------------------------------------------


def load_clip(name_or_folder: str):
    """CLIPModel, tokenizer and image processor from a folder, or from the local Hugging Face cache (never the
    network)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    folder = name_or_folder if os.path.isdir(name_or_folder) else None
    if folder is None:
        files = resolve("clip-vit-base-patch16")
        folder = str(next(iter(files.values())).parent)
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True), \
        CLIPImageProcessor.from_pretrained(folder, local_files_only=True)


@torch.no_grad()
def clip_text_embeddings(model, tokenizer, class_names: list[str]) -> torch.Tensor:
    """[K, D]: projected text embeddings of "a photo of a {class}." (MCM's prompt)."""
    prompts = [f"a photo of a {c.replace('_', ' ')}." for c in class_names]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    out = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return model.text_projection(out.pooler_output)


@torch.no_grad()
def clip_image_embeddings(model, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global [N, D] (the projected class token) and local [N, P, D] embeddings (the patch tokens through the
    final layer norm and the same projection: GL-MCM's local features)."""
    out = model.vision_model(pixel_values=pixel_values)
    local = model.visual_projection(model.vision_model.post_layernorm(out.last_hidden_state[:, 1:]))
    return model.visual_projection(out.pooler_output), local


def run_clip(bench: str, clip_model: str, temperature: float, root: Path | None = None, clip: tuple | None = None,
             limit: int | None = None) -> SeedResult:
    """Zero-shot MCM and GL-MCM (at ``temperature``) on the benchmark's ID test set against its near and far
    splits, with CLIP from ``clip_model`` (or the loaded ``clip``: model, tokenizer, processor)."""
    from PIL import Image

    root = root or openood_root()
    model, tokenizer, processor = clip or load_clip(clip_model)
    lists = root / "data" / "benchmark_imglist" / bench
    images = root / "data" / "images_classic"
    text = clip_text_embeddings(model, tokenizer, CIFAR10_CLASSES if bench == "cifar10" else CIFAR100_CLASSES)

    def embed(entries):
        glob, loc = [], []
        for i in range(0, len(entries), 64):
            pil = []
            for name, _ in entries[i : i + 64]:
                with Image.open(images / name) as img:
                    pil.append(img.convert("RGB"))
            g, lo = clip_image_embeddings(model, processor(images=pil, return_tensors="pt")["pixel_values"])
            glob.append(g)
            loc.append(lo)
        return torch.cat(glob), torch.cat(loc)

    sets = {"ID": read_imglist(lists / f"test_{bench}.txt")[:limit]}
    for group, names in SPLITS[bench].items():
        for name in names:
            sets[f"{group}: {name}"] = read_imglist(lists / f"test_{name}.txt")[:limit]
    scores: dict[str, dict[str, torch.Tensor]] = {"MCM (CLIP)": {}, "GL-MCM (CLIP)": {}}
    for split, entries in sets.items():
        g, lo = embed(entries)
        scores["MCM (CLIP)"][split] = ood.mcm(g, text, temperature)
        scores["GL-MCM (CLIP)"][split] = ood.glmcm(g, lo, text, temperature)
    result = SeedResult(0)
    result.metrics = metric_rows(scores, [s for s in sets if s != "ID"], 0)
    return result


def openood_examples(bench: str, per_split: int = 8, root: Path | None = None) -> Examples:
    """The first ``per_split`` images of every list of the benchmark (ID test, then the near and far lists), after
    OpenOOD's preprocessing and undone normalisation: what the detectors see."""
    root = root or openood_root()
    lists = root / "data" / "benchmark_imglist" / bench
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATION[bench])
    names = {"ID (test)": f"test_{bench}"}
    names.update({f"{g}: {n}": f"test_{n}" for g, ns in SPLITS[bench].items() for n in ns})
    rows = []
    for stem in names.values():
        x, _ = load_images(root / "data" / "images_classic", read_imglist(lists / f"{stem}.txt"), bench,
                           limit=per_split)
        rows.append((x * std + mean).float().numpy())
    shown = min(len(r) for r in rows)  # a list shorter than per_split shortens every row
    return Examples(list(names), np.stack([r[:shown] for r in rows]).astype(np.float32))


def run_paper(setup: Benchmark, scoring: Scoring, *, vlm: bool, clip_model: str, clip_temperature: float,
              root: Path | None = None) -> Oodv2Results:
    """OpenOOD's checkpoints (one result per checkpoint) with CLIP's zero-shot rows added to the first, and the
    example images."""
    results = run_openood(setup, scoring, root)
    if vlm:
        results[0].metrics += run_clip(setup.benchmark, clip_model, clip_temperature, root).metrics
    return Oodv2Results(results, openood_examples(setup.benchmark, root=root))
