"""Gaze: fixations to a soft heatmap, and simulated scanpaths for datasets without real gaze.

Heatmap: duration-weighted fixations are placed on a square canvas, blurred with a Gaussian whose sigma
is a fraction of the canvas side, min-max normalized and resized to the image. A 192 canvas with the
sigma scaled from 70/768 gives the same Dice as the 768 canvas of the reference measurement, about 30x
faster.

Simulation (ISIC, the synthetic set), documented as such: fixations are drawn mostly inside the lesion,
some on its border and the rest anywhere in the image. Counts and durations are log-normal, with
defaults fitted to the real GazeMedSeg Kvasir statistics (5 to 99 fixations per image, median about 25;
durations median about 300 ms). All parameters live in ``GazeConfig.sim_*``.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from fgi.config import GazeConfig


def fixation_canvas(fixations: np.ndarray, cfg: GazeConfig) -> np.ndarray:
    """Accumulate fixations on a square canvas (before blurring).

    Args:
        fixations: (N, 3) float array of x, y (normalized 0..1, origin top-left) and duration in ms.
        cfg: gaze settings (canvas side, duration weighting).

    Returns:
        (canvas, canvas) float32 array of summed fixation weights.
    """
    side = cfg.canvas
    canvas = np.zeros((side, side), dtype=np.float32)
    if len(fixations) == 0:
        return canvas
    fx = np.asarray(fixations, dtype=np.float64)
    cols = np.clip((fx[:, 0] * side).astype(np.int64), 0, side - 1)
    rows = np.clip((fx[:, 1] * side).astype(np.int64), 0, side - 1)
    weights = fx[:, 2] if cfg.duration_weighted else np.ones(len(fx))
    np.add.at(canvas, (rows, cols), weights.astype(np.float32))
    return canvas


def gaze_heatmap(fixations: np.ndarray, height: int, width: int, cfg: GazeConfig) -> np.ndarray:
    """Soft gaze heatmap of one image.

    Args:
        fixations: (N, 3) float array of x, y (normalized 0..1) and duration in ms; N >= 1.
        height: output height in pixels.
        width: output width in pixels.
        cfg: gaze settings.

    Returns:
        (height, width) float32 array in [0, 1]; all zeros when the blurred canvas is flat.
    """
    canvas = fixation_canvas(fixations, cfg)
    sigma = cfg.sigma_fraction * cfg.canvas
    blurred = cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    lo, hi = float(blurred.min()), float(blurred.max())
    if hi - lo <= 0:
        return np.zeros((height, width), dtype=np.float32)
    norm = (blurred - lo) / (hi - lo)
    out = cv2.resize(norm, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


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


__all__ = ["fixation_canvas", "gaze_heatmap", "simulate_fixations"]
