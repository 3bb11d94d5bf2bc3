"""The teacher: a U-Net whose features attend to the lesion description at selected levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fgi.models.fusion import CrossAttentionFusion
from fgi.models.unet import ProjectionBlock, UNet

TEXT_MODES = ("tokens", "pooled", "none")


class Teacher(nn.Module):
    """Text-conditioned U-Net.

    With ``fusion_skip`` (the reference, FGI ``UNet_teacher``) the encoder runs without text and each
    fused level's skip feature x becomes ``x + P(F(x))``, where F is the cross-attention fusion and P a
    ``ProjectionBlock``; the aligned feature of that level is ``P(F(x))``. Without it (ablation) the
    fusion is applied inside the encoder, so deeper levels see fused features, and the aligned feature
    is ``F(x)``.

    Args:
        in_channels: image channels.
        widths: channels per U-Net level, shallow to deep.
        text_dim: width of the text embeddings.
        fusion_scales: levels with text cross-attention.
        align_scales: levels whose features the student aligns to.
        heads: attention heads; must divide the width of every fused level.
        dropout: attention dropout.
        text_mode: "tokens", "pooled" or "none" (a learned null token stands in for the text).
        norm_groups: GroupNorm groups.
        fusion_skip: reference fusion on skip features through a projection.

    Shape:
        image (B, C, H, W); text (B, D) pooled or (B, L, D) tokens with text_mask (B, L) bool;
        text is ignored (and may be None) when ``text_mode`` is "none".
        Returns {"logits": (B, 1, H, W), "features": {level: (B, C_level, H/2**level, W/2**level)}}
        with the aligned features of each level in ``align_scales``.
    """

    def __init__(self, *, in_channels: int, widths: Sequence[int], text_dim: int, fusion_scales: Sequence[int],
                 align_scales: Sequence[int], heads: int, dropout: float, text_mode: str, norm_groups: int,
                 fusion_skip: bool) -> None:
        super().__init__()
        if text_mode not in TEXT_MODES:
            raise ValueError(f"Teacher: text_mode {text_mode!r} is unknown; valid modes are {list(TEXT_MODES)}")
        depth = len(widths)
        bad = [s for s in (*fusion_scales, *align_scales) if not 0 <= s < depth]
        if bad:
            raise ValueError(f"Teacher: levels {bad} do not exist; the U-Net has levels 0..{depth - 1}")
        self.text_mode = text_mode
        self.fusion_skip = fusion_skip
        self.align_scales = tuple(align_scales)
        self.unet = UNet(in_channels=in_channels, widths=widths, norm_groups=norm_groups)
        self.fusion = nn.ModuleDict({
            str(s): CrossAttentionFusion(channels=widths[s], text_dim=text_dim, heads=heads, dropout=dropout) for s in fusion_scales
        })
        self.projection = nn.ModuleDict({
            str(s): ProjectionBlock(widths[s], widths[s], norm_groups) for s in fusion_scales
        }) if fusion_skip else None
        # the no-text ablation keeps the same architecture and learns what to attend to
        self.null_text = nn.Parameter(torch.zeros(1, 1, text_dim)) if text_mode == "none" else None
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

        if self.projection is None:
            def fuse(level: int, x: torch.Tensor) -> torch.Tensor:
                key = str(level)
                return self.fusion[key](x, text, text_mask) if key in self.fusion else x

            feats = self.unet.encode(image, fuse)
            aligned = {s: feats[s] for s in self.align_scales}
        else:
            feats = self.unet.encode(image)
            aligned = {}
            for key, fusion in self.fusion.items():
                level = int(key)
                projected = self.projection[key](fusion(feats[level], text, text_mask))
                aligned[level] = projected
                feats[level] = feats[level] + projected
            aligned = {s: aligned.get(s, feats[s]) for s in self.align_scales}
        return {"logits": self.unet.decode(feats), "features": aligned}
