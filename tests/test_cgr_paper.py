"""The CGR paper profile on generated npz folders in the official layout and a tiny random CLIP the test builds: the
reader (layouts, labels, split, checksums), the prompt embeddings, and ``run_paper`` end to end. Nothing is
downloaded."""

import hashlib
import json
import string

import numpy as np
import pytest
import torch

from replbook.assets import AssetError, AssetUnavailable, ChecksumMismatch
from replbook.data import cgr_npz
from replbook.experiments import cgr as experiment
from replbook.experiments.cgr import common, paper
from replbook.profiles import ParameterError, config, resolve

SIDE = 16
FOLDER = {"mnms": "mnms_dataset_npz", "fundus": "Fundus_dataset_npz", "prostate": "Prostate_dataset_npz"}


def labels_for(case: int, n_structures: int, side: int = SIDE) -> np.ndarray:
    """A label map that names its case: a band per structure whose row is the case number."""
    lab = np.zeros((side, side), dtype=np.uint8)
    for k in range(1, n_structures + 1):
        lab[case % side, 2 * k: 2 * k + 2] = k
    return lab


def image_for(case: int, layout: str, side: int = SIDE) -> np.ndarray:
    """A slice of a given npz layout whose intensity range depends on the case (so scaling is visible)."""
    rng = np.random.default_rng(case)
    grey = rng.uniform(10 * case, 10 * case + 200, (side, side))
    if layout == "hw":
        return grey.astype(np.float32)
    rgb = np.stack([grey, grey / 2, grey / 3]).astype(np.uint8)
    return rgb if layout == "chw" else np.moveaxis(rgb, 0, -1)


def write_index(folder):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
             for p in sorted(folder.rglob("*.npz"))]
    (folder / cgr_npz.INDEX).write_text("\n".join(lines) + "\n")


def write_task(root, task: str, side: int = SIDE) -> dict[str, list[int]]:
    """One task folder; returns the cases expected in train and test. mnms: arr_0, [H, W] grey, test images in
    imagesTr and labelsTr also holding the test cases (which the split must drop); fundus: key 'image'/'label',
    [H, W, 3], nnU-Net '_0000' image names; prostate: [3, H, W] with an imagesVal folder."""
    n = len(cgr_npz.STRUCTURES[task])
    folder = root / FOLDER[task]
    for sub in ("imagesTr", "labelsTr", "labelsVal"):
        (folder / sub).mkdir(parents=True)
    train, test = [0, 1, 2, 3], [4, 5]
    if task == "mnms":
        for c in train + test:
            np.savez(folder / "imagesTr" / f"case{c}.npz", image_for(c, "hw", side))
            np.savez(folder / "labelsTr" / f"case{c}.npz", labels_for(c, n, side))
        for c in test:
            np.savez(folder / "labelsVal" / f"case{c}.npz", labels_for(c, n, side))
    elif task == "fundus":
        for c in train + test:
            np.savez_compressed(folder / "imagesTr" / f"case{c}_0000.npz", image=image_for(c, "hwc", side))
        for c in train:
            np.savez_compressed(folder / "labelsTr" / f"case{c}.npz", label=labels_for(c, n, side))
        for c in test:
            np.savez_compressed(folder / "labelsVal" / f"case{c}.npz", label=labels_for(c, n, side))
    else:
        (folder / "imagesVal").mkdir()
        for c in train:
            np.savez(folder / "imagesTr" / f"case{c}.npz", image_for(c, "chw", side))
            np.savez(folder / "labelsTr" / f"case{c}.npz", labels_for(c, n, side).astype(np.float32))
        for c in test:
            np.savez(folder / "imagesVal" / f"case{c}.npz", image_for(c, "chw", side))
            np.savez(folder / "labelsVal" / f"case{c}.npz", labels_for(c, n, side))
    write_index(folder)
    return {"train": train, "test": test}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "cgr"
    cases = {task: write_task(root, task) for task in paper.PAPER_TASKS}
    monkeypatch.setenv("REPLBOOK_CGR_DATA", str(root))
    return root, cases


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIP (text width 16, 77 positions) saved as a hub snapshot of openai/clip-vit-large-patch14 is:
    config.json and model.safetensors of the full CLIPModel, and a CLIP BPE tokenizer over single characters."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    chars = list(string.ascii_lowercase) + [",", "."]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def clip_env(tiny_clip, monkeypatch):
    monkeypatch.setenv("REPLBOOK_CLIP_VIT_L14", str(tiny_clip))
    return tiny_clip


