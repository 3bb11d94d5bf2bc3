"""Disagreement-aware random masking (DARM), vectorized torch with an explicit generator.

Two forms share the region (pixels where two binary maps disagree) and the block sizes:

- "block" (the reference, FGI ``mask_uncertain_regions_with_numpy``): block centres are distinct
  region pixels in random order; a block of drawn size s covers the (2 * (s // 2) + 1)-pixel square
  around its centre, clipped to the image; blocks are added until their summed clipped area reaches
  ``floor(ratio * |region|)``, and every pixel of a chosen block is hidden, inside the region or not.
- "ring" (ablation): blocks are added until the hidden part of the region reaches
  ``ceil(ratio * |region|)``, and only region pixels are hidden.

Placement (an option; the reference is "ring"): "ring" centres the blocks on region pixels, "uniform" on
pixels drawn over the whole image, with the same budget ``floor(ratio * |region|)`` and the same sizes, so
where the blocks fall says nothing about the lesion while the student still loses as much of its input.

Decoys (an option; the reference has none): whole blocks of the same sizes centred outside the region,
spending ``decoy_ratio`` of the outside's pixel count. Reference blocks sit on the tight/loose boundary, so
where they fall outlines the lesion in training images only, and a student can learn to read that outline
instead of the image (docs/RESULTS.md, "DARM outlines the lesion"). With ``decoy_ratio == ratio`` block
centres are equally dense everywhere, so their positions carry no outline.

The reference spends one pixel budget over the whole batch; here each image spends its own, so the
result does not depend on the batch size or the data-parallel split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

HIDE_FORMS = ("block", "ring")
PLACEMENTS = ("ring", "uniform")


def uncertain_region(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixels where two binary maps disagree (tight vs loose gaze, or teacher vs student).

    Shape:
        a, b (B, 1, H, W) bool. Returns (B, 1, H, W) bool.
    """
    return a.bool() ^ b.bool()


def block_sizes(block_min: float, block_max: float, height: int, width: int) -> tuple[int, int]:
    """Smallest and largest block size in pixels from fractions of the shorter image side."""
    short = min(height, width)
    smin = max(1, round(block_min * short))
    return smin, max(smin, round(block_max * short))


@dataclass(frozen=True)
class Blocks:
    """Chosen DARM blocks, clipped to the image.

    Shape:
        top, left, height, width, keep: (B, K); keep marks the blocks that are used.
    """

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    keep: torch.Tensor


