"""Image encoders from ``transformers`` that return one feature vector per image: a tiny ViT for the miniatures (LoBAM,
OSR-ViT), CLIP's vision tower (LoBAM's paper profile) and DINOv2 (OSR-ViT's). They expose the names of their
attention query and value projections, which is where LoBAM's LoRA adapters go."""

from __future__ import annotations

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """A transformers vision backbone → [B, D] features: the final-layer-normed class token (ViT), CLIP's pooled
    output (the class token through ``post_layernorm``) or DINOv2's (its layer-normed class token).
    ``lora_targets`` names the layers LoRA adapts: the attention's query and value projections, optionally with the
    MLP."""

    def __init__(self, backbone: nn.Module, mean: list[float] | None = None, std: list[float] | None = None):
        """``backbone``: a ``ViTModel`` or ``CLIPVisionModel``; ``mean`` and ``std``: its per-channel input
        normalisation (none for the tiny ViT)."""
        super().__init__()
        self.kind = type(backbone).__name__
        if self.kind not in ("ViTModel", "CLIPVisionModel", "Dinov2Model"):
            raise TypeError(f"ImageEncoder takes a ViTModel, a CLIPVisionModel or a Dinov2Model; got {self.kind}.")
        self.backbone = backbone
        # images stay in [0, 1] everywhere (the trigger is a patch of pixels); resizing and the backbone's
        # normalisation happen here
        self.image_size = backbone.config.image_size
        self.register_buffer("mean", torch.tensor(mean or [0.0]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or [1.0]).view(1, -1, 1, 1), persistent=False)
        # LoRA's usual places in both: the attention's query and value projections, and the MLP's two layers (the
        # module names of transformers ≥ 5, which pyproject.toml requires; 4.x named ViT's "query" and "value")
        self.lora_targets = {"attention": ["q_proj", "v_proj"], "attention+mlp": ["q_proj", "v_proj", "fc1", "fc2"]}
        self.feature_dim = backbone.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [0, 1] → features [B, D]."""
        # DINOv2 interpolates its position embeddings to any multiple of its patch: its crops are used as given
        if self.kind != "Dinov2Model" and (x.shape[-1] != self.image_size or x.shape[-2] != self.image_size):
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                          align_corners=False)
        out = self.backbone(pixel_values=(x - self.mean) / self.std)
        # CLIP and DINOv2 pool the layer-normed class token; the tiny ViT has no pooler
        return out.last_hidden_state[:, 0] if self.kind == "ViTModel" else out.pooler_output


def tiny_vit(hidden: int, layers: int = 4, heads: int = 4, image_size: int = 28, patch: int = 7,
             channels: int = 1) -> ImageEncoder:
    """A small ViT (``transformers.ViTModel``, no pooler): (image_size / patch)² patch tokens and a class token,
    ``layers`` blocks of width ``hidden`` with an MLP of 2 × ``hidden``."""
    from transformers import ViTConfig, ViTModel

    if hidden % heads:
        raise ValueError(f"parameter 'hidden' ({hidden}) must be a multiple of the {heads} attention heads.")
    config = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       intermediate_size=2 * hidden, image_size=image_size, patch_size=patch, num_channels=channels,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return ImageEncoder(ViTModel(config, add_pooling_layer=False))
