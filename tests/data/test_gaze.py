from __future__ import annotations

import numpy as np

from fgi.config import GazeConfig
from fgi.data.gaze import fixation_canvas, gaze_heatmap, simulate_fixations
from fgi.seed import numpy_rng


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


def test_simulated_scanpath_is_seeded_bounded_and_mostly_on_the_lesion():
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:60] = True
    cfg = GazeConfig()
    a = simulate_fixations(mask, numpy_rng(7), cfg)
    assert np.array_equal(a, simulate_fixations(mask, numpy_rng(7), cfg))
    assert not np.array_equal(a, simulate_fixations(mask, numpy_rng(8), cfg))
    assert a.dtype == np.float32 and a.shape[1] == 3
    assert cfg.sim_count_min <= len(a) <= cfg.sim_count_max
    assert (a[:, :2] >= 0).all() and (a[:, :2] <= 1).all() and (a[:, 2] > 0).all()
    many = np.concatenate([simulate_fixations(mask, numpy_rng(s), cfg) for s in range(20)])
    rows = np.minimum((many[:, 1] * 60).astype(int), 59)
    cols = np.minimum((many[:, 0] * 80).astype(int), 79)
    assert mask[rows, cols].mean() > 0.6  # sim_inside 0.75 of the fixations land inside
