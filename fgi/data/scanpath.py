"""Simulated eye-tracking scanpaths for datasets without real gaze (ISIC, the synthetic set).

This is a simulation, documented as such: fixations are drawn mostly inside the lesion, some on its
border and the rest anywhere in the image. Counts and durations are log-normal, with defaults fitted
to the real GazeMedSeg Kvasir statistics (5 to 99 fixations per image, median about 25; durations
median about 300 ms). All parameters live in ``GazeConfig.sim_*``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fgi.config import GazeConfig


def _pick(coords: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` random (row, col) entries of ``coords`` (with replacement)."""
    if k == 0 or len(coords) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    return coords[rng.integers(0, len(coords), size=k)].astype(np.float64)


def simulate_fixations(mask: np.ndarray, rng: np.random.Generator, cfg: GazeConfig) -> np.ndarray:
    """Draw one simulated scanpath for a lesion mask.

    Args:
        mask: boolean lesion mask.
        rng: the caller's seeded NumPy generator.
        cfg: simulation parameters (``GazeConfig.sim_*``).

    Returns:
        float32 array of fixations with columns x, y (normalized 0..1, origin top-left) and duration
        in milliseconds, in viewing order.

    Shape:
        mask: (H, W); returns (N, 3) with ``sim_count_min <= N <= sim_count_max``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"simulate_fixations: mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    n = int(np.clip(round(rng.lognormal(np.log(cfg.sim_count_median), cfg.sim_count_spread)),
                    cfg.sim_count_min, cfg.sim_count_max))
    band = max(1, int(round(cfg.sim_border_width * max(h, w))))
    border = ndimage.binary_dilation(mask, iterations=band) & ~ndimage.binary_erosion(mask, iterations=band)
    inside_share = cfg.sim_inside if mask.any() else 0.0
    border_share = cfg.sim_border if mask.any() else 0.0
    kind = rng.choice(3, size=n, p=_shares(inside_share, border_share))
    pts = np.empty((n, 2), dtype=np.float64)
    everywhere = np.argwhere(np.ones_like(mask))
    for k, region in enumerate((np.argwhere(mask), np.argwhere(border), everywhere)):
        sel = kind == k
        pts[sel] = _pick(region if len(region) else everywhere, int(sel.sum()), rng)
    # jitter within the pixel so fixations are continuous
    pts += rng.uniform(0.0, 1.0, size=pts.shape)
    order = rng.permutation(n)
    y = np.clip(pts[order, 0] / h, 0.0, 1.0)
    x = np.clip(pts[order, 1] / w, 0.0, 1.0)
    duration = rng.lognormal(np.log(cfg.sim_duration_median), cfg.sim_duration_spread, size=n)
    return np.stack([x, y, duration], axis=1).astype(np.float32)


def _shares(inside: float, border: float) -> np.ndarray:
    stray = max(0.0, 1.0 - inside - border)
    p = np.array([inside, border, stray], dtype=np.float64)
    return p / p.sum()
