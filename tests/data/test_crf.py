from __future__ import annotations

import numpy as np

from fgi.config import CRFConfig, GazeConfig
from fgi.data.crf import crf_refine
from fgi.data.gaze import gaze_heatmap
from tests.data.conftest import blob_image


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


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
