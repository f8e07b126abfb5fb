"""Procedural open-set detection scenes: seeded grey 64×64 images with exact boxes and labels, for the OSR-ViT
miniature (spec osrvit.md §5.1).

Each scene holds 2–5 objects of 10–24 px, each a filled shape at a random rotation, scale, aspect and grey level,
some with a striped fill, over a sinusoidal background texture, with soft clutter blobs (non-objects) and Gaussian
noise; objects may overlap a little. The shapes fall in three families:

* **known** (:data:`KNOWN`): square, circle, triangle: labelled in training;
* **unknown** (:data:`UNKNOWN`): near-OOD hexagon and ellipse (similar to a known shape), far-OOD star, cross and
  ring: never labelled; they appear unlabelled in some training scenes (as COCO's other classes do in VOC images) and
  labelled in the test scenes, for scoring only;
* **auxiliary** (:data:`AUXILIARY`): shapes in neither family, on which the miniature's ViT is pre-trained (the
  stand-in for a foundation model that has seen many objects, none of them labelled as the test's classes).

Labels index :data:`CLASSES` (known first, then unknown, then auxiliary). Boxes are ``[x1, y1, x2, y2]`` in pixels,
the tight box of the drawn pixels (x2, y2 exclusive). Intensities lie in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.draw import polygon as draw_polygon

KNOWN = ("square", "circle", "triangle")
NEAR_UNKNOWN = ("hexagon", "ellipse")
FAR_UNKNOWN = ("star", "cross", "ring")
UNKNOWN = NEAR_UNKNOWN + FAR_UNKNOWN
AUXILIARY = ("pentagon", "octagon", "semicircle", "crescent", "l-shape", "t-shape", "arrow", "trapezoid")
CLASSES = KNOWN + UNKNOWN + AUXILIARY
SIZE = 64


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n + phase
    return np.stack([np.cos(a), np.sin(a)], 1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    a = np.pi * np.arange(2 * points) / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _semicircle() -> np.ndarray:
    a = np.linspace(np.pi, 2 * np.pi, 17)
    return np.stack([np.cos(a), np.sin(a) + 0.45], 1)


#: Polygon outlines in the unit square [−1, 1]² (x, y); the round shapes are drawn from distance fields instead.
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.85,
    "triangle": _regular(3, -np.pi / 2) * np.array([1.0, 1.0]) + np.array([0.0, 0.25]),
    "hexagon": _regular(6),
    "star": _star(),
    "cross": np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1], [-0.3, 1],
                       [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]], float),
    "pentagon": _regular(5, -np.pi / 2),
    "octagon": _regular(8, np.pi / 8),
    "semicircle": _semicircle(),
    "l-shape": np.array([[-0.8, -1], [-0.2, -1], [-0.2, 0.4], [0.8, 0.4], [0.8, 1], [-0.8, 1]], float),
    "t-shape": np.array([[-1, -1], [1, -1], [1, -0.4], [0.3, -0.4], [0.3, 1], [-0.3, 1], [-0.3, -0.4],
                         [-1, -0.4]], float),
    "arrow": np.array([[-1, -0.3], [0.1, -0.3], [0.1, -0.8], [1, 0], [0.1, 0.8], [0.1, 0.3], [-1, 0.3]], float),
    "trapezoid": np.array([[-1, 0.7], [1, 0.7], [0.45, -0.7], [-0.45, -0.7]], float),
}


def _round_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Masks of the round shapes on unit coordinates (u, v) of the object's frame."""
    r2 = u ** 2 + v ** 2
    if name == "circle":
        return r2 <= 0.9 ** 2
    if name == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    if name == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if name == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v ** 2 > 0.8 ** 2)
    raise KeyError(name)


ROUND = ("circle", "ellipse", "ring", "crescent")


def shape_mask(name: str, center: tuple[float, float], radius: float, angle: float, aspect: float,
               size: int = SIZE) -> np.ndarray:
    """The filled mask [size, size] of shape ``name`` centred at (x, y) = ``center``, half-side ``radius`` pixels,
    rotated by ``angle`` radians and stretched by ``aspect`` along its own x axis."""
    cx, cy = center
    if name in ROUND:
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        dx, dy = xx - cx, yy - cy
        c, s = np.cos(angle), np.sin(angle)
        u, v = (c * dx + s * dy) / (radius * aspect), (-s * dx + c * dy) / radius
        return _round_mask(name, u, v)
    pts = POLYGONS[name] * np.array([aspect, 1.0]) * radius
    c, s = np.cos(angle), np.sin(angle)
    rot = pts @ np.array([[c, s], [-s, c]])
    rr, cc = draw_polygon(rot[:, 1] + cy - 0.5, rot[:, 0] + cx - 0.5, shape=(size, size))
    mask = np.zeros((size, size), bool)
    mask[rr, cc] = True
    return mask


