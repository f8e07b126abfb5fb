"""Offline OOD splits around Fashion-MNIST (the OOD chapter's miniature): held-out garment classes as near-OOD,
images from other sources as far-OOD, corrupted ID images as covariate shift. Every set is [N, 1, 28, 28] float32 in
[0, 1], generated from a seed.

Far-OOD sources, all installed with scikit-learn / scikit-image (no downloads):
- ``digits``: sklearn's 8×8 handwritten digits upscaled to 28×28 (an MNIST stand-in, OpenOOD's far-OOD for CIFAR);
- ``textures``: random crops of scikit-image's brick, grass and gravel textures (a Textures/DTD stand-in);
- ``photos``: random crops of scikit-image's bundled photographs (a Places/OpenImage-O stand-in);
- ``noise``: uniform noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FAR_SOURCES = ("digits", "textures", "photos", "noise")
CORRUPTIONS = ("gaussian_noise", "blur", "low_contrast")
_TEXTURES = ("brick", "grass", "gravel")
_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "clock", "text", "page")


def _grey(image: np.ndarray) -> torch.Tensor:
    """An skimage image (grey or RGB, any dtype) as a float tensor [H, W] in [0, 1]."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721])  # skimage's rgb2gray weights
    lo, hi = img.min(), img.max()
    return torch.from_numpy((img - lo) / max(hi - lo, 1e-12)).float()


def _random_crops(images: list[torch.Tensor], n: int, generator: torch.Generator, size: int = 28,
                  min_side: int = 48, max_side: int = 160) -> torch.Tensor:
    """n square crops (side drawn in [min_side, max_side]) from random images, area-resized to size×size."""
    out = torch.empty(n, 1, size, size)
    picks = torch.randint(0, len(images), (n,), generator=generator)
    for i, j in enumerate(picks.tolist()):
        img = images[j]
        side = int(torch.randint(min_side, min(max_side, *img.shape) + 1, (1,), generator=generator))
        top = int(torch.randint(0, img.shape[0] - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, img.shape[1] - side + 1, (1,), generator=generator))
        crop = img[top : top + side, left : left + side][None, None]
        out[i] = F.interpolate(crop, size=(size, size), mode="area")[0]
    return out


def far_ood(source: str, n: int, seed: int) -> torch.Tensor:
    """n far-OOD images [n, 1, 28, 28] from ``source`` (one of :data:`FAR_SOURCES`)."""
    gen = torch.Generator().manual_seed(seed)
    if source == "noise":
        return torch.rand(n, 1, 28, 28, generator=gen)
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = torch.from_numpy(load_digits().images).float()[:, None] / 16.0
        idx = torch.randperm(len(digits), generator=gen)[:n] if n <= len(digits) else \
            torch.randint(0, len(digits), (n,), generator=gen)
        # 8×8 → 20×20 and a 4-pixel border, the layout of MNIST digits in their 28×28 frame
        return F.pad(F.interpolate(digits[idx], size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    if source in ("textures", "photos"):
        try:
            from skimage import data
        except ImportError as err:
            raise ImportError("the far-OOD textures and photos come from scikit-image's bundled images; "
                              "install scikit-image (`pip install scikit-image`).") from err
        names = _TEXTURES if source == "textures" else _PHOTOS
        return _random_crops([_grey(getattr(data, name)()) for name in names], n, gen)
    raise ValueError(f"source must be one of {FAR_SOURCES}; got {source!r}.")


def corrupt(x: torch.Tensor, kind: str, severity: float, seed: int) -> torch.Tensor:
    """Covariate shift of images [N, 1, H, W] in [0, 1], the labels unchanged: additive Gaussian noise (σ =
    ``severity``), a Gaussian blur (σ = ``severity`` pixels) or contrast reduced towards the mean by ``severity``
    in [0, 1]."""
    if kind == "gaussian_noise":
        gen = torch.Generator().manual_seed(seed)
        return (x + severity * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    if kind == "blur":
        radius = max(1, int(3 * severity))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(t**2) / (2 * severity**2))
        kernel = kernel / kernel.sum()
        out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
        return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    if kind == "low_contrast":
        if not 0 <= severity <= 1:
            raise ValueError(f"low_contrast severity must lie in [0, 1]; got {severity}.")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return mean + (1 - severity) * (x - mean)
    raise ValueError(f"kind must be one of {CORRUPTIONS}; got {kind!r}.")
