"""Profiles: named sets of parameter defaults (``smoke``, ``cpu``, ``paper``), typed and validated before any work.

A chapter declares its parameters once (:class:`Param`) and a default for each in every profile
(:class:`ChapterParams`). A notebook's parameters cell sets ``profile`` and leaves every other parameter ``None``,
which means "the profile's value"; papermill ``-p NAME VALUE`` overrides single values. :func:`resolve` merges the
two and checks every value, raising :class:`ParameterError` with one sentence naming the parameter and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    """A chapter's parameters and their value in each profile; ``assets`` names the manifests each profile needs."""

    slug: str
    params: tuple[Param, ...]
    defaults: Mapping[str, Mapping[str, Any]]
    assets: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {p.name for p in self.params}
        for profile, values in self.defaults.items():
            if profile not in PROFILES:
                raise ValueError(f"{self.slug}: unknown profile {profile!r} in defaults.")
            if set(values) != names:
                raise ValueError(f"{self.slug}/{profile}: defaults must set exactly {sorted(names)}.")
            for p in self.params:
                p.check(values[p.name])

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(
            f"{self.slug} has no parameter {name!r}; its parameters are {', '.join(p.name for p in self.params)}."
        )


def resolve(spec: ChapterParams, profile: str, overrides: Mapping[str, Any] | None = None,
            check_assets: bool = True) -> dict[str, Any]:
    """The full parameter set of ``profile`` with non-``None`` overrides applied, every value validated.

    Also resolves the assets the profile needs (checksums included), so a missing or altered asset stops the run
    here, before any work.
    """
    if profile not in spec.defaults:
        raise ParameterError(
            f"unknown profile {profile!r} for {spec.slug}; choose one of {', '.join(spec.defaults)}."
        )
    values = dict(spec.defaults[profile])
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        values[name] = spec.param(name).check(value)
    if check_assets:
        from replbook.assets import resolve as resolve_asset

        for asset in spec.assets.get(profile, ()):
            resolve_asset(asset)
    return {"profile": profile, **values}
