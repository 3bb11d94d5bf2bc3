from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fgi.method.metrics import batch_metrics, dice_per_image, image_metrics, summarize


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def test_identical_masks():
    m = _square(20, 5, 5, 6)
    assert image_metrics(m, m) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "asd": 0.0}


def test_shifted_square_by_hand():
    gt = _square(20, 5, 5, 4)  # 16 px
    pred = _square(20, 5, 7, 4)  # shifted right by 2: overlap 4x2 = 8
    r = image_metrics(pred, gt)
    assert r["dice"] == pytest.approx(2 * 8 / 32)
    assert r["iou"] == pytest.approx(8 / 24)
    # surfaces are the 12-pixel outlines; every directed distance is 0, 1 or 2 (a 2-pixel shift)
    assert r["hd95"] == pytest.approx(2.0)
    assert 0 < r["asd"] < 2


def test_single_pixels_distance():
    gt = np.zeros((10, 10), bool)
    pred = np.zeros((10, 10), bool)
    gt[2, 2] = True
    pred[5, 6] = True
    r = image_metrics(pred, gt)
    assert r["hd95"] == pytest.approx(5.0) and r["asd"] == pytest.approx(5.0)
    assert r["dice"] == 0.0


def test_empty_cases():
    empty = np.zeros((8, 6), bool)
    full = _square(8, 1, 1, 3)[:, :6]
    assert image_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "asd": 0.0}
    diag = math.hypot(8, 6)
    for pred, gt in ((empty, full), (full, empty)):
        assert image_metrics(pred, gt) == {"dice": 0.0, "iou": 0.0, "hd95": diag, "asd": diag}


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="differs"):
        image_metrics(np.zeros((4, 4), bool), np.zeros((5, 4), bool))


def test_batch_and_summary():
    m = _square(10, 2, 2, 4)
    rows = batch_metrics(np.stack([m, np.zeros_like(m)])[:, None], np.stack([m, m])[:, None])
    s = summarize(rows)
    assert s["dice"] == (0.5, 0.5)


def test_tensor_dice_per_image_by_hand():
    gt = torch.from_numpy(np.stack([_square(20, 5, 5, 4), _square(20, 5, 5, 4), np.zeros((20, 20), bool)]))[:, None]
    pred = torch.from_numpy(np.stack([_square(20, 5, 7, 4), np.zeros((20, 20), bool), np.zeros((20, 20), bool)]))[:, None]
    # 8 of 16 + 16 pixels overlap; an empty prediction of a lesion is 0; both empty is 1, as image_metrics
    assert dice_per_image(pred, gt).tolist() == pytest.approx([16 / 32, 0.0, 1.0])
