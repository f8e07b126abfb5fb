"""The CGR paper profile: the paper's three tasks from local, licence-gated npz folders
(:mod:`replbook.data.cgr_npz`, ``data_manifests/cgr-<task>.yaml``) and the official task prompts encoded by a frozen
CLIP ViT-L/14 text encoder (``data_manifests/clip-vit-large-patch14.yaml``), run through the chapter's protocol
(:func:`replbook.experiments.cgr.common.run_all`) on the run's ``device`` (CUDA when present); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from replbook.assets import AssetError, resolve
from replbook.data import cgr_npz
from replbook.experiments.cgr.common import CgrRun, GeneratorSetup, Schedule, SegmenterSetup, Task, run_all
from replbook.profiles import ParameterError

PAPER_TASKS = ("mnms", "fundus", "prostate")
CLIP_ASSET = "clip-vit-large-patch14"
#: The official per-task prompts listing every structure of the task (``CFPDataset.get_text_prompt_from_image`` on a
#: slice holding all of them; spec §2.3). The protocol conditions training and replay on one prompt per task, so this
#: is it; the official replay list (``Trainer.val_prompt_list``) words the first two with "and" before the last
#: structure ("..., a myocardium and a right ventricle", "... a optic cup and a optic disc").
PROMPTS: dict[str, str] = {
    "mnms": "A magnetic resonance of cardiac with a left ventricle, a myocardium, a right ventricle",
    "fundus": "A fundus photography with a optic cup, a optic disc",
    "prostate": "A magnetic resonance of a prostate",
}


# ------------------------------------------------------------------------------------------------ data


def load_task(name: str, size: int) -> Task:
    """One paper task as the protocol's :class:`Task`: 3-channel slices in [−1, 1], local labels, the global offset
    of the official CFP label space."""
    data = cgr_npz.load_task_data(name, size)
    return Task(name, cgr_npz.STRUCTURES[name], cgr_npz.GLOBAL_OFFSET[name], data.train_images, data.train_labels,
                data.test_images, data.test_labels)


def load_tasks(order: list[str], size: int) -> list[Task]:
    """The tasks of ``order`` at side ``size``."""
    unknown = [name for name in order if name not in PAPER_TASKS]
    if unknown:
        raise ParameterError(f"parameter 'order': the paper profile loads {list(PAPER_TASKS)}; {unknown} are "
                             f"miniature tasks (profiles smoke/cpu).")
    return [load_task(name, size) for name in order]


# ------------------------------------------------------------------------------------------------ prompts


def asset_folder(files: dict[str, Path]) -> Path:
    """The folder an asset's files were resolved in (each path minus its manifest-relative part)."""
    rel, path = next(iter(files.items()))
    return Path(str(path)[: -len(rel)])


def load_text_encoder(folder: Path):
    """(``CLIPTokenizer``, frozen ``CLIPTextModel`` in eval mode) from a local Hugging Face snapshot: the text tower's
    weights (``text_model.*``) are read from ``model.safetensors`` (a full CLIPModel or a text-only checkpoint; no
    pickle is loaded); any missing weight is an error."""
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    model = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, local_files_only=True))
    # checkpoints name the text tower's weights text_model.*; transformers ≥ 5 keeps them without that prefix
    prefix = "text_model." if any(k.startswith("text_model.") for k in model.state_dict()) else ""
    state = {prefix + k.removeprefix("text_model."): v
             for k, v in load_file(folder / "model.safetensors").items() if k.startswith("text_model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]  # a buffer older checkpoints saved
    if missing or unexpected:
        raise AssetError(f"{folder / 'model.safetensors'} does not fit CLIPTextModel ({len(missing)} missing, e.g. "
                         f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}); use the files of "
                         f"openai/clip-vit-large-patch14 (data_manifests/{CLIP_ASSET}.yaml).")
    return tokenizer, model.requires_grad_(False).eval()


@torch.no_grad()
def encode_prompts(tokenizer, model, prompts: list[str], n_tokens: int) -> Tensor:
    """[K, n_tokens, D]: CLIP's ``last_hidden_state`` of each prompt, padded / truncated to ``n_tokens`` as the
    official code does (padding="max_length", no attention mask)."""
    ids = tokenizer(prompts, padding="max_length", max_length=n_tokens, truncation=True, return_tensors="pt")
    return model(input_ids=ids["input_ids"]).last_hidden_state


def prompt_embeddings(order: list[str], prompt_tokens: int, prompt_dim: int, folder: Path | None = None) -> Tensor:
    """[K, prompt_tokens, prompt_dim]: the frozen CLIP embeddings of the tasks' prompts, in ``order``; the encoder
    comes from ``folder`` or its manifest."""
    folder = folder or asset_folder(resolve(CLIP_ASSET))
    tokenizer, model = load_text_encoder(folder)
    width, positions = model.config.hidden_size, model.config.max_position_embeddings
    if prompt_dim != width:
        raise ParameterError(f"parameter 'prompt_dim' ({prompt_dim}) must equal the text encoder's width "
                             f"({width}) in {folder}.")
    if prompt_tokens > positions:
        raise ParameterError(f"parameter 'prompt_tokens' ({prompt_tokens}) exceeds the text encoder's "
                             f"{positions} positions in {folder}.")
    return encode_prompts(tokenizer, model, [PROMPTS[name] for name in order], prompt_tokens)


# ------------------------------------------------------------------------------------------------ run


def run_paper(gen: GeneratorSetup, seg: SegmenterSetup, schedule: Schedule, order: list[str]) -> CgrRun:
    """The tasks of ``order`` and their CLIP prompt embeddings, through the chapter's protocol."""
    tasks = load_tasks(order, gen.size)
    return run_all(gen, seg, schedule, tasks, prompt_embeddings(order, gen.prompt_tokens, gen.prompt_dim))
