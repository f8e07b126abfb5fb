"""A toy "CLIP-like" image tower for the OOD chapter: a small CNN whose pooled feature map is projected into the
embedding space of a frozen sentence encoder and trained so that each image's embedding is closest (cosine) to the
embedding of its class prompt. Not CLIP: no web-scale pre-training, one image domain, ten class names. It lets MCM
and GL-MCM run on real text embeddings offline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ToyImageTower(nn.Module):
    """conv stack (28×28 → 7×7 map of 2·``width`` channels) → per-location projection to ``embed_dim``. The global
    embedding is the projection of the mean-pooled map; the local embeddings are the projections of the 49 locations
    (the analogue of GL-MCM's projected patch tokens)."""

    def __init__(self, embed_dim: int = 384, width: int = 16):
        super().__init__()
        w = width
        self.convs = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2))
        self.proj = nn.Linear(2 * w, embed_dim)

    def global_and_local(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 1, 28, 28] → global [B, D] and local [B, 49, D] embeddings (not normalised)."""
        fmap = self.convs(x).flatten(2).transpose(1, 2)  # [B, 49, C]
        return self.proj(fmap.mean(1)), self.proj(fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The global embedding [B, D] only (training needs no local ones)."""
        return self.proj(self.convs(x).mean(dim=(2, 3)))


def contrastive_logits(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """[B, D], [K, D] → [B, K]: cosine similarities divided by the temperature (CLIP's image-to-text logits)."""
    return F.normalize(image_embeddings, dim=-1) @ F.normalize(text_embeddings, dim=-1).T / temperature
