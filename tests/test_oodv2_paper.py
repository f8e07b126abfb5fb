"""The OOD chapter's paper profile on a generated OpenOOD folder, a tiny ResNet-18 checkpoint and a tiny random CLIP
the test builds: the loaders, OpenOOD's preprocessing, and both runs end to end."""

import numpy as np
import pytest
import torch
from PIL import Image

from replbook.assets import AssetUnavailable
from replbook.data import openood
from replbook.experiments import oodv2 as experiment
from replbook.experiments.oodv2 import common, paper
from replbook.models import CifarResNet18
from replbook.profiles import config, resolve

OOD_LISTS = ["cifar100", "tin", "mnist", "svhn", "texture", "places365"]


@pytest.fixture
def openood_root(tmp_path):
    """OpenOOD's layout with a few random images per list and one checkpoint (saved with a DataParallel prefix)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "openood"
    lists = root / "data" / "benchmark_imglist" / "cifar10"
    lists.mkdir(parents=True)
    sizes = [("train_cifar10", 24), ("val_cifar10", 10), ("test_cifar10", 12)] + [(f"test_{o}", 6) for o in OOD_LISTS]
    for name, n in sizes:
        folder = root / "data" / "images_classic" / name
        folder.mkdir(parents=True)
        lines = []
        for i in range(n):
            size = (32, 32) if i % 2 else (48, 40)  # some need the resize and crop
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(folder / f"{i}.png")
            lines.append(f"{name}/{i}.png {i % 10 if 'cifar10' in name else -1}")
        (lists / f"{name}.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    net = CifarResNet18(10, width=4)
    ckpt = root / "results" / "cifar10_resnet18_32x32_base_e100_lr0.1_default" / "s0" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, ckpt)
    return root


def paper_params(**overrides):
    base = {"seeds": 1, "n_train": 100, "knn_k": 3, "vim_dim": 8, "vlm": True}
    return resolve(experiment.PARAMS, "paper", {**base, **overrides}, check_assets=False)


def test_preprocessing_crops_the_centre_and_normalises(tmp_path):
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (32, 1, 3))  # value = 4·column, 64×32
    Image.fromarray(ramp).save(tmp_path / "wide.png")
    x, labels = openood.load_images(tmp_path, [("wide.png", 3)], "cifar10")
    mean, std = openood.NORMALISATION["cifar10"]
    expected = (torch.arange(16, 48).float() * 4 / 255 - mean[0]) / std[0]
    assert x.shape == (1, 3, 32, 32) and labels.tolist() == [3]
    assert torch.allclose(x[0, 0, 5], expected, atol=1e-5)


def test_checkpoint_loader_strips_the_prefix_and_names_missing_files(openood_root):
    ckpt = openood_root / "results" / "cifar10_resnet18_32x32_base_e100_lr0.1_default" / "s0" / "best.ckpt"
    model = paper.load_openood_checkpoint(ckpt, 10, width=4)
    assert not model.training and model.fc.out_features == 10
    with pytest.raises(AssetUnavailable, match="checkpoint"):
        paper.load_openood_checkpoint(ckpt.with_name("missing.ckpt"), 10)
    with pytest.raises(AssetUnavailable, match="image list"):
        openood.read_imglist(openood_root / "nope.txt")


def test_openood_run_scores_every_detector_on_every_split(openood_root):
    p = paper_params()
    (result,) = paper.run_openood(config(paper.Benchmark, p), config(common.Scoring, p), root=openood_root, width=4)
    rows = {(r["detector"], r["split"]) for r in result.metrics}
    splits = {f"near: {n}" for n in ("cifar100", "tin")} | {f"far: {n}" for n in OOD_LISTS[2:]}
    assert rows == {(d, s) for d in experiment.DETECTORS for s in splits}
    assert all(0 <= r["auroc"] <= 1 and 0 <= r["fpr95_ood"] <= 1 for r in result.metrics)
    assert 0 <= result.accuracy["clean"] <= 1 and result.temperature > 0


@pytest.fixture
def tiny_clip(tmp_path):
    """A random CLIP with a word-level tokenizer over the prompts' words, saved like a hub snapshot."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = sorted({w for c in openood.CIFAR10_CLASSES for w in f"a photo of a {c}.".replace(".", " .").split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}, "[EOS]": len(words) + 2}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    core.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", vocab["[EOS]"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        eos_token="[EOS]")
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": vocab["[EOS]"],
                     "pad_token_id": 0},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8)
    torch.manual_seed(0)
    folder = tmp_path / "clip"
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_clip_mcm_and_glmcm_run_zero_shot_on_the_benchmark(openood_root, tiny_clip):
    clip = paper.load_clip(str(tiny_clip))
    text = paper.clip_text_embeddings(clip[0], clip[1], openood.CIFAR10_CLASSES)
    assert text.shape == (10, 8)
    p = paper_params()
    result = paper.run_clip(p["benchmark"], p["clip_model"], p["clip_temperature"], root=openood_root, clip=clip)
    detectors = {r["detector"] for r in result.metrics}
    assert detectors == {"MCM (CLIP)", "GL-MCM (CLIP)"} and len(result.metrics) == 2 * 6
    pixel = clip[2](images=[Image.new("RGB", (32, 32))], return_tensors="pt")["pixel_values"]
    g, local = paper.clip_image_embeddings(clip[0], pixel)
    assert g.shape == (1, 8) and local.shape == (1, 16, 8)  # 4×4 patches of 8 pixels


def test_the_examples_are_openood_images_with_the_normalisation_undone(openood_root):
    examples = paper.openood_examples("cifar10", per_split=4, root=openood_root)
    assert examples.names == ["ID (test)", "near: cifar100", "near: tin", *[f"far: {n}" for n in OOD_LISTS[2:]]]
    assert examples.images.shape == (7, 4, 3, 32, 32) and examples.images.dtype == np.float32
    assert 0 <= examples.images.min() and examples.images.max() <= 1 + 1e-5
