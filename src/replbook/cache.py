"""Trained weights cached by content hash, so reruns skip training: safetensors files with a sha256 beside them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from replbook.assets import sha256_file
from replbook.paths import cache_dir


def cache_key(**parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, data hashes, seeds, hyper-parameters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def tensor_hash(t: torch.Tensor) -> str:
    """sha256 (24 hex digits) of a CPU tensor's bytes: a data set's identity in a cache key."""
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:24]


def architecture_key(model: nn.Module) -> str:
    """A short hash of a model's state-dict names and shapes: part of a cache key, so that changing the
    architecture never loads weights trained for another one."""
    shapes = {name: list(t.shape) for name, t in model.state_dict().items()}
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]


def model_path(prefix: str, key: str) -> Path:
    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{prefix}-{key}.safetensors"


def save_state(model: nn.Module, path: Path) -> None:
    """Write the state dict (tied duplicates stored once) and its sha256."""
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # tied weights (e.g. an LM head sharing the embedding)
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().cpu().contiguous()
    tmp = path.with_suffix(".partial")
    save_file(state, str(tmp))
    tmp.replace(path)
    path.with_suffix(".sha256").write_text(sha256_file(path))


def is_cached(path: Path) -> bool:
    """A cached state exists and its sha256 matches the one written beside it."""
    sums = path.with_suffix(".sha256")
    return path.exists() and sums.exists() and sha256_file(path) == sums.read_text().strip()


def load_state(model: nn.Module, path: Path) -> None:
    """Load a verified cached state; keys absent from the file must be tied to keys present."""
    state = load_file(str(path))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ
        raise RuntimeError(f"cached state {path} does not match the model ({str(err).splitlines()[0]}); "
                           f"delete it to retrain.") from err
    tied = {n for n, t in model.state_dict().items() if any(t.data_ptr() == model.state_dict()[k].data_ptr()
                                                               for k in state if k != n)}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"cached state {path} does not match the model; delete it to retrain.")
