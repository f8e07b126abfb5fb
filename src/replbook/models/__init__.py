"""The tiny models the miniatures train from scratch."""

from replbook.models.tiny_gpt import TinyGPT, TinyGPTConfig

__all__ = ["TinyGPT", "TinyGPTConfig"]
