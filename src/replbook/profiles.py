"""Profiles: named sets of parameter defaults (``smoke``, ``cpu``, ``paper``), typed and validated before any work.

A chapter declares its parameters once (:class:`Param`) and a default for each in every profile
(:class:`ChapterParams`). A notebook's parameters cell sets ``profile`` and leaves every other parameter ``None``,
which means "the profile's value"; papermill ``-p NAME VALUE`` overrides single values. :func:`resolve` merges the
two and checks every value, raising :class:`ParameterError` with one sentence naming the parameter and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from replbook.assets import resolve as resolve_asset

PROFILES = ("smoke", "cpu", "paper")


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One typed parameter. ``kind`` is int, float, str, bool or list (of ``item``)."""

    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    item: type | None = None

    def check(self, value: Any) -> Any:
        """Return the value coerced to ``kind`` (int → float, tuple → list), or raise :class:`ParameterError`."""
        where = f"parameter {self.name!r}"
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise ParameterError(
                f"{where} must be of type {self.kind.__name__}; got {value!r} ({type(value).__name__}). {self.help}"
            )
        items = value if self.kind is list else [value]
        if self.kind is list:
            if not value:
                raise ParameterError(f"{where} must not be empty. {self.help}")
            items = [float(v) if self.item is float and isinstance(v, int) else v for v in value]
            value = items
            if self.item and not all(isinstance(v, self.item) and not isinstance(v, bool) for v in items):
                raise ParameterError(f"{where} must be a list of {self.item.__name__}; got {value!r}. {self.help}")
        for v in items:
            if self.choices is not None and v not in self.choices:
                raise ParameterError(f"{where} must be one of {list(self.choices)}; got {v!r}.")
            if self.low is not None and v < self.low or self.high is not None and v > self.high:
                raise ParameterError(
                    f"{where} must lie in [{self.low}, {self.high}]; got {v!r}. {self.help}"
                )
        return value


@dataclass(frozen=True)
class ChapterParams:
    """A chapter's parameters and their value in each profile.

    ``defaults["smoke"]`` sets every parameter; every other profile states only what it changes from smoke (its
    full set is merged here, and :meth:`changes` gives the diff back). ``assets`` names, per profile, the manifests
    the run loads: a list, or a function of the resolved parameters that returns one (e.g. the data set a
    parameter picks). ``validate`` checks what involves several parameters; :func:`resolve` calls it before any
    work and it raises :class:`ParameterError`.
    """

    slug: str
    params: tuple[Param, ...]
    defaults: Mapping[str, Mapping[str, Any]]
    assets: Mapping[str, Sequence[str] | Callable[[dict[str, Any]], Sequence[str]]] = field(default_factory=dict)
    validate: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        names = {p.name for p in self.params}
        if "smoke" not in self.defaults:
            raise ValueError(f"{self.slug}: defaults need a 'smoke' profile that sets every parameter.")
        if set(self.defaults["smoke"]) != names:
            raise ValueError(f"{self.slug}/smoke: defaults must set exactly {sorted(names)}.")
        merged = {}
        for profile, values in self.defaults.items():
            if profile not in PROFILES:
                raise ValueError(f"{self.slug}: unknown profile {profile!r} in defaults.")
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"{self.slug}/{profile}: unknown parameters {sorted(unknown)}.")
            merged[profile] = {**self.defaults["smoke"], **values}
            for p in self.params:
                p.check(merged[profile][p.name])
        object.__setattr__(self, "_changes", {k: dict(v) for k, v in self.defaults.items()})
        object.__setattr__(self, "defaults", merged)

    def changes(self, profile: str) -> dict[str, Any]:
        """What ``profile`` changes from the smoke values (smoke itself: every value)."""
        return dict(self._changes[profile])

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(
            f"{self.slug} has no parameter {name!r}; its parameters are {', '.join(p.name for p in self.params)}."
        )

    def assets_for(self, values: dict[str, Any]) -> list[str]:
        """The manifests a run with these resolved ``values`` loads."""
        listed = self.assets.get(values["profile"], ())
        return list(listed(values) if callable(listed) else listed)


def resolve(spec: ChapterParams, profile: str, overrides: Mapping[str, Any] | None = None,
            check_assets: bool = True) -> dict[str, Any]:
    """The full parameter set of ``profile`` with non-``None`` overrides applied, every value validated, then the
    chapter's checks across parameters.

    Also resolves the assets the profile needs (checksums included), so a missing or altered asset stops the run
    here, before any work.
    """
    if profile not in spec.defaults:
        raise ParameterError(
            f"unknown profile {profile!r} for {spec.slug}; choose one of {', '.join(spec.defaults)}."
        )
    values = {"profile": profile, **spec.defaults[profile]}
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        values[name] = spec.param(name).check(value)
    if spec.validate is not None:
        spec.validate(values)
    if check_assets:
        for asset in spec.assets_for(values):
            resolve_asset(asset)
    return values


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees it (the validator has refused ``cuda`` without a device)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def config(cls: type, params: Mapping[str, Any], **values: Any) -> Any:
    """The parameters stop at the door: a chapter's ``run(params)`` hands its deep functions a small typed config
    (a dataclass) instead of the whole dict. Each field of ``cls`` takes the parameter of its name, or ``values``
    where given."""
    from dataclasses import fields

    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.name in params:
            kwargs[f.name] = params[f.name]
        else:
            raise ParameterError(f"{cls.__name__} needs '{f.name}', which is not a parameter; pass it as a value.")
    return cls(**kwargs)
