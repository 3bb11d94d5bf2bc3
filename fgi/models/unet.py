"""A compact 2-D U-Net with a hook after each encoder level (where the teacher fuses text)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by GroupNorm (valid at batch size 1) and ReLU."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.GroupNorm(groups, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.GroupNorm(groups, cout),
            nn.ReLU(inplace=True),
        )


class ProjectionBlock(nn.Sequential):
    """1x1 convolution, GroupNorm, ReLU, 1x1 convolution, GroupNorm (the reference's distillation projection,
    with GroupNorm for BatchNorm as in the rest of the U-Net)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.GroupNorm(groups, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 1, bias=False),
            nn.GroupNorm(groups, cout),
        )


LevelHook = Callable[[int, torch.Tensor], torch.Tensor]


class UNet(nn.Module):
    """U-Net with ``len(widths)`` levels; level ``i`` runs at 1/2**i of the input resolution.

    Args:
        in_channels: image channels (3 for RGB, 1 for MRI).
        widths: channels per level, shallow to deep.
        norm_groups: GroupNorm groups.

    Shape:
        input (B, in_channels, H, W) with any H, W >= 2**(len(widths)-1); logits (B, 1, H, W).
    """

    def __init__(self, *, in_channels: int, widths: Sequence[int], norm_groups: int) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else widths[i - 1], w, norm_groups) for i, w in enumerate(widths)
        )
        self.decoder = nn.ModuleList(
            ConvBlock(widths[i + 1] + widths[i], widths[i], norm_groups) for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def encode(self, x: torch.Tensor, hook: LevelHook | None = None) -> list[torch.Tensor]:
        """Encoder features per level, each passed through ``hook(level, feature)`` when given."""
        feats = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            if hook is not None:
                x = hook(level, x)
            feats.append(x)
        return feats

    def decode_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The last decoder feature map (``widths[0]`` channels, input resolution), skips by concatenation."""
        x = feats[-1]
        for level in range(len(feats) - 2, -1, -1):
            skip = feats[level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[level](torch.cat([x, skip], dim=1))
        return x

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits from encoder features: the 1x1 head on ``decode_features``."""
        return self.head(self.decode_features(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the foreground class."""
        return self.decode(self.encode(x))