def paper_params(**overrides):
    """The paper profile at smoke scale (the smoke defaults), two arms, one seed, a 16-wide prompt."""
    smoke = dict(experiment.PARAMS.defaults["smoke"])
    for key in ("order", "prompt_tokens", "prompt_dim", "n_train", "n_test"):
        smoke.pop(key)
    base = {**smoke, "arms": ["sequential fine-tuning", "CGR"], "seeds": 1, "gen_seeds": 1, "gen_steps": 2,
            "seg_steps": 2, "n_replay": 2, "sample_steps": 2, "prompt_dim": 16, "threads": 1}
    return resolve(experiment.PARAMS, "paper", {**base, **overrides}, check_assets=False)


# ------------------------------------------------------------------------------------------------ the reader


def test_tasks_load_with_shapes_offsets_ranges_and_the_split(data_root):
    _, cases = data_root
    p = paper_params()
    tasks = paper.load_tasks(p["order"], p["size"])
    assert [t.name for t in tasks] == ["mnms", "fundus", "prostate"]
    assert [t.offset for t in tasks] == [0, 3, 5] and [t.n_local for t in tasks] == [4, 3, 2]
    for task in tasks:
        n = len(task.structures)
        assert task.train_images.shape == (4, 3, SIDE, SIDE) and task.test_images.shape == (2, 3, SIDE, SIDE)
        assert task.train_labels.dtype == task.test_labels.dtype == torch.int64
        for images in (task.train_images, task.test_images):  # each slice min–max scaled to exactly [−1, 1]
            assert torch.allclose(images.amin((1, 2, 3)), torch.tensor(-1.0))
            assert torch.allclose(images.amax((1, 2, 3)), torch.tensor(1.0))
        # the label maps name their case: train and test hold exactly the expected cases, in order
        for split, labels in (("train", task.train_labels), ("test", task.test_labels)):
            expected = torch.stack([torch.from_numpy(labels_for(c, n)).long() for c in cases[task.name][split]])
            assert torch.equal(labels, expected)
        glob = task.to_global(task.test_labels)
        assert set(glob.unique().tolist()) == {0, *range(task.offset + 1, task.offset + n + 1)}
    fundus = tasks[1]  # grey 3-channel layouts repeat, colour ones keep their channels
    assert not torch.equal(fundus.train_images[:, 0], fundus.train_images[:, 1])
    assert torch.equal(tasks[0].train_images[:, 0], tasks[0].train_images[:, 2])


def test_split_rule_on_an_index():
    h = {name: f"{i:064x}" for i, name in enumerate(["a", "b", "c", "d", "e"])}
    index = {"imagesTr/p1_0000.npz": h["a"], "imagesTr/p2_0000.npz": h["b"], "imagesTr/p3_0000.npz": h["c"],
             "labelsTr/p1.npz": h["d"], "labelsTr/p2.npz": h["e"], "labelsTr/p3.npz": h["e"],
             "labelsVal/p3.npz": h["e"]}
    train, test = cgr_npz.split_files(index)
    assert test == [("imagesTr/p3_0000.npz", "labelsVal/p3.npz")]  # no imagesVal: the image of the same name
    assert train == [("imagesTr/p1_0000.npz", "labelsTr/p1.npz"), ("imagesTr/p2_0000.npz", "labelsTr/p2.npz")]
    with_val = {**index, "imagesVal/p3.npz": f"{9:064x}"}
    train, test = cgr_npz.split_files(with_val)
    assert test == [("imagesVal/p3.npz", "labelsVal/p3.npz")] and len(train) == 3  # a separate image: kept
    with pytest.raises(AssetError, match="no image of the same name"):
        cgr_npz.split_files({**index, "labelsVal/p9.npz": h["a"]})
    with pytest.raises(AssetError, match="no labelsVal"):
        cgr_npz.split_files({k: v for k, v in index.items() if not k.startswith("labelsVal")})


def test_array_layouts_and_label_checks():
    grey = np.arange(12, dtype=np.float32).reshape(3, 4)
    for layout in (grey, grey[None], grey[..., None], np.stack([grey] * 3), np.stack([grey] * 3, -1)):
        out = cgr_npz.image_chw(layout, "x.npz")
        assert out.shape == (3, 3, 4) and np.array_equal(out[1], grey)
    with pytest.raises(AssetError, match=r"x.npz: image of shape \(2, 3, 4, 5\)"):
        cgr_npz.image_chw(np.zeros((2, 3, 4, 5)), "x.npz")
    assert cgr_npz.label_map(np.ones((1, 3, 4), np.float32), "y.npz", 1).dtype == np.int64
    with pytest.raises(AssetError, match=r"y.npz: label values \[3\] outside 0..2"):
        cgr_npz.label_map(np.full((3, 4), 3), "y.npz", 2)
    with pytest.raises(AssetError, match="y.npz: the label map holds non-integer"):
        cgr_npz.label_map(np.full((3, 4), 0.5), "y.npz", 2)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, a=grey, b=grey)
    with pytest.raises(AssetError, match=r"z.npz: npz with entries \['a', 'b'\]"):
        cgr_npz.npz_array(buffer.getvalue(), "z.npz", cgr_npz.IMAGE_KEYS)


