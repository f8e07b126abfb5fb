"""Procedural segmentation phantoms: seeded images with exact label maps, for the diffusion-replay chapters.

A stand-in for patient data (no anatomy is real). Three tasks differ in both appearance and semantics, as the CGR
paper's cardiac MR → fundus → prostate MR sequence does (spec cgr.md §5.1):

* ``cardiac``: a left-ventricle disc (1) inside a myocardium ring (2) and a right-ventricle crescent (3) beside it;
  dark background, bright blood pool, grey muscle, Rician-like noise, mild blur.
* ``fundus``: an optic cup (1) inside an optic disc (2: the rim around the cup), crossed by dark vessels; bright
  striped background with vignetting, brighter structures (the contrast of ``cardiac`` inverted).
* ``prostate``: one gland (1) with a wobbly outline; low contrast, a bias field and heavy speckle.

Labels are local to a task (0 = background); :data:`GLOBAL_OFFSET` places them in one global label space
(0 background, 1–3 cardiac, 4 optic cup, 5 optic disc, 6 prostate, as in the official code). The appearance of each
task is a :class:`Style`, so the same geometry can be rendered as several acquisition "sites" (SMG-Learning) by
changing it. Images are in [−1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

#: Structures of each task, in local label order (label i + 1).
STRUCTURES: dict[str, tuple[str, ...]] = {
    "cardiac": ("left ventricle", "myocardium", "right ventricle"),
    "fundus": ("optic cup", "optic disc"),  # the official label order (global 4 cup, 5 disc)
    "prostate": ("prostate gland",),
}
#: Offset of each task's local labels in the global label space (CGR's order: cardiac → fundus → prostate).
GLOBAL_OFFSET: dict[str, int] = {"cardiac": 0, "fundus": 3, "prostate": 5}
N_GLOBAL_LABELS = 1 + sum(len(s) for s in STRUCTURES.values())


@dataclass(frozen=True)
class Style:
    """The appearance of a task (or of one site): grey level per local label (background first), a sinusoidal
    background texture, vignetting, a linear bias field, noise (``rician`` additive magnitude noise, ``speckle``
    multiplicative), blur σ in pixels and a gamma applied last."""

    levels: tuple[float, ...]
    texture: float = 0.0
    vignette: float = 0.0
    bias: float = 0.0
    rician: float = 0.0
    speckle: float = 0.0
    blur: float = 0.0
    gamma: float = 1.0
    vessels: float = 0.0  # grey level of the (unlabelled) vessels; 0 draws none


STYLES: dict[str, Style] = {
    "cardiac": Style(levels=(0.12, 0.92, 0.45, 0.72), texture=0.02, rician=0.04, blur=0.6),
    "fundus": Style(levels=(0.55, 0.98, 0.80), texture=0.06, vignette=0.35, blur=0.5, vessels=0.25, rician=0.02),
    "prostate": Style(levels=(0.38, 0.62), bias=0.25, speckle=0.1, blur=0.8, texture=0.02),
}


#: Six acquisition "sites" of the cardiac task for SMG-Learning (spec smg.md §5.1): one geometry, six appearances.
#: The chapter learns S1 → S4 in sequence and never sees S5 and S6.
SITES: dict[str, Style] = {
    "S1": Style(levels=(0.12, 0.92, 0.45, 0.72), rician=0.03, blur=0.5),                 # clean MR-like
    "S2": Style(levels=(0.88, 0.10, 0.55, 0.30), rician=0.03, blur=0.5),                 # inverted contrast
    "S3": Style(levels=(0.12, 0.92, 0.45, 0.72), bias=0.6, rician=0.12, blur=0.5),       # bias field + Rician noise
    "S4": Style(levels=(0.35, 0.66, 0.48, 0.58), rician=0.02, blur=1.2),                 # low contrast + blur
    "S5": Style(levels=(0.12, 0.92, 0.45, 0.72), texture=0.12, rician=0.03, blur=0.5, gamma=0.5),  # gamma + texture
    "S6": Style(levels=(0.40, 1.00, 0.68, 0.88), rician=0.18, blur=0.5),                 # offset + strong noise
}
SITE_DESCRIPTIONS: dict[str, str] = {
    "S1": "clean MR-like", "S2": "inverted contrast", "S3": "strong bias field + Rician noise",
    "S4": "low contrast + blur σ = 1.2", "S5": "gamma 0.5 + sinusoidal texture",
    "S6": "intensity offset + strong noise",
}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(axis, axis, indexing="xy")


def _rotated(x: np.ndarray, y: np.ndarray, cx: float, cy: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(theta), np.sin(theta)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def _cardiac(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy = rng.uniform(-0.2, 0.2, 2)
    # sized so that every structure spans at least two pixels at 24 × 24 (the myocardium is the thinnest)
    r, wall = rng.uniform(0.22, 0.32), rng.uniform(0.16, 0.22)
    squash, theta = rng.uniform(0.8, 1.2), rng.uniform(0, 2 * np.pi)
    u, v = _rotated(x, y, cx, cy, theta)
    d = np.hypot(u * squash, v / squash)
    labels = np.zeros(x.shape, np.int64)
    # the right ventricle: a disc beside the heart, minus the heart's outer wall (a crescent)
    side = theta + rng.uniform(-0.4, 0.4)
    rv_r = (r + wall) * rng.uniform(0.9, 1.15)
    rx, ry = cx + np.cos(side) * (r + wall) * 0.95, cy + np.sin(side) * (r + wall) * 0.95
    rv = (np.hypot(x - rx, y - ry) < rv_r) & (d >= r + wall)
    labels[rv] = 3
    labels[(d >= r) & (d < r + wall)] = 2
    labels[d < r] = 1
    return labels


def _fundus(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy = rng.uniform(-0.25, 0.25, 2)
    a, b, theta = rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.45), rng.uniform(0, np.pi)
    u, v = _rotated(x, y, cx, cy, theta)
    disc = (u / a) ** 2 + (v / b) ** 2
    ratio = rng.uniform(0.35, 0.7)
    ox, oy = rng.uniform(-0.1, 0.1, 2) * (1 - ratio)
    cup = ((u - ox * a) / (a * ratio)) ** 2 + ((v - oy * b) / (b * ratio)) ** 2
    labels = np.zeros(x.shape, np.int64)
    labels[disc < 1] = 2
    labels[(cup < 1) & (disc < 1)] = 1
    return labels


def _prostate(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy = rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.25)
    a, b, theta = rng.uniform(0.3, 0.45), rng.uniform(0.22, 0.35), rng.uniform(-0.4, 0.4)
    u, v = _rotated(x, y, cx, cy, theta)
    phi = np.arctan2(v, u)
    wobble = 1 + sum(rng.uniform(-0.08, 0.08) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    labels = np.zeros(x.shape, np.int64)
    labels[np.hypot(u / a, v / b) < wobble] = 1
    return labels


_GEOMETRY = {"cardiac": _cardiac, "fundus": _fundus, "prostate": _prostate}


def _appearance(rng: np.random.Generator, labels: np.ndarray, style: Style, x: np.ndarray,
                y: np.ndarray) -> np.ndarray:
    if len(style.levels) <= int(labels.max()):
        raise ValueError(f"Style.levels has {len(style.levels)} grey levels; labels go up to {int(labels.max())}.")
    img = np.asarray(style.levels, np.float64)[labels]
    if style.texture:
        f, phase, angle = rng.uniform(4, 9), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        img = img + style.texture * np.sin(f * (np.cos(angle) * x + np.sin(angle) * y) + phase)
    if style.vessels:
        for _ in range(rng.integers(2, 4)):
            px, py, angle = *rng.uniform(-0.5, 0.5, 2), rng.uniform(0, np.pi)
            bend = rng.uniform(-0.6, 0.6)
            u, v = _rotated(x, y, px, py, angle)
            vessel = np.abs(v - bend * u ** 2) < rng.uniform(0.03, 0.06)
            img = np.where(vessel, style.vessels, img)
    if style.vignette:
        img = img * (1 - style.vignette * (x ** 2 + y ** 2) / 2)
    if style.bias:
        gx, gy = rng.normal(size=2)
        img = img * (1 + style.bias * (gx * x + gy * y) / np.hypot(gx, gy))
    if style.blur:
        img = ndimage.gaussian_filter(img, style.blur)
    if style.speckle:
        img = img * (1 + style.speckle * rng.normal(size=img.shape))
    if style.rician:
        img = np.hypot(img + style.rician * rng.normal(size=img.shape), style.rician * rng.normal(size=img.shape))
    img = np.clip(img, 0, 1) ** style.gamma
    return img


def render(task: str, n: int, size: int, seed: int, style: Style | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded phantoms of ``task``: (images [n, 1, size, size] float32 in [−1, 1], local labels
    [n, size, size] int64). ``style`` overrides the task's appearance (:data:`STYLES`)."""
    if task not in _GEOMETRY:
        raise ValueError(f"unknown phantom task {task!r}; tasks: {sorted(_GEOMETRY)}.")
    if n < 0 or size < 8:
        raise ValueError(f"render: need n ≥ 0 and size ≥ 8; got n={n}, size={size}.")
    style = style or STYLES[task]
    rng = np.random.default_rng([seed, sorted(_GEOMETRY).index(task)])
    x, y = _grid(size)
    images, labels = np.zeros((n, 1, size, size), np.float32), np.zeros((n, size, size), np.int64)
    for i in range(n):
        labels[i] = _GEOMETRY[task](rng, x, y)
        images[i, 0] = _appearance(rng, labels[i], style, x, y)
    return torch.from_numpy(images * 2 - 1), torch.from_numpy(labels)


def render_site(site: str, n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` cardiac phantoms as acquired at ``site`` (:data:`SITES`): images [n, 1, size, size], labels [n, size,
    size] (1 LV, 2 myocardium, 3 RV). Each site draws its own hearts (its own patients) from ``seed``."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; sites: {list(SITES)}.")
    return render("cardiac", n, size, seed * 100 + list(SITES).index(site) + 1, style=SITES[site])


def to_global(task: str, labels: torch.Tensor) -> torch.Tensor:
    """Local labels of ``task`` → the global label space (background stays 0)."""
    return torch.where(labels > 0, labels + GLOBAL_OFFSET[task], labels)


def restyle(task: str, **changes: float) -> Style:
    """The task's style with some knobs changed (a new site)."""
    return replace(STYLES[task], **changes)
