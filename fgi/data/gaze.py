"""Fixations to a soft gaze heatmap.

Duration-weighted fixations are placed on a square canvas, blurred with a Gaussian whose sigma is a
fraction of the canvas side, min-max normalized and resized to the image. A 192 canvas with the sigma
scaled from 70/768 gives the same Dice as the 768 canvas of the reference measurement, about 30x faster.
"""

from __future__ import annotations

import cv2
import numpy as np

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