def test_slices_of_another_size_are_resized(tmp_path, monkeypatch):
    write_task(tmp_path, "fundus", side=32)
    monkeypatch.setenv("REPLBOOK_CGR_DATA", str(tmp_path))
    data = cgr_npz.load_task_data("fundus", SIDE)
    assert data.train_images.shape == (4, 3, SIDE, SIDE) and data.test_labels.shape == (2, SIDE, SIDE)
    assert data.train_images.min() >= -1 and data.train_images.max() <= 1
    assert set(data.train_labels.unique().tolist()) == {0, 1, 2}  # nearest: no blended labels


def test_altered_unlisted_and_missing_files_are_named(data_root):
    root, _ = data_root
    folder = root / FOLDER["prostate"]
    np.savez(folder / "labelsVal" / "case4.npz", np.zeros((SIDE, SIDE), np.uint8))
    with pytest.raises(ChecksumMismatch, match=r"labelsVal/case4.npz is [0-9a-f]{64}, .*SHA256SUMS says"):
        cgr_npz.load_task_data("prostate", SIDE)
    np.savez(folder / "labelsTr" / "extra.npz", np.zeros((SIDE, SIDE), np.uint8))
    with pytest.raises(AssetError, match=r"does not list 1 npz file\(s\) .*labelsTr/extra.npz.*regenerate it"):
        cgr_npz.load_task_data("prostate", SIDE)
    (folder / cgr_npz.INDEX).unlink()
    with pytest.raises(AssetUnavailable, match="REPLBOOK_CGR_DATA"):
        cgr_npz.load_task_data("prostate", SIDE)


# ------------------------------------------------------------------------------------------------ prompts and run


def test_prompt_embeddings_are_frozen_clip_states(clip_env):
    p = paper_params(prompt_tokens=77)
    emb = paper.prompt_embeddings(p["order"], p["prompt_tokens"], p["prompt_dim"])
    assert emb.shape == (3, 77, 16) and not emb.requires_grad
    tokenizer, model = paper.load_text_encoder(clip_env)
    alone = paper.encode_prompts(tokenizer, model, [paper.PROMPTS["fundus"]], 77)
    assert torch.allclose(emb[1], alone[0], atol=1e-6)  # in the order of the tasks, one prompt per task
    assert not torch.allclose(emb[0], emb[2])
    from transformers import CLIPTextModel  # the safetensors text-tower load matches transformers' own loader

    reference = CLIPTextModel.from_pretrained(clip_env, local_files_only=True, use_safetensors=True).eval()
    ids = tokenizer([paper.PROMPTS["fundus"]], padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(reference(input_ids=ids).last_hidden_state, alone, atol=1e-6)
    with pytest.raises(ParameterError, match="prompt_dim.*must equal the text encoder's width \\(16\\)"):
        paper.prompt_embeddings(p["order"], p["prompt_tokens"], 32)


def test_a_checkpoint_without_the_text_tower_is_named(tiny_clip, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip, folder)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if "encoder.layers" not in k}, folder / "model.safetensors")
    with pytest.raises(AssetError, match=r"model.safetensors does not fit CLIPTextModel \(\d+ missing"):
        paper.load_text_encoder(folder)


def test_run_paper_end_to_end(data_root, clip_env, tmp_cache):
    p = resolve(experiment.PARAMS, "paper", {k: v for k, v in paper_params().items() if k != "profile"},
                check_assets=True)
    assert p["size"] == SIDE and p["prompt_tokens"] == 77
    out = experiment.run(p)
    assert [t.name for t in out.tasks] == ["mnms", "fundus", "prostate"]
    (seed,) = out.seeds
    for arm in ("sequential fine-tuning", "CGR"):
        assert [sorted(stage) for stage in seed.dice[arm]] == [["mnms"], ["fundus", "mnms"],
                                                               ["fundus", "mnms", "prostate"]]
        assert all(0 <= v <= 1 for v in seed.dice[arm][-1]["mnms"]) and len(seed.dice[arm][-1]["prostate"]) == 2
    assert list(out.generator_curves) == ["cgr"] and list(out.real) == ["mnms", "fundus"]
    # the protocol's own output (loaded from the cache) holds the generator, conditioned on the CLIP prompts
    setups = (config(common.GeneratorSetup, p), config(common.SegmenterSetup, p), config(common.Schedule, p))
    run = paper.run_paper(*setups, p["order"])
    assert run.generators["cgr"].model.prompts.tokens.shape == (3, 77, 16)


def test_paper_order_rejects_miniature_tasks():
    with pytest.raises(ParameterError, match="the paper profile loads"):
        paper.load_tasks(["cardiac", "fundus"], SIDE)
