"""The student: a narrower, image-only U-Net with adapters to the teacher's widths."""

from __future__ import annotations

import torch
from torch import nn

from fgi.config import Config
from fgi.models.unet import UNet


class Student(nn.Module):
    """Image-only U-Net; the deployable predictor (it needs no text at inference).

    Args:
        cfg: the run config; uses ``model``, ``data.in_channels`` and ``loss.align_scales``.

    Shape:
        image (B, C, H, W). Returns {"logits": (B, 1, H, W), "features": {level: (B, C_teacher_level, ...)}}
        where features are the adapter outputs at each aligned level.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        m = cfg.model
        self.unet = UNet(cfg.data.in_channels, m.student_widths, m.norm_groups)
        self.adapters = nn.ModuleDict({
            str(s): nn.Conv2d(m.student_widths[s], m.teacher_widths[s], 1) for s in cfg.loss.align_scales
        })

    def forward(self, image: torch.Tensor) -> dict:
        """Logits and adapted features."""
        feats = self.unet.encode(image)
        adapted = {int(k): adapter(feats[int(k)]) for k, adapter in self.adapters.items()}
        return {"logits": self.unet.decode(feats), "features": adapted}
