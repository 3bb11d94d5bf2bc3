"""Fixtures of the text tests: synthetic shapes, gaze pseudo-mask items and one shared MiniLM encoder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fgi.config import DataConfig, GazeConfig, TextConfig
from fgi.data.gaze import gaze_heatmap
from fgi.text.encode import TextEncoder
from fgi.text.items import TextItem
from tests.synthetic import make_split


def disc(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean disc centred at (cy, cx) pixels."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(yy - cy, xx - cx) <= radius


def star(size: int, points: int = 5) -> np.ndarray:
    """Boolean star centred in the image with deep concavities between its points."""
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    r = np.hypot(yy, xx)
    return r <= size * (0.14 + 0.16 * np.cos(points * np.arctan2(yy, xx) / 2) ** 2)


def gaze_region(fixations: np.ndarray, height: int, width: int) -> np.ndarray:
    """The gaze pseudo-mask: the real gaze heatmap thresholded at the default tight level."""
    return gaze_heatmap(fixations, height, width, GazeConfig()) >= DataConfig().tight_level


@pytest.fixture(scope="session")
def shapes() -> dict[str, Callable]:
    """Shape builders (disc, star) for tests with known answers."""
    return {"disc": disc, "star": star}


@pytest.fixture(scope="session")
def gaze_items() -> Callable[..., list[TextItem]]:
    """Synthetic images with their gaze pseudo-masks (never the ground truth) as TextItems."""

    def make(n: int, size: int = 64, split: str = "train", seed: int = 0) -> list[TextItem]:
        return [TextItem(s.id, s.image, gaze_region(s.fixations, size, size)) for s in make_split(split, n, size, seed)]

    return make


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    return TextEncoder(TextConfig())
