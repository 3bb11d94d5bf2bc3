"""Disagreement-aware random masking (DARM), vectorized torch with an explicit generator."""

from __future__ import annotations

import math

import torch

_CHUNK = 32  # blocks rasterized at once: bounds memory at B * 32 * H * W booleans


def uncertain_region(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixels where two binary maps disagree (tight vs loose gaze, or teacher vs student).

    Shape:
        a, b (B, 1, H, W) bool. Returns (B, 1, H, W) bool.
    """
    return a.bool() ^ b.bool()


def _first_cover(top: torch.Tensor, left: torch.Tensor, side: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Index of the first block covering each pixel (K where none does).

    Shape:
        top, left, side (B, K) long. Returns (B, H, W) long.
    """
    b, k = top.shape
    ys = torch.arange(height, device=top.device)
    xs = torch.arange(width, device=top.device)
    first = torch.full((b, height, width), k, dtype=torch.long, device=top.device)
    for start in range(0, k, _CHUNK):
        sl = slice(start, start + _CHUNK)
        in_y = (ys[None, None] >= top[:, sl, None]) & (ys[None, None] < (top + side)[:, sl, None])
        in_x = (xs[None, None] >= left[:, sl, None]) & (xs[None, None] < (left + side)[:, sl, None])
        cover = in_y[:, :, :, None] & in_x[:, :, None, :]
        hit = cover.any(dim=1)
        idx = start + torch.argmax(cover.to(torch.uint8), dim=1)
        first = torch.where(hit & (first == k), idx, first)
    return first


def darm_mask(uncertain: torch.Tensor, ratio: float, block_min: float, block_max: float,
              generator: torch.Generator, max_rounds: int = 6) -> torch.Tensor:
    """Hide ``ratio`` of each image's uncertain region with random square blocks.

    Block centres are drawn inside the uncertain region and block sides uniformly from
    [block_min, block_max] times the shorter image side. Blocks are added in order until the covered
    part of the uncertain region reaches ``ceil(ratio * |region|)`` pixels, so the fraction is exact up
    to one block. Only uncertain pixels are ever masked.

    Args:
        uncertain: region where the masking may act.
        ratio: fraction of the region to hide.
        block_min: smallest block side as a fraction of the shorter image side.
        block_max: largest block side as a fraction of the shorter image side.
        generator: seeded generator on the region's device.
        max_rounds: times the number of candidate blocks doubles when coverage is not reached.

    Shape:
        uncertain (B, 1, H, W) bool. Returns (B, 1, H, W) bool.
    """
    region = uncertain.bool()[:, 0]
    b, h, w = region.shape
    device = region.device
    counts = region.flatten(1).sum(1)
    need = torch.ceil(counts.float() * ratio).long()
    if ratio <= 0 or int(need.max()) == 0:
        return torch.zeros_like(uncertain, dtype=torch.bool)
    short = min(h, w)
    smin = max(1, round(block_min * short))
    smax = max(smin, round(block_max * short))
    mean_area = ((smin + smax) / 2) ** 2
    k = max(8, math.ceil(2 * int(need.max()) / mean_area))
    weights = region.flatten(1).float()
    weights[counts == 0] = 1.0
    for _ in range(max_rounds):
        centre = torch.multinomial(weights, k, replacement=True, generator=generator)
        side = torch.randint(smin, smax + 1, (b, k), generator=generator, device=device)
        top = centre // w - side // 2
        left = centre % w - side // 2
        first = _first_cover(top, left, side, h, w)
        ranks = torch.where(region, first, torch.full_like(first, k + 1)).flatten(1).sort(dim=1).values
        kth = ranks.gather(1, (need - 1).clamp_min(0)[:, None]).squeeze(1)
        if bool((kth < k).all()):
            break
        k *= 2
    used = torch.where(need > 0, kth + 1, torch.zeros_like(kth)).clamp_max(k)
    return ((first < used[:, None, None]) & region)[:, None]


def apply_darm(image: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the hidden blocks in the image and in the target.

    Shape:
        image (B, C, H, W); target (B, 1, H, W) bool; hidden (B, 1, H, W) bool.
    """
    return image.masked_fill(hidden, 0), target.bool() & ~hidden
