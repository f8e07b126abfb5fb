"""A tiny UNet segmenter (CGR spec §5.2): a stand-in for the official residual UNet (base 32 channels × [1, 2, 4, 8,
16]) at miniature scale, with the same interface: image [B, C, H, W] → logits [B, n_labels, H, W] over the global label
space. Widths and depth are parameters, so the ``paper`` profile can build the official widths."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn


def _block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """Two 3×3 convolutions with GroupNorm and SiLU (a residual unit without the skip: the miniature is shallow)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(groups, c_out), c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(min(groups, c_out), c_out), nn.SiLU())


class SegUNet(nn.Module):
    """Encoder–decoder with skip connections: ``widths[i]`` channels at 1/2^i resolution; strided-conv down,
    transposed-conv up, a 1×1 classifier. Input sides must be divisible by 2^(len(widths) − 1)."""

    def __init__(self, in_channels: int = 1, n_labels: int = 7, widths: tuple[int, ...] = (8, 16, 32),
                 groups: int = 4):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"SegUNet: widths needs at least two levels; got {widths}.")
        self.down_factor = 2 ** (len(widths) - 1)
        self.stem = _block(in_channels, widths[0], groups)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise(widths))
        self.encoders = nn.ModuleList(_block(b, b, groups) for b in widths[1:])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in pairwise(widths))
        self.decoders = nn.ModuleList(_block(2 * a, a, groups) for a in widths[:-1])
        self.classifier = nn.Conv2d(widths[0], n_labels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.down_factor or x.shape[-2] % self.down_factor:
            raise ValueError(f"SegUNet: image sides {tuple(x.shape[-2:])} must be divisible by {self.down_factor}.")
        skips = [self.stem(x)]
        for down, enc in zip(self.downs, self.encoders, strict=True):
            skips.append(enc(down(skips[-1])))
        h = skips.pop()
        for up, dec in zip(reversed(self.ups), reversed(self.decoders), strict=True):
            h = dec(torch.cat([up(h), skips.pop()], dim=1))
        return self.classifier(h)
