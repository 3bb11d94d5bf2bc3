"""Disagreement-aware random masking (DARM), vectorized torch with an explicit generator."""

from __future__ import annotations

import math

import torch


def uncertain_region(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixels where two binary maps disagree (tight vs loose gaze, or teacher vs student).

    Shape:
        a, b (B, 1, H, W) bool. Returns (B, 1, H, W) bool.
    """
    return a.bool() ^ b.bool()


def _first_cover(top: torch.Tensor, left: torch.Tensor, side: torch.Tensor, max_side: int,
                 height: int, width: int) -> torch.Tensor:
    """Index of the first block covering each pixel (K where none does).

    Each block's pixels are scattered with a min-reduction, so the cost follows the total block area,
    not blocks times image pixels.

    Shape:
        top, left, side (B, K) long. Returns (B, H, W) int32.
    """
    b, k = top.shape
    device = top.device
    offsets = torch.arange(max_side, device=device)
    dy = offsets.view(1, 1, -1, 1)
    dx = offsets.view(1, 1, 1, -1)
    ys = top[:, :, None, None] + dy
    xs = left[:, :, None, None] + dx
    size = side[:, :, None, None]
    valid = (dy < size) & (dx < size) & (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    image = torch.arange(b, device=device).view(b, 1, 1, 1)
    dump = b * height * width  # pixels of blocks outside the image land in one extra slot
    flat = torch.where(valid, (image * height + ys) * width + xs, dump).flatten()
    index = torch.arange(k, device=device, dtype=torch.int32).view(1, k, 1, 1).expand_as(valid).flatten()
    first = torch.full((dump + 1,), k, dtype=torch.int32, device=device)
    first.scatter_reduce_(0, flat, index, reduce="amin")
    return first[:dump].view(b, height, width)


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
        first = _first_cover(top, left, side, smax, h, w)
        # covered uncertain pixels after the first j blocks, via a histogram of first-cover indices
        slot = torch.where(region, first, k).long().flatten(1)
        hist = torch.zeros(b, k + 1, dtype=torch.long, device=device).scatter_add_(1, slot, torch.ones_like(slot))
        covered = hist[:, :k].cumsum(1)
        used = torch.searchsorted(covered, need[:, None]).squeeze(1) + 1
        if bool((used <= k).all()):
            break
        k *= 2
    used = torch.where(need > 0, used, torch.zeros_like(used)).clamp_max(k)
    return ((first < used[:, None, None]) & region)[:, None]


def apply_darm(image: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the hidden blocks in the image and in the target.

    Shape:
        image (B, C, H, W); target (B, 1, H, W) bool; hidden (B, 1, H, W) bool.
    """
    return image.masked_fill(hidden, 0), target.bool() & ~hidden
