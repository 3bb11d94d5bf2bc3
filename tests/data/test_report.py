from __future__ import annotations

import numpy as np

from fgi.data.report import dice_at, dice_report, format_report, soft_histograms


def test_dice_from_histograms_matches_direct():
    rng = np.random.default_rng(0)
    soft = rng.uniform(0, 1, (20, 20)).astype(np.float32)
    mask = rng.uniform(0, 1, (20, 20)) > 0.6
    ha, hf = soft_histograms(soft, mask)
    for level in (0.3, 0.5, 0.71):
        pred = soft >= level
        direct = 2 * (pred & mask).sum() / (pred.sum() + mask.sum())
        assert abs(dice_at(ha, hf, int(mask.sum()), level) - direct) < 0.02


def test_report_averages_images_with_masks_and_formats_a_table():
    perfect = np.zeros((4, 4), np.float32)
    perfect[:2] = 1.0
    mask = perfect > 0
    stats = []
    for soft in (perfect, 1.0 - perfect):  # Dice 1 and Dice 0 at every level
        ha, hf = soft_histograms(soft, mask)
        stats.append({f"hist_{m}": [ha.tolist(), hf.tolist()] for m in ("heatmap", "crf")} | {"mask_sum": 8})
    stats.append({"id": "no-mask"})
    report = dice_report(stats, (0.5, 0.3))
    assert report["n"] == 2
    assert [(r["map"], r["level"], r["dice"]) for r in report["rows"]] == [
        ("heatmap", 0.5, 0.5), ("heatmap", 0.3, 0.5), ("crf", 0.5, 0.5), ("crf", 0.3, 0.5)]
    table = format_report(report)
    assert "(2 images with masks)" in table and "| crf >= 0.3 | 0.5000 |" in table
    assert "| heatmap >= 0.5 | n/a |" in format_report(dice_report([], (0.5,)))
