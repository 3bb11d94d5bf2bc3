"""The two-level gaze baseline (GazeMedSeg's ``MultiLevelModel`` with two levels): one image-only U-Net
per gaze level, predicting with the mean of their logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fgi.models.unet import UNet


class TwoLevel(nn.Module):
    """Two U-Nets of the same shape, one trained on the tight gaze level and one on the loose level.

    Args:
        in_channels: image channels.
        widths: channels per U-Net level, shallow to deep (both networks).
        norm_groups: GroupNorm groups.
        copy_init: start the second network from the first one's weights, as GazeMedSeg's ``deepcopy``
            does (the networks then differ only through their labels); False draws each independently.

    Shape:
        image (B, C, H, W). Returns {"logits": (B, 1, H, W) mean of the two, "levels": (2, B, 1, H, W)
        tight then loose, "features": {}} (no feature alignment in this baseline).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], norm_groups: int, copy_init: bool = True) -> None:
        super().__init__()
        self.nets = nn.ModuleList(UNet(in_channels, widths, norm_groups) for _ in range(2))
        if copy_init:
            self.nets[1].load_state_dict(self.nets[0].state_dict())

    def forward(self, image: torch.Tensor) -> dict:
        """Mean logits and each level's logits."""
        levels = torch.stack([net(image) for net in self.nets])
        return {"logits": levels.mean(0), "levels": levels, "features": {}}
