from __future__ import annotations

import numpy as np

from fgi.config import CRFConfig, GazeConfig
from fgi.data.crf import crf_refine
from fgi.data.gaze import fixation_canvas, gaze_heatmap
from tests.data.conftest import blob_image


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_heatmap_normalized_and_peaks_at_long_fixation():
    fx = np.array([[0.25, 0.5, 100.0], [0.75, 0.5, 900.0]], np.float32)
    h = gaze_heatmap(fx, 60, 80, GazeConfig())
    assert h.shape == (60, 80) and h.dtype == np.float32
    assert h.min() == 0.0 and abs(h.max() - 1.0) < 0.01
    r, c = np.unravel_index(np.argmax(h), h.shape)
    assert abs(c - 60) <= 2 and abs(r - 30) <= 2
    flat = gaze_heatmap(fx, 60, 80, GazeConfig(duration_weighted=False))
    assert abs(flat[30, 20] - flat[30, 60]) < 0.05  # equal weights without durations


def test_canvas_size_barely_changes_the_map():
    rng = np.random.default_rng(0)
    fx = np.column_stack([rng.uniform(0.3, 0.7, 20), rng.uniform(0.3, 0.7, 20), rng.uniform(100, 600, 20)]).astype(np.float32)
    small = gaze_heatmap(fx, 100, 120, GazeConfig(canvas=192))
    big = gaze_heatmap(fx, 100, 120, GazeConfig(canvas=768))
    assert _dice(small >= 0.5, big >= 0.5) > 0.97


def test_canvas_accumulates_durations():
    c = fixation_canvas(np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 7.0], [1.0, 1.0, 1.0]], np.float32), GazeConfig(canvas=16))
    assert c[0, 0] == 12.0 and c[15, 15] == 1.0 and c.sum() == 13.0


def test_crf_pulls_an_offset_heatmap_to_the_lesion():
    img, mask = blob_image(np.random.default_rng(3), 64, 64)
    ys, xs = np.nonzero(mask)
    fx = np.column_stack([(xs[::7] + 6) / 64, ys[::7] / 64, np.full(len(xs[::7]), 300.0)]).astype(np.float32)
    heat = gaze_heatmap(np.clip(fx, 0, 1), 64, 64, GazeConfig())
    cfg = CRFConfig(sxy=20.0, srgb=13.0, compat=5.0, gaussian_compat=0.0)
    crf = crf_refine(img, heat, cfg)
    assert crf.shape == heat.shape and 0.0 <= crf.min() and crf.max() <= 1.0
    assert _dice(crf >= 0.5, mask) > _dice(heat >= 0.5, mask) + 0.05
    # work_size runs the CRF smaller and returns the map at the input size
    small = crf_refine(img, heat, CRFConfig(sxy=10.0, compat=5.0, gaussian_compat=0.0, work_size=32))
    assert small.shape == (64, 64) and _dice(small >= 0.5, mask) > _dice(heat >= 0.5, mask)


def test_crf_disabled_and_grey_images():
    img, _ = blob_image(np.random.default_rng(4), 24, 24)
    heat = np.linspace(0, 1, 24 * 24, dtype=np.float32).reshape(24, 24)
    assert np.array_equal(crf_refine(img, heat, CRFConfig(enabled=False)), heat)
    grey = crf_refine(img[:, :, :1], heat, CRFConfig(sxy=5.0))
    assert grey.shape == (24, 24)
