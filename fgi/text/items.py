"""What a describer is given: one image and its lesion region, checked once for every describer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DescriberError(ValueError):
    """A describer cannot be built or run. The message names the setting and how to fix it."""


@dataclass(frozen=True)
class TextItem:
    """One image to describe.

    Args:
        id: image id (cache key).
        image: the image.
        region: the gaze pseudo-mask (or a predicted mask at inference); never the ground truth.

    Shape:
        image: (H, W, C) uint8 with C = 3 or 1; region: (H, W) bool.
    """

    id: str
    image: np.ndarray
    region: np.ndarray


def check_item(image: np.ndarray, region: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The image as (H, W, C) uint8 and the region as (H, W) bool, or a ValueError naming ``where``."""
    image = np.asarray(image)
    region = np.asarray(region)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"{where}: image must be uint8 HxWx3 or HxWx1, got {image.dtype} {image.shape}")
    if region.shape != image.shape[:2]:
        raise ValueError(f"{where}: region shape {region.shape} differs from image shape {image.shape[:2]}")
    return image, region.astype(bool)


__all__ = ["DescriberError", "TextItem", "check_item"]
