"""The teacher: a U-Net whose encoder attends to the lesion description at selected levels."""

from __future__ import annotations

import torch
from torch import nn

from fgi.config import Config
from fgi.models.fusion import CrossAttentionFusion
from fgi.models.unet import UNet


class Teacher(nn.Module):
    """Text-conditioned U-Net.

    Args:
        cfg: the run config; uses ``model``, ``data.in_channels``, ``text`` and ``loss.align_scales``.

    Shape:
        image (B, C, H, W); text (B, D) pooled or (B, L, D) tokens with text_mask (B, L) bool;
        text is ignored (and may be None) when ``text.mode`` is "none", where a learned null token stands in.
        Returns {"logits": (B, 1, H, W), "features": {level: (B, C_level, H/2**level, W/2**level)}}
        with the fused features of each aligned level.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        m = cfg.model
        self.text_mode = cfg.text.mode
        self.align_scales = tuple(cfg.loss.align_scales)
        self.unet = UNet(cfg.data.in_channels, m.teacher_widths, m.norm_groups)
        self.fusion = nn.ModuleDict({
            str(s): CrossAttentionFusion(m.teacher_widths[s], cfg.text.dim, m.attn_heads, m.dropout)
            for s in m.fusion_scales
        })
        # the no-text ablation keeps the same architecture and learns what to attend to
        self.null_text = nn.Parameter(torch.zeros(1, 1, cfg.text.dim)) if cfg.text.mode == "none" else None
        if self.null_text is not None:
            nn.init.normal_(self.null_text, std=0.02)

    def forward(self, image: torch.Tensor, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> dict:
        """Logits and aligned features."""
        if self.null_text is not None:
            text, text_mask = self.null_text.expand(image.shape[0], -1, -1), None
        elif text is None:
            raise ValueError("Teacher: text embeddings are required unless text.mode is 'none'")
        elif text.dim() == 2:
            text, text_mask = text[:, None, :], None
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"Teacher: batch of text ({text.shape[0]}) differs from batch of images ({image.shape[0]})")

        def fuse(level: int, x: torch.Tensor) -> torch.Tensor:
            key = str(level)
            return self.fusion[key](x, text, text_mask) if key in self.fusion else x

        feats = self.unet.encode(image, fuse)
        return {"logits": self.unet.decode(feats), "features": {s: feats[s] for s in self.align_scales}}
