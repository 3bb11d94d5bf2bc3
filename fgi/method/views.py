"""Test-time flips: a model's probabilities averaged over flipped views of its input (``model.tta``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

# the flip dims of a (B, C, H, W) batch for each view that ``model.tta`` averages; () is the image itself
TTA_VIEWS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "hflip": ((), (3,)),
    "flips": ((), (3,), (2,), (2, 3)),
}


def flip_averaged(probability: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tta: str) -> torch.Tensor:
    """Mean of ``probability`` over the views of ``tta``, each answer flipped back to the image's orientation.

    Shape:
        image (B, C, H, W); ``probability`` maps it to (B, 1, H, W).
    """
    if tta not in TTA_VIEWS:
        raise ValueError(f"model.tta must be one of {sorted(TTA_VIEWS)}, got {tta!r}")
    total = None
    for dims in TTA_VIEWS[tta]:
        answer = probability(image.flip(dims)).flip(dims) if dims else probability(image)
        total = answer if total is None else total + answer
    return total / len(TTA_VIEWS[tta])
