"""The student: a narrower, image-only U-Net with adapters to the teacher's widths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fgi.models.unet import ProjectionBlock, UNet

ADAPTERS = ("projection", "linear")


def _adapter(kind: str, cin: int, cout: int, groups: int) -> nn.Module:
    if kind == "linear":
        return nn.Conv2d(cin, cout, 1)
    # the reference (FGI UNet_student): its own projection, then 1x1 conv, norm and ReLU to the teacher width
    return nn.Sequential(
        ProjectionBlock(cin, cin, groups),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class Student(nn.Module):
    """Image-only U-Net; the deployable predictor (it needs no text at inference).

    Args:
        in_channels: image channels.
        widths: channels per U-Net level, shallow to deep.
        teacher_widths: the teacher's channels per level (the adapters' output widths).
        align_scales: levels with an adapter.
        norm_groups: GroupNorm groups.
        adapter: "projection" (the reference) or "linear" (one 1x1 convolution).

    Shape:
        image (B, C, H, W). Returns {"logits": (B, 1, H, W), "features": {level: (B, C_teacher_level, ...)}}
        where features are the adapter outputs at each aligned level.
    """

    def __init__(self, *, in_channels: int, widths: Sequence[int], teacher_widths: Sequence[int],
                 align_scales: Sequence[int], norm_groups: int, adapter: str = "projection") -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"Student: adapter {adapter!r} is unknown; valid adapters are {list(ADAPTERS)}")
        if len(teacher_widths) != len(widths):
            raise ValueError(f"Student: {len(widths)} levels but {len(teacher_widths)} teacher widths")
        bad = [s for s in align_scales if not 0 <= s < len(widths)]
        if bad:
            raise ValueError(f"Student: levels {bad} do not exist; the U-Net has levels 0..{len(widths) - 1}")
        self.unet = UNet(in_channels=in_channels, widths=widths, norm_groups=norm_groups)
        self.adapters = nn.ModuleDict({
            str(s): _adapter(adapter, widths[s], teacher_widths[s], norm_groups) for s in align_scales
        })

    def forward(self, image: torch.Tensor) -> dict:
        """Logits and adapted features."""
        feats = self.unet.encode(image)
        adapted = {int(k): adapter(feats[int(k)]) for k, adapter in self.adapters.items()}
        return {"logits": self.unet.decode(feats), "features": adapted}
