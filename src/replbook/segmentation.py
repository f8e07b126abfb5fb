"""Segmentation pieces the replay chapters share (CGR, SMG-Learning): a Dice + cross-entropy loss over a set of
labels, prediction over those labels, and Dice per image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_logits(logits: Tensor, seen: list[int]) -> Tensor:
    """Logits over the global label space with unseen labels at −∞: the growing classifier of the official code
    (rows added per task) as one head."""
    mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
    mask[seen] = 0.0
    return logits + mask[None, :, None, None]


def dice_ce_loss(logits: Tensor, target: Tensor, seen: list[int]) -> Tensor:
    """Cross-entropy plus soft Dice (1 − mean over the seen labels) on softmax probabilities over the seen labels:
    MONAI's DiceCE with a one-hot over the current label set, as in the official segmenter."""
    z = masked_logits(logits, seen)
    ce = F.cross_entropy(z, target)
    prob = z.softmax(1)[:, seen]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()[:, seen]
    inter = (prob * onehot).sum((0, 2, 3))
    dice = (2 * inter + 1e-5) / (prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1e-5)
    return ce + 1 - dice.mean()


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, seen: list[int], batch: int = 256) -> Tensor:
    """Global label maps [N, H, W] (argmax over the seen labels)."""
    model.eval()
    device = next(model.parameters()).device
    out = [masked_logits(model(images[i:i + batch].to(device)), seen).argmax(1).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out)


def dice_per_image(pred: Tensor, target: Tensor, labels: list[int]) -> np.ndarray:
    """Dice of each image [N], averaged over ``labels`` (global), 2|P ∩ G| / (|P| + |G|); a label absent from both
    counts as 1 (nothing to find, nothing found)."""
    scores = []
    for label in labels:
        p, g = pred == label, target == label
        inter = (p & g).sum((1, 2)).double()
        total = (p.sum((1, 2)) + g.sum((1, 2))).double()
        scores.append(torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total)))
    return torch.stack(scores).mean(0).numpy()
