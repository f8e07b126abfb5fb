"""The tiny models the miniatures train from scratch."""

from replbook.models.small_cnn import SmallCNN
from replbook.models.tiny_gpt import TinyGPT, TinyGPTConfig

__all__ = ["SmallCNN", "TinyGPT", "TinyGPTConfig"]
