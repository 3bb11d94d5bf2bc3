"""The built-in synthetic dataset: procedural lesion images, masks and simulated gaze.

Each image has one or two lesion-like blobs (irregular outlines from random radial harmonics) with
their own colour and texture, on a textured background with illumination falloff. Everything is
deterministic given the seed, and fast enough for CPU tests at 64-128 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fgi.config import GazeConfig
from fgi.data.gaze import simulate_fixations
from fgi.seed import numpy_rng

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}  # split -> seed stream, so splits never overlap


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic sample.

    Shape:
        image: (H, W, 3) uint8; mask: (H, W) bool; fixations: (N, 3) float32 as x, y (0..1), duration ms.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray
    fixations: np.ndarray


def _texture(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Smoothed noise in [-1, 1] with correlation length ``scale`` (fraction of the side)."""
    noise = rng.standard_normal((size, size))
    smooth = ndimage.gaussian_filter(noise, sigma=max(scale * size, 0.5), mode="wrap")
    return smooth / (np.abs(smooth).max() + 1e-8)


def _blob(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of one lesion with an irregular outline."""
    radius = rng.uniform(0.10, 0.24) * size
    cy, cx = rng.uniform(radius + 2, size - radius - 2, size=2)
    aspect = rng.uniform(0.7, 1.3)
    angle = np.arctan2(yy - cy, (xx - cx) * aspect)
    dist = np.hypot(yy - cy, (xx - cx) * aspect)
    outline = np.ones_like(angle)
    for k in range(2, 6):
        outline += rng.uniform(0.0, 0.12 / (k - 1)) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    return dist <= radius * outline


def make_sample(index: int, size: int, seed: int, split: str = "train", gaze: GazeConfig | None = None) -> SyntheticSample:
    """Generate one sample deterministically from (seed, split, index).

    Args:
        index: sample index within the split.
        size: side length in pixels.
        seed: dataset seed (``DataConfig.synthetic_seed``).
        split: "train", "val" or "test".
        gaze: simulation parameters of the scanpath; defaults to ``GazeConfig()``.
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split {split!r} is unknown; valid splits are {list(SPLITS)}")
    rng = numpy_rng(np.random.SeedSequence([seed, SPLITS[split], index]).generate_state(1)[0])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    mask = _blob(rng, size, yy, xx)
    if rng.uniform() < 0.3:
        mask |= _blob(rng, size, yy, xx)

    base = rng.uniform([0.55, 0.30, 0.25], [0.80, 0.45, 0.40])
    lesion = np.clip(base + rng.uniform([0.05, -0.05, -0.10], [0.20, 0.15, 0.05]), 0, 1)
    bg_tex = _texture(rng, size, 0.02)[..., None] * 0.08 + _texture(rng, size, 0.15)[..., None] * 0.10
    le_tex = _texture(rng, size, 0.01)[..., None] * 0.12
    soft = ndimage.gaussian_filter(mask.astype(np.float64), sigma=1.0)[..., None]
    img = (base + bg_tex) * (1 - soft) + (lesion + le_tex) * soft
    cy, cx = rng.uniform(0.2, 0.8, size=2) * size
    light = 1.0 - 0.35 * (np.hypot(yy - cy, xx - cx) / size)[..., None]
    img = np.clip(img * light + rng.normal(0, 0.02, img.shape), 0, 1)
    image = (img * 255).round().astype(np.uint8)
    fixations = simulate_fixations(mask, rng, gaze or GazeConfig())
    return SyntheticSample(id=f"syn-{split}-{index:05d}", image=image, mask=mask, fixations=fixations)


def make_split(split: str, n: int, size: int, seed: int, gaze: GazeConfig | None = None) -> list[SyntheticSample]:
    """``n`` samples of one split (see ``make_sample``)."""
    return [make_sample(i, size, seed, split, gaze) for i in range(n)]
