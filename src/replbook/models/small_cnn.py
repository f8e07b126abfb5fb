"""A small CNN for 28×28 grey images whose convolutions are a small share of the parameters (CLAT's regime: a few
critical layers ≈ 5% of the model)."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """conv 1→c1, conv c1→c2 + pool, conv c2→c3, conv c3→c3 + pool, fc (c3·7·7 → hidden), fc (hidden → classes)."""

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 32, hidden: int = 256, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.conv4 = nn.Conv2d(c3, c3, 3, padding=1)
        self.fc1 = nn.Linear(c3 * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    @property
    def layers(self) -> list[nn.Module]:
        """The layers criticality is measured on, in forward order (the logit layer last)."""
        return [self.conv1, self.conv2, self.conv3, self.conv4, self.fc1, self.fc2]

    @property
    def head(self) -> nn.Linear:
        """The classifier that maps :meth:`features` to logits."""
        return self.fc2

    def feature_map(self, x):
        """The last convolutional map [B, c3, 7, 7]."""
        x = self.act(self.conv1(x))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.conv3(x))
        return self.pool(self.act(self.conv4(x)))

    def features(self, x):
        """The penultimate features [B, hidden] (after ReLU), which the head ``fc2`` maps to logits."""
        return self.act(self.fc1(self.feature_map(x).flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))
