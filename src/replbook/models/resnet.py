"""The residual networks of CLAT's paper profile, for 32×32 colour images in [0, 1] (no input normalisation, as in
the adversarial-training literature's CIFAR code):

- :class:`WideResNet` (Zagoruyko & Komodakis 2016), the depth-34 width-10 variant used by Madry et al. and TRADES
  (46,160,474 parameters for 10 classes);
- :class:`PreActResNet18` (He et al. 2016, identity mappings), the model of Rice et al.'s robust-overfitting study,
  with the final BatchNorm–ReLU before pooling (11,172,170 parameters for 10 classes).

Both are pre-activation networks and expose ``.layers``: the convolutions on the main path and the classifier, in
forward order, which is what CLAT measures criticality on. The 1×1 shortcut convolutions are left out: they read the
block's input, not the previous listed layer's output, so the ratio W_i / W_{i−1} is undefined for them; they stay
frozen in CLAT's fine-tuning.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN–ReLU–conv3×3–BN–ReLU–conv3×3 plus the shortcut (1×1 conv on the pre-activation when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class _PreActNet(nn.Module):
    def __init__(self, stem_ch: int, stages: list[tuple[int, int, int]], num_classes: int):
        """``stages``: (output channels, blocks, first stride) per stage."""
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_ch, 3, 1, 1, bias=False)
        blocks, ch = [], stem_ch
        for out_ch, n, stride in stages:
            for j in range(n):
                blocks.append(PreActBlock(ch, out_ch, stride if j == 0 else 1))
                ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)

    @property
    def layers(self) -> list[nn.Module]:
        """Stem conv, each block's two main-path convs, the classifier (logits last)."""
        return [self.conv1, *[c for b in self.blocks for c in (b.conv1, b.conv2)], self.fc]

    def forward(self, x):
        out = self.blocks(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideResNet(_PreActNet):
    """WRN-``depth``-``widen``: (depth − 4) / 6 blocks per stage, widths 16·widen, 32·widen, 64·widen."""

    def __init__(self, depth: int = 34, widen: int = 10, num_classes: int = 10):
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 70, …); got {depth}.")
        n = (depth - 4) // 6
        super().__init__(16, [(16 * widen, n, 1), (32 * widen, n, 2), (64 * widen, n, 2)], num_classes)


class PreActResNet18(_PreActNet):
    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__(width, [(width, 2, 1), (2 * width, 2, 2), (4 * width, 2, 2), (8 * width, 2, 2)],
                         num_classes)


class _BasicBlock(nn.Module):
    """Post-activation basic block: conv–BN–ReLU–conv–BN, plus the shortcut (1×1 conv + BN when the shape changes),
    then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for 32×32 inputs (3×3 stem, no max-pool; He et al. 2016), the classifier of OpenOOD v1.5's CIFAR
    benchmarks. Module names follow OpenOOD's ``ResNet18_32x32`` (``conv1``, ``bn1``, ``layer1``–``layer4``,
    ``fc``) so that its released ``best.ckpt`` state dicts load unchanged; ``width`` shrinks it for tests."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        ch, stages = width, []
        for i, stride in enumerate((1, 2, 2, 2)):
            out_ch = width * 2**i
            stages.append(nn.Sequential(_BasicBlock(ch, out_ch, stride), _BasicBlock(out_ch, out_ch, 1)))
            ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(ch, num_classes)

    @property
    def head(self) -> nn.Linear:
        """The classifier that maps :meth:`features` to logits."""
        return self.fc

    def features(self, x):
        """The penultimate features [B, 8·width] (global average of the last stage)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))
