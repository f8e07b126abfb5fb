"""The models the chapters train: tiny ones for the miniatures, the papers' own architectures for ``paper``."""

from replbook.models.resnet import CifarResNet18, PreActResNet18, WideResNet
from replbook.models.seg_unet import SegUNet
from replbook.models.small_cnn import SmallCNN
from replbook.models.tiny_gpt import TinyGPT, TinyGPTConfig

__all__ = ["CifarResNet18", "PreActResNet18", "SegUNet", "SmallCNN", "TinyGPT", "TinyGPTConfig", "WideResNet"]