def darm_blocks(uncertain: torch.Tensor, ratio: float, block_min: float, block_max: float,
                generator: torch.Generator, centres: torch.Tensor | None = None) -> Blocks:
    """The reference's blocks: random distinct centres until the summed area reaches the budget.

    Args:
        uncertain: region whose pixel count sets the budget; blocks are centred on it unless ``centres``.
        ratio: share of the region's pixel count spent as summed block area.
        block_min: smallest block size as a fraction of the shorter image side.
        block_max: largest block size as a fraction of the shorter image side.
        generator: seeded generator on the region's device.
        centres: pixels the centres are drawn from (default: the region itself).

    Shape:
        uncertain, centres (B, 1, H, W) bool.
    """
    budget = uncertain.bool()[:, 0].flatten(1)
    region = budget if centres is None else centres.bool()[:, 0].flatten(1)
    b = region.shape[0]
    h, w = uncertain.shape[-2:]
    device = region.device
    smin, smax = block_sizes(block_min, block_max, h, w)
    need = torch.floor(budget.sum(1).double() * ratio).long()
    if ratio <= 0 or int(need.max()) == 0:
        none = torch.zeros(b, 0, dtype=torch.long, device=device)
        return Blocks(none, none, none, none, none.bool())
    # random keys, region pixels first: the sorted prefix is a uniform random order of distinct centres,
    # and a longer prefix extends a shorter one, so growing k keeps the blocks already drawn
    keys = torch.rand(b, h * w, generator=generator, device=device).masked_fill_(~region, 2.0)
    mean_side = 2 * ((smin + smax) // 4) + 1
    k = min(h * w, max(8, math.ceil(2 * int(need.max()) / mean_side**2)))
    sizes = torch.zeros(b, 0, dtype=torch.long, device=device)
    while True:
        key, centre = keys.topk(k, dim=1, largest=False, sorted=True)
        sizes = torch.cat([sizes, torch.randint(smin, smax + 1, (b, k - sizes.shape[1]), generator=generator,
                                                device=device)], dim=1)
        valid = key < 2.0
        half = sizes // 2
        cy, cx = centre // w, centre % w
        top, bottom = (cy - half).clamp_min(0), (cy + half + 1).clamp_max(h)
        left, right = (cx - half).clamp_min(0), (cx + half + 1).clamp_max(w)
        area = (bottom - top) * (right - left) * valid
        covered = area.cumsum(1)
        settled = (covered[:, -1] >= need) | ~valid[:, -1]
        if k == h * w or bool(settled.all()):
            break
        k = min(h * w, 2 * k)
    used = (torch.searchsorted(covered, need[:, None]).squeeze(1) + 1).clamp_max(k)
    used = torch.where(need > 0, used, torch.zeros_like(used))
    keep = (torch.arange(k, device=device)[None] < used[:, None]) & valid
    last = int(used.max())  # blocks past every image's budget are never used
    return Blocks(top[:, :last], left[:, :last], (bottom - top)[:, :last], (right - left)[:, :last], keep[:, :last])


def paint_blocks(blocks: Blocks, height: int, width: int) -> torch.Tensor:
    """The union of the kept blocks as a mask.

    Each block adds +1/-1 at its four corners of a difference image whose 2-D prefix sum counts the
    blocks covering each pixel, so the cost follows the image size, not the blocks' area.

    Shape:
        returns (B, 1, height, width) bool.
    """
    b = blocks.keep.shape[0]
    device = blocks.keep.device
    bottom, right = blocks.top + blocks.height, blocks.left + blocks.width
    image = torch.arange(b, device=device)[:, None].expand_as(blocks.top)
    weight = blocks.keep.long()
    diff = torch.zeros(b * (height + 1) * (width + 1), dtype=torch.long, device=device)
    corners = ((blocks.top, blocks.left, 1), (blocks.top, right, -1), (bottom, blocks.left, -1), (bottom, right, 1))
    for ys, xs, sign in corners:
        index = (image * (height + 1) + ys) * (width + 1) + xs
        diff.index_put_((index.flatten(),), (sign * weight).flatten(), accumulate=True)
    count = diff.view(b, height + 1, width + 1).cumsum(2).cumsum(1)
    return (count[:, :height, :width] > 0)[:, None]


def darm_mask(uncertain: torch.Tensor, ratio: float, block_min: float, block_max: float,
              generator: torch.Generator, hide: str = "block", decoy_ratio: float = 0.0,
              max_rounds: int = 6, placement: str = "ring") -> torch.Tensor:
    """Pixels DARM hides in each image (see the module docstring for the two forms and the decoys).

    Args:
        uncertain: region where the masking acts.
        ratio: share of the region to hide ("block": as summed block area).
        block_min: smallest block size as a fraction of the shorter image side.
        block_max: largest block size as a fraction of the shorter image side.
        generator: seeded generator on the region's device.
        hide: "block" (reference) or "ring".
        decoy_ratio: share of the pixels outside the region spent on decoy blocks (0: none, the reference).
        max_rounds: "ring" only: times the number of candidate blocks doubles when coverage is short.
        placement: "ring" (reference: centres on the region) or "uniform" (centres anywhere; "block" only).

    Shape:
        uncertain (B, 1, H, W) bool. Returns (B, 1, H, W) bool.
    """
    h, w = uncertain.shape[-2:]
    if placement not in PLACEMENTS:
        raise ValueError(f"masking.placement {placement!r} is unknown; valid placements are {list(PLACEMENTS)}")
    if placement == "uniform" and hide != "block":
        raise ValueError("masking.placement uniform needs masking.hide block")
    if hide == "block":
        centres = torch.ones_like(uncertain, dtype=torch.bool) if placement == "uniform" else None
        hidden = paint_blocks(darm_blocks(uncertain, ratio, block_min, block_max, generator, centres), h, w)
    elif hide == "ring":
        hidden = _ring_mask(uncertain, ratio, block_min, block_max, generator, max_rounds)
    else:
        raise ValueError(f"masking.hide {hide!r} is unknown; valid forms are {list(HIDE_FORMS)}")
    if decoy_ratio <= 0:
        return hidden
    decoys = darm_blocks(~uncertain.bool(), decoy_ratio, block_min, block_max, generator)
    return hidden | paint_blocks(decoys, h, w)


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


def _ring_mask(uncertain: torch.Tensor, ratio: float, block_min: float, block_max: float,
               generator: torch.Generator, max_rounds: int) -> torch.Tensor:
    """Hide ``ratio`` of each image's uncertain region with random square blocks, region pixels only.

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
    smin, smax = block_sizes(block_min, block_max, h, w)
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
