"""A chapter's results as data: a dataclass to plain JSON plus one table of arrays, and back.

:class:`ResultsData` gives a results dataclass ``to_data()`` and ``from_data()``. Scalars, strings, tables and small
lists become JSON a reader can open; every numpy array (or torch tensor) goes into the arrays table, keyed by its path
in the results (``lm/0/epochs/10/boot/loss``), which :mod:`replbook.results` saves as one ``.npz``. The JSON marks
what plain JSON cannot say:

- ``{"__array__": "<path>"}``: the array saved under that path;
- ``{"__float__": "nan"}`` (or ``"inf"``, ``"-inf"``): a non-finite float (JSON has none);
- ``{"__items__": [[key, value], ...]}``: a dict whose keys are not all strings (epochs, λ values).

Decoding follows the dataclass's type hints (``dict[int, float]`` gets its int keys back, a nested dataclass is
rebuilt, a tuple stays a tuple); a field typed ``Any`` holds plain data (dicts, lists, numbers, strings, arrays).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

ARRAY, FLOAT, ITEMS = "__array__", "__float__", "__items__"
MARKERS = (ARRAY, FLOAT, ITEMS)

T = TypeVar("T", bound="ResultsData")


class CodecError(TypeError):
    """A value cannot be saved as results data, or saved data does not fit its type."""


def _key_text(key: Any) -> str:
    return str(key).replace("/", "∕")  # a slash inside a key would read as a level of the path


def encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as plain JSON, its arrays moved into ``arrays`` under their path."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {FLOAT: repr(float(value))}
    if isinstance(value, np.generic):
        return encode(value.item(), path, arrays)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CodecError(f"{path or 'results'}: an object array cannot be saved; use a numeric array or a list.")
        arrays[path] = value
        return {ARRAY: path}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name), f"{path}/{f.name}".lstrip("/"), arrays)
                for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            if any(k in MARKERS for k in value):
                raise CodecError(f"{path or 'results'}: the keys {MARKERS} are reserved.")
            return {k: encode(v, f"{path}/{_key_text(k)}".lstrip("/"), arrays) for k, v in value.items()}
        return {ITEMS: [[encode(k, "", {}), encode(v, f"{path}/{_key_text(k)}".lstrip("/"), arrays)]
                        for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [encode(v, f"{path}/{i}".lstrip("/"), arrays) for i, v in enumerate(value)]
    raise CodecError(f"{path or 'results'}: cannot save a {type(value).__name__} as results data; use numbers, "
                     f"strings, arrays, lists, dicts or dataclasses of them.")


def _plain(data: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Decode without a type: markers resolved, lists stay lists (a list used as a key becomes a tuple)."""
    if isinstance(data, dict):
        if ARRAY in data:
            return arrays[data[ARRAY]]
        if FLOAT in data:
            return float(data[FLOAT])
        if ITEMS in data:
            return {_hashable(_plain(k, arrays)): _plain(v, arrays) for k, v in data[ITEMS]}
        return {k: _plain(v, arrays) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v, arrays) for v in data]
    return data


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _key(text: Any, hint: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """A dict key: a JSON object's string key converted to the hinted key type, or an ``__items__`` key decoded."""
    if not isinstance(text, str):
        return _hashable(decode(text, hint, arrays))
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    return text


def decode(data: Any, hint: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The value of type ``hint`` that :func:`encode` turned into ``data``."""
    if data is None:
        return None
    if isinstance(data, dict) and (ARRAY in data or FLOAT in data):
        value = _plain(data, arrays)
        if hint is not Any and getattr(hint, "__module__", "").startswith("torch"):
            import torch

            return torch.from_numpy(np.array(value))
        return value
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is object or isinstance(hint, TypeVar):
        return _plain(data, arrays)
    if origin in (Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        return decode(data, arms[0], arrays) if len(arms) == 1 else _plain(data, arrays)
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, data, arrays)
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        key_hint, value_hint = args if args else (Any, Any)
        items = data[ITEMS] if ITEMS in data else data.items()
        return {_key(k, key_hint, arrays): decode(v, value_hint, arrays) for k, v in items}
    if origin is tuple or hint is tuple:
        if args and args[-1] is not Ellipsis:
            return tuple(decode(v, h, arrays) for v, h in zip(data, args, strict=True))
        return tuple(decode(v, args[0] if args else Any, arrays) for v in data)
    if origin in (list, Sequence, typing.Sequence) or hint in (list, Sequence):
        return [decode(v, args[0] if args else Any, arrays) for v in data]
    if hint is float:
        return float(data)
    if hint in (int, str, bool):
        return data
    return _plain(data, arrays)


def _dataclass(cls: type, data: dict, arrays: Mapping[str, np.ndarray]) -> Any:
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    missing = [f.name for f in fields if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CodecError(f"saved {cls.__name__} lacks the fields {missing}: it was written by other code; "
                         f"recompute it.")
    return cls(**{f.name: decode(data[f.name], hints[f.name], arrays) for f in fields if f.name in data})


class ResultsData:
    """Mixin of a chapter's results dataclass: :meth:`to_data` and :meth:`from_data` (see the module's rules)."""

    def to_data(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able dict, arrays by path)."""
        arrays: dict[str, np.ndarray] = {}
        return encode(self, "", arrays), arrays

    @classmethod
    def from_data(cls: type[T], data: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> T:
        """The results that :meth:`to_data` gave ``data`` and ``arrays`` for."""
        return _dataclass(cls, data, arrays)
