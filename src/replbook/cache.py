"""Trained weights cached by content hash, so reruns skip training: safetensors files with a sha256 beside them.

The one way to cache a training run is :func:`train_or_load` (or, for a run that keeps several checkpoints,
:func:`cache_entry` per checkpoint). Its key covers everything that decides the weights: the full training data
(:func:`data_hash`: every byte of every tensor, array, label and string), the hyper-parameters, the architecture
(:func:`architecture_key`) and the source of the training code (:func:`code_version`). What the run reports besides
the weights (loss curves, accuracy per epoch) is a JSON sidecar stored and verified with them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from replbook.assets import sha256_file
from replbook.paths import cache_dir

#: Set while a page renders from saved results: nothing may train (:func:`train_or_load` raises on a miss, and so does
#: :func:`replbook.results.compute`).
RENDER_ONLY_ENV = "REPLBOOK_RENDER_ONLY"


class RenderOnly(RuntimeError):
    """Something tried to train or compute while ``REPLBOOK_RENDER_ONLY`` is set."""


def render_only() -> bool:
    """True while a page renders (``REPLBOOK_RENDER_ONLY=1``): nothing may compute or train."""
    return os.environ.get(RENDER_ONLY_ENV, "") not in ("", "0")


def cache_key(**parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, data hashes, seeds, hyper-parameters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


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
    # a missing key is fine when it shares storage with a saved one (tied weights); one state_dict, one pass: a
    # nested lookup per pair took minutes on a diffusers UNet's hundreds of tensors
    current = model.state_dict()
    saved_ptrs = {current[k].data_ptr() for k in state if k in current}
    tied = {n for n in missing if current[n].data_ptr() in saved_ptrs}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"cached state {path} does not match the model; delete it to retrain.")


def _feed(digest, value: Any) -> None:
    """Feed a nested value into a hash: tensors and arrays by dtype, shape and bytes; containers and dataclasses
    element by element; numbers and strings by their JSON text."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        digest.update(f"tensor{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)
        digest.update(f"array{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    elif isinstance(value, Mapping):
        digest.update(b"{")
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif hasattr(value, "__dataclass_fields__"):
        _feed(digest, {name: getattr(value, name) for name in value.__dataclass_fields__})
    elif isinstance(value, np.generic):
        _feed(digest, value.item())
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(json.dumps(value).encode())
    else:  # a repr may hold a memory address: the key would change from run to run
        raise TypeError(f"cannot hash a {type(value).__name__} as training data; pass tensors, arrays, numbers, "
                        f"strings or containers of them.")


def data_hash(*parts: Any) -> str:
    """sha256 (24 hex digits) of every byte of the training data: tensors, arrays, labels, strings and nested
    lists, tuples, dicts and dataclasses of them. Changing any one label changes it."""
    digest = hashlib.sha256()
    for part in parts:
        _feed(digest, part)
    return digest.hexdigest()[:24]


def code_version(*objects: Any) -> str:
    """sha256 (16 hex digits) of the source of the functions, classes or modules that train: editing them changes
    the key, so cached weights from older training code are not reused."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}".encode())
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    """One cached training result: the weights (``path``) and an optional JSON sidecar beside them."""

    path: Path

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    def exists(self) -> bool:
        """The weights verify against their sha256 and the sidecar is there."""
        return is_cached(self.path) and self.sidecar.exists()

    def load(self, model: nn.Module) -> Any:
        """Load the weights into ``model``; returns the sidecar's content."""
        load_state(model, self.path)
        return json.loads(self.sidecar.read_text())

    def save(self, model: nn.Module, sidecar: Any = None) -> None:
        self.sidecar.write_text(json.dumps(sidecar))
        save_state(model, self.path)


def cache_entry(prefix: str, model: nn.Module, *, data: Any, hyper: Mapping[str, Any],
                code: tuple[Any, ...]) -> CacheEntry:
    """Where the result of training ``model`` (its architecture) on ``data`` with ``hyper`` by ``code`` lives."""
    key = cache_key(prefix=prefix, arch=architecture_key(model), data=data_hash(data), hyper=dict(hyper),
                    code=code_version(*code))
    return CacheEntry(model_path(prefix, key))


def train_or_load(prefix: str, model: nn.Module, train: Callable[[], Any], *, data: Any,
                  hyper: Mapping[str, Any], code: tuple[Any, ...]) -> Any:
    """Load ``model``'s weights trained on ``data`` with ``hyper`` by ``code`` from the cache, or call ``train()``
    (which trains ``model`` in place and returns a JSON-able sidecar, e.g. its loss curve) and cache the result.
    Returns the sidecar either way."""
    entry = cache_entry(prefix, model, data=data, hyper=hyper, code=code)
    if entry.exists():
        return entry.load(model)
    if render_only():
        raise RenderOnly(f"{prefix}: no cached weights, and {RENDER_ONLY_ENV} is set (a page is rendering), so "
                         f"nothing is trained; compute the chapter first (`replbook build`).")
    sidecar = train()
    entry.save(model, sidecar)
    return sidecar
