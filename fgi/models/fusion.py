"""Cross-attention from image tokens (queries) to text tokens (keys and values)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sincos_position_2d(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """2-D sine-cosine positional encoding computed for any size (no table tied to one resolution).

    Rows and columns each take half of the channels; positions are normalized to [0, 1] so a feature
    map at another input size gets comparable codes.

    Shape:
        returns (height * width, dim).
    """
    quarter = math.ceil(dim / 4)
    freqs = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(1e4) / max(quarter, 1)))
    ys = torch.linspace(0, 1, height, device=device)[:, None] * freqs[None] * height
    xs = torch.linspace(0, 1, width, device=device)[:, None] * freqs[None] * width
    ys = torch.cat([ys.sin(), ys.cos()], dim=1)[:, None, :].expand(height, width, -1)
    xs = torch.cat([xs.sin(), xs.cos()], dim=1)[None, :, :].expand(height, width, -1)
    return torch.cat([ys, xs], dim=2).reshape(height * width, -1)[:, :dim].to(dtype)


class CrossAttentionFusion(nn.Module):
    """Image features attend to text tokens; residual, pre-normalized.

    Args:
        channels: image feature width (queries).
        text_dim: text embedding width (keys and values).
        heads: attention heads; must divide ``channels``.
        dropout: attention dropout.

    Shape:
        x (B, C, H, W); text (B, L, D); text_mask (B, L) bool, True for valid tokens, or None.
        Returns (B, C, H, W).
    """

    def __init__(self, *, channels: int, text_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(channels)
        self.norm_text = nn.LayerNorm(text_dim)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=dropout, kdim=text_dim, vdim=text_dim,
                                          batch_first=True)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features, same shape as ``x``."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        query = self.norm_query(tokens) + sincos_position_2d(h, w, c, x.device, tokens.dtype)
        keys = self.norm_text(text).to(query.dtype)
        pad = None if text_mask is None else ~text_mask.bool()
        attended, _ = self.attn(query, keys, keys, key_padding_mask=pad, need_weights=False)
        tokens = tokens + self.out(attended)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
