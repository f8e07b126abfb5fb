"""A small dense (FCOS / OLN-style, one prediction per location) detector for the OSR-ViT chapter.

One trunk of 3×3 convolutions (stride 4 overall) and three heads per location: box distances (left, top, right,
bottom, in pixels), a localisation-quality (centerness) logit, and class logits: one foreground logit for the
class-agnostic proposal network (THPN), or K known classes + background for the supervised baseline detector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DenseDetector(nn.Module):
    """images [B, C, H, W] → {"ltrb": [B, P, 4], "ctr": [B, P], "cls": [B, P, n_cls]} with P = (H/4)·(W/4)
    locations in row-major order; :meth:`points` gives their pixel coordinates."""

    stride = 4

    def __init__(self, n_cls: int, width: int = 48, in_channels: int = 1, depth: int = 4):
        super().__init__()
        layers, c = [], in_channels
        for i in range(depth):
            # the first two convolutions halve the resolution: stride 4 in all
            layers += [nn.Conv2d(c, width, 3, stride=2 if i < 2 else 1, padding=1), nn.GroupNorm(8, width),
                       nn.ReLU(inplace=True)]
            c = width
        self.trunk = nn.Sequential(*layers)
        self.ltrb = nn.Conv2d(width, 4, 3, padding=1)
        self.ctr = nn.Conv2d(width, 1, 3, padding=1)
        self.cls = nn.Conv2d(width, n_cls, 3, padding=1)
        self.n_cls = n_cls

    def points(self, h: int, w: int) -> Tensor:
        """Pixel coordinates (x, y) of the locations of an H×W image: the centres of the stride-4 cells, [P, 2]."""
        ys, xs = torch.meshgrid(torch.arange(h // self.stride), torch.arange(w // self.stride), indexing="ij")
        return (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * self.stride

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        f = self.trunk(images)
        b = f.shape[0]
        # distances in pixels, positive: exp of a clamped log-scale around the stride
        ltrb = torch.exp(self.ltrb(f).clamp(-4, 4)) * self.stride
        return {"ltrb": ltrb.permute(0, 2, 3, 1).reshape(b, -1, 4),
                "ctr": self.ctr(f).reshape(b, -1),
                "cls": self.cls(f).permute(0, 2, 3, 1).reshape(b, -1, self.n_cls)}