@dataclass
class Scene:
    """One rendered scene: ``image`` [64, 64] in [0, 1], ``boxes`` [m, 4] and ``labels`` [m] (indices of
    :data:`CLASSES`) of its labelled objects, and ``hidden_boxes`` / ``hidden_labels`` of the objects drawn but not
    labelled (unknown objects in a training scene)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    hidden_boxes: np.ndarray
    hidden_labels: np.ndarray


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


def render_scene(rng: np.random.Generator, shapes: Sequence[str], *, labelled: Callable[[str], bool] = lambda s: True,
                 clutter: int = 2, noise: float = 0.04, size: int = SIZE) -> Scene:
    """Draw ``shapes`` (names of :data:`CLASSES`) into one scene, in order (later ones may overlap earlier ones a
    little: a new object's box keeps IoU ≤ 0.15 with every earlier box, else it is placed again, up to 30 times,
    then dropped). ``labelled(name)`` says whether an object's box goes into the labels or into the hidden lists."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    # background: a low grey level, two oriented sinusoids and a gradient
    image = rng.uniform(0.05, 0.3) + 0.04 * rng.uniform(-1, 1) * (xx - 0.5) + 0.04 * rng.uniform(-1, 1) * (yy - 0.5)
    for _ in range(2):
        f, th, ph = rng.uniform(2, 9), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        image = image + rng.uniform(0.02, 0.07) * np.sin(2 * np.pi * f * (np.cos(th) * xx + np.sin(th) * yy) + ph)
    # clutter: soft Gaussian blobs of object-like size and contrast but no edges (non-objects)
    for _ in range(int(rng.integers(0, clutter + 1))):
        bx, by, sg = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.1)
        image = image + rng.uniform(0.15, 0.4) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sg ** 2))
    boxes, labels, hidden_boxes, hidden_labels = [], [], [], []
    placed: list[np.ndarray] = []
    for name in shapes:
        for _ in range(30):
            radius = rng.uniform(5.0, 12.0)
            center = rng.uniform(radius + 1, size - radius - 1, size=2)
            mask = shape_mask(name, (center[0], center[1]), radius, rng.uniform(0, 2 * np.pi),
                              rng.uniform(0.8, 1.25), size)
            if mask.sum() < 12:
                continue
            ys, xs = np.nonzero(mask)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
            if all(_iou(box, b) <= 0.15 for b in placed):
                break
        else:
            continue
        placed.append(box)
        level = rng.uniform(0.55, 1.0)
        fill = np.full((size, size), level)
        if rng.random() < 0.3:  # a striped fill: texture inside objects too
            th = rng.uniform(0, np.pi)
            fill = fill - 0.2 * (np.sin(2 * np.pi * 6 * (np.cos(th) * xx + np.sin(th) * yy)) > 0)
        image = np.where(mask, fill, image)
        if labelled(name):
            boxes.append(box)
            labels.append(CLASSES.index(name))
        else:
            hidden_boxes.append(box)
            hidden_labels.append(CLASSES.index(name))
    image = np.clip(image + rng.normal(0, noise, image.shape), 0, 1).astype(np.float32)

    def arr(b: list) -> np.ndarray:
        return np.array(b, float).reshape(-1, 4)

    return Scene(image, arr(boxes), np.array(labels, np.int64), arr(hidden_boxes), np.array(hidden_labels, np.int64))


def make_scenes(n: int, seed: int, kind: str, *, unlabelled_rate: float = 0.0, unknown_rate: float = 0.5,
                objects: tuple[int, int] = (2, 5)) -> list[Scene]:
    """``n`` seeded scenes of one ``kind``:

    * ``"train"``: 2–5 known objects labelled; with probability ``unlabelled_rate`` one more object of an unknown
      shape, drawn but not labelled;
    * ``"test"``: 2–5 objects, each unknown with probability ``unknown_rate`` (half near, half far), all labelled;
    * ``"auxiliary"``: 2–5 objects of the auxiliary shapes, labelled (the ViT's pre-training scenes).
    """
    if kind not in ("train", "test", "auxiliary"):
        raise ValueError(f"kind must be 'train', 'test' or 'auxiliary'; got {kind!r}.")
    rng = np.random.default_rng([seed, ("train", "test", "auxiliary").index(kind)])
    scenes = []
    for _ in range(n):
        count = int(rng.integers(objects[0], objects[1] + 1))
        if kind == "train":
            shapes = list(rng.choice(KNOWN, size=count))
            if rng.random() < unlabelled_rate:
                shapes.insert(int(rng.integers(0, count + 1)), str(rng.choice(UNKNOWN)))
            scenes.append(render_scene(rng, shapes, labelled=lambda s: s in KNOWN))
        elif kind == "test":
            shapes = []
            for _ in range(count):
                if rng.random() < unknown_rate:
                    shapes.append(str(rng.choice(NEAR_UNKNOWN if rng.random() < 0.5 else FAR_UNKNOWN)))
                else:
                    shapes.append(str(rng.choice(KNOWN)))
            scenes.append(render_scene(rng, shapes))
        else:
            scenes.append(render_scene(rng, list(rng.choice(AUXILIARY, size=count))))
    return scenes
